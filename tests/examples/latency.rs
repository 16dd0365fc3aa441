//! Latency from append to silver, with the processor following the log.
//!
//! Usage: latency <dir> [events_per_s=10000] [seconds=20] [threads=4]
//!
//! Generates master data (80 orgs), replays it, starts the processor in follow mode
//! with `threads` processing threads (4, as `processor` runs by default), then
//! appends usage events at a steady rate, each stamped with the wall
//! time of its append. A reader follows `silver.usage_events` up to the committed
//! positions the processor publishes (what a downstream reader may see) and records,
//! per event, the time from append to visibility. Prints one JSON line. Logs as the
//! binaries do (stderr, `RUST_LOG`), so a slow commit is reported with where its time
//! went.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eventlog::{Bytes, EmbeddedLog, Log, PartitionReader, PipelineConfig, Record, partition_for};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn main() -> std::process::ExitCode {
    eventlog::cli::main(run)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(
        args.get(1)
            .ok_or("usage: latency <dir> [events_per_s] [seconds] [threads]")?,
    );
    let rate: u64 = args.get(2).map_or(Ok(10_000), |s| s.parse())?;
    let seconds: u64 = args.get(3).map_or(Ok(20), |s| s.parse())?;
    let threads: u32 = args.get(4).map_or(Ok(4), |s| s.parse())?;
    std::fs::create_dir_all(&dir)?;
    let landing = dir.join("landing");
    if !landing.exists() {
        producer::generate::generate(
            &landing,
            &producer::generate::GenSpec {
                orgs: 80,
                days: 1,
                events_per_day: 10,
                seed: 5,
            },
        )?;
    }
    // Configured as the processor binary opens it by default (fsync every 100 ms,
    // its outputs' older pages dropped from the page cache; here the appended
    // events' too: one log for both).
    let config = PipelineConfig::default().processor_log_config()?;
    let log = Arc::new(EmbeddedLog::open(dir.join("log"), config)?);
    e2e::replay(&log, &dir, &landing);
    // Valid (org, resource, service) triples from the generated master data.
    let mut resources = Vec::new();
    let mut rdr = csv_rows(&landing.join("resources.csv"))?;
    rdr.retain(|r| r.len() == 7 && r[5] != "deleted");
    for r in rdr {
        resources.push((r[1].clone(), r[0].clone(), r[2].clone(), r[3].clone()));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let plog = log.clone();
    let pdir = dir.clone();
    let pstop = stop.clone();
    let processor = std::thread::spawn(move || -> Result<(), String> {
        let cfg = processor::ProcessorConfig {
            until_idle: false,
            ..Default::default()
        };
        processor::run_threads(
            &*plog,
            &pdir.join("state"),
            &cfg,
            threads,
            &Default::default(),
            &pstop,
        )
        .map_err(|e| e.to_string())?;
        Ok(())
    });

    // Writer: batches every 5 ms, stamped with the append time.
    let wlog = log.clone();
    let wstop = stop.clone();
    let writer = std::thread::spawn(move || -> Result<u64, String> {
        let per_tick = (rate / 200).max(1);
        let started = Instant::now();
        let mut n = 0u64;
        let mut tick = 0u64;
        while !wstop.load(Ordering::Relaxed) {
            let due = started + Duration::from_millis(5 * tick);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            tick += 1;
            let mut by_partition: Vec<Vec<Record>> = vec![Vec::new(); 4];
            let ts = now_ms();
            let when = chrono_like(ts);
            for _ in 0..per_tick {
                let (org, res, service, region) = &resources[(n as usize * 7919) % resources.len()];
                let line = format!(
                    r#"{{"event_id":"lat_{n}","timestamp":"{when}","org_id":"{org}","resource_id":"{res}","service":"{service}","region":"{region}","metric":"requests","value":1.0,"unit":"count","cost_usd_increment":0.01,"schema_version":2,"carbon_kg":0.0}}"#
                );
                let p = partition_for(org.as_bytes(), 4) as usize;
                by_partition[p].push(Record {
                    key: Some(Bytes::from(org.clone().into_bytes())),
                    value: line.into_bytes().into(),
                    headers: Vec::new(),
                    timestamp_ms: ts,
                });
                n += 1;
            }
            for (p, recs) in by_partition.iter().enumerate() {
                if !recs.is_empty() {
                    wlog.append("raw.usage_events", p as u32, recs)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(n)
    });

    // Reader: silver up to the committed positions (once the processor made it).
    while log.partitions(processor::SILVER_TOPIC)?.is_none() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let silver: Vec<(&str, u32)> = (0..4).map(|p| (processor::SILVER_TOPIC, p)).collect();
    let mut readers = Vec::new();
    for &(topic, p) in &silver {
        let start = log.end_offset(topic, p).unwrap_or(0);
        readers.push(log.reader(topic, p, start)?);
    }
    let mut latencies: Vec<i64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let warmup = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let mut idle = true;
        // All four positions from one read of the publication.
        let positions = log.committed_many(processor::COMMITTED_OUTPUTS, &silver)?;
        for (r, committed) in readers.iter_mut().zip(positions) {
            let committed = committed.unwrap_or(0);
            while r.position() < committed {
                let batch = r.poll((committed - r.position()) as usize)?;
                if batch.is_empty() {
                    break;
                }
                let seen = now_ms();
                for rec in batch.into_iter().filter(|x| x.offset < committed) {
                    idle = false;
                    let m = schemas::speed::SilverMessage::decode(&rec.record.value)?;
                    if Instant::now() > warmup {
                        latencies.push(seen - m.lineage.ingest_ms);
                    }
                }
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().map_err(|_| "writer panicked")??;
    latencies.sort_unstable();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(-1)
    };
    println!(
        "{{\"rate\": {rate}, \"seconds\": {seconds}, \"written\": {written}, \"measured\": {}, \"p50_ms\": {}, \"p99_ms\": {}, \"max_ms\": {}}}",
        latencies.len(),
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or(-1)
    );
    // `stop` ends the processor too: its threads commit and close their states.
    // Exiting without waiting for them let the exit's destructors race RocksDB's
    // background threads ("pthread lock: Invalid argument", an abort).
    processor.join().map_err(|_| "processor panicked")??;
    Ok(())
}

/// RFC 3339 of a wall-clock time in ms.
fn chrono_like(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn csv_rows(path: &std::path::Path) -> Result<Vec<Vec<String>>, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)?;
    // The generator's resources.csv has no quoted commas outside tags_json, which is last.
    Ok(text
        .lines()
        .skip(1)
        .map(|l| {
            let mut parts: Vec<String> = l.splitn(7, ',').map(str::to_owned).collect();
            parts.truncate(7);
            parts
        })
        .collect())
}
