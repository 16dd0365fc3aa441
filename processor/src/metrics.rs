//! Prometheus text metrics, served on a loopback address by a small thread.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub records_in: BTreeMap<String, u64>,
    pub records_out: BTreeMap<String, u64>,
    pub quarantined: BTreeMap<String, u64>,
    pub dedup_hits: u64,
    pub late_events: u64,
    pub watermark_seconds: BTreeMap<u32, f64>,
    pub lag_records: BTreeMap<u32, u64>,
    pub commits: u64,
    pub commit_seconds_sum: f64,
    pub commit_seconds_last: f64,
    /// RocksDB bytes per state (one per processing thread), reported as their sum.
    pub state_bytes: BTreeMap<u32, u64>,
}

impl Snapshot {
    /// One more record read from `topic` (no allocation once the topic is counted).
    pub fn count_in(&mut self, topic: &str) {
        match self.records_in.get_mut(topic) {
            Some(n) => *n += 1,
            None => {
                self.records_in.insert(topic.to_owned(), 1);
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Metrics {
    inner: Arc<Mutex<Snapshot>>,
}

impl Metrics {
    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g);
    }

    pub fn snapshot(&self) -> Snapshot {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn render(&self) -> String {
        let s = self.snapshot();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in rows {
                out.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        let by = |label: &str, m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| (format!("{{{label}=\"{k}\"}}"), v.to_string()))
                .collect::<Vec<_>>()
        };
        family(
            "processor_records_in_total",
            "counter",
            "Records read, by topic.",
            by("topic", &s.records_in),
        );
        family(
            "processor_records_out_total",
            "counter",
            "Records written, by topic.",
            by("topic", &s.records_out),
        );
        family(
            "processor_quarantined_total",
            "counter",
            "Records quarantined, by reason.",
            by("reason", &s.quarantined),
        );
        family(
            "processor_dedup_hits_total",
            "counter",
            "Events quarantined as duplicates.",
            vec![(String::new(), s.dedup_hits.to_string())],
        );
        family(
            "processor_late_events_total",
            "counter",
            "Events later than a final window.",
            vec![(String::new(), s.late_events.to_string())],
        );
        family(
            "processor_watermark_seconds",
            "gauge",
            "Event-time watermark per input partition.",
            s.watermark_seconds
                .iter()
                .map(|(p, v)| (format!("{{partition=\"{p}\"}}"), v.to_string()))
                .collect(),
        );
        family(
            "processor_lag_records",
            "gauge",
            "Records not yet processed per input partition.",
            s.lag_records
                .iter()
                .map(|(p, v)| (format!("{{partition=\"{p}\"}}"), v.to_string()))
                .collect(),
        );
        family(
            "processor_commit_latency_seconds",
            "summary",
            "Time to commit a batch (outputs, fsync, state).",
            vec![
                ("_sum".to_owned(), s.commit_seconds_sum.to_string()),
                ("_count".to_owned(), s.commits.to_string()),
            ],
        );
        family(
            "processor_commit_last_seconds",
            "gauge",
            "Latency of the last commit.",
            vec![(String::new(), s.commit_seconds_last.to_string())],
        );
        family(
            "processor_state_bytes",
            "gauge",
            "RocksDB files and memtables.",
            vec![(
                String::new(),
                s.state_bytes.values().sum::<u64>().to_string(),
            )],
        );
        out
    }

    /// Serves `/metrics` (any path, in fact) on `addr` from a background thread;
    /// returns the bound address.
    pub fn serve(&self, addr: &str) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        let me = self.clone();
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let mut buf = [0u8; 1024];
                    let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(500)));
                    let _ = stream.read(&mut buf);
                    let body = me.render();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            })?;
        Ok(bound)
    }
}
