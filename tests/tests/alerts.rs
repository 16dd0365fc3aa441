//! Cost anomalies announced once (SPEC section 10): `serving publish` POSTs each
//! anomaly it finds new to a webhook, here a local HTTP receiver that fails, is slow,
//! goes down and comes back, while publishes are killed with SIGKILL at random
//! moments. In the end the receiver has every anomaly of `cost_anomaly_mart`, none
//! missing; a POST repeats only when a kill fell between the receiver's answer and
//! the outbox write (each repeat carries the same ids and Idempotency-Key, so a
//! receiver that keeps ids sees each anomaly once); a publish with nothing new posts
//! nothing; the counts by method match the mart.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::*;
use serving::ServingStore;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Ok,
    /// Answers 500.
    Fail,
    /// Answers 200 after this long.
    Slow(u64),
    /// Closes every connection without an answer.
    Down,
}

#[derive(Default)]
struct Received {
    /// The ids of every POST answered 200, in order (repeats included).
    accepted: Vec<String>,
    /// Idempotency keys answered 200.
    keys: Vec<String>,
    /// Requests of any outcome.
    requests: usize,
}

/// A webhook receiver on a free loopback port, in the mode the test sets.
fn receiver(mode: Arc<Mutex<Mode>>, got: Arc<Mutex<Received>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mode = *mode.lock().unwrap();
            got.lock().unwrap().requests += 1;
            if mode == Mode::Down {
                continue; // dropped: closed without an answer
            }
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let (mut length, mut key) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("idempotency-key:") {
                    key = line["idempotency-key:".len()..].trim().to_owned();
                }
            }
            let mut body = vec![0; length];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            let status = match mode {
                Mode::Fail => 500,
                Mode::Slow(ms) => {
                    std::thread::sleep(Duration::from_millis(ms));
                    200
                }
                _ => 200,
            };
            if status == 200 {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let mut g = got.lock().unwrap();
                for a in v["alerts"].as_array().unwrap() {
                    g.accepted.push(a["id"].as_str().unwrap().to_owned());
                }
                g.keys.push(key);
            }
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    addr
}

fn publish(data: &Path) -> std::process::Command {
    let mut c = pipeline_command("serving", data);
    c.arg("publish");
    c
}

#[test]
fn every_anomaly_is_announced_once_across_kills_and_receiver_failures() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut replay = pipeline_command("producer", &data);
    replay.arg("replay").arg(landing());
    run_ok(replay);
    let mut process = pipeline_command("processor", &data);
    process.args(["--until-idle", "--metrics-addr", "127.0.0.1:0"]);
    run_ok(process);
    let mut compact = pipeline_command("compactor", &data);
    compact.arg("--once");
    run_ok(compact);
    let mart = lake_rows(&data.join("lake"), "gold/cost_anomaly_mart");
    let expected: BTreeSet<String> = mart
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}",
                r["org_id"].as_str().unwrap(),
                r["usage_date"].as_str().unwrap(),
                r["service"].as_str().unwrap()
            )
        })
        .collect();
    assert!(expected.len() > 50, "{}", expected.len());

    let mode = Arc::new(Mutex::new(Mode::Fail));
    let got = Arc::new(Mutex::new(Received::default()));
    let addr = receiver(mode.clone(), got.clone());
    // Two anomalies a POST, two attempts, so that delivery takes many requests.
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("pipeline.toml"),
        format!(
            "[alerts]\nwebhook_url = \"http://{addr}/hooks/s3cret-path\"\nbatch = 2\nattempts = 2\ntimeout_ms = 2000\n"
        ),
    )
    .unwrap();

    // The receiver failing: the publish succeeds, and nothing is accepted.
    let out = publish(&data).env("RUST_LOG", "info").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kept for the next publish"), "{err}");
    assert!(
        !err.contains("s3cret"),
        "the webhook's path reached the log: {err}"
    );
    {
        let g = got.lock().unwrap();
        assert!(g.accepted.is_empty() && g.requests >= 2, "{}", g.requests);
    }

    // Slow, then down, then slow again, with publishes killed at random moments.
    let kills = std::env::var("ALERT_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut killed = 0;
    for (i, d) in delays(kills, 7, 300, 1500).into_iter().enumerate() {
        *mode.lock().unwrap() = if (8..11).contains(&i) {
            Mode::Down
        } else {
            Mode::Slow(150)
        };
        killed += usize::from(kill_after(publish(&data), d));
    }
    assert!(
        killed * 2 >= kills,
        "only {killed} of {kills} publishes were killed"
    );

    // The receiver well again: the last publish delivers what is left.
    *mode.lock().unwrap() = Mode::Ok;
    run_ok(publish(&data));
    let (accepted, keys) = {
        let g = got.lock().unwrap();
        (g.accepted.clone(), g.keys.clone())
    };
    let unique: BTreeSet<String> = accepted.iter().cloned().collect();
    assert_eq!(unique, expected, "every anomaly, and only anomalies");
    let repeats = accepted.len() - unique.len();
    // A repeat is a whole batch (of two) POSTed again after a kill, with its key.
    let key_repeats = keys.len() - keys.iter().collect::<BTreeSet<_>>().len();
    assert!(
        key_repeats <= killed,
        "{key_repeats} batches repeated, {killed} kills"
    );
    assert!(
        repeats <= 2 * key_repeats,
        "{repeats} ids repeated in {key_repeats} batches"
    );
    eprintln!(
        "{} anomalies delivered, {killed} publishes killed, {repeats} repeated on a kill",
        unique.len()
    );

    // Nothing new: the next publish posts nothing.
    let before = got.lock().unwrap().requests;
    run_ok(publish(&data));
    assert_eq!(got.lock().unwrap().requests, before);

    // The counts by method, as the store keeps them, are the mart's.
    let store = serving::embedded::EmbeddedStore::open_reader(&data.join("serving")).unwrap();
    let counts: BTreeMap<String, u64> = serde_json::from_str(
        &store
            .meta(serving::alerts::META_ANNOUNCED_COUNTS)
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for r in &mart {
        for m in r["methods"].as_str().unwrap().split(',') {
            *want.entry(m.to_owned()).or_default() += 1;
        }
    }
    assert_eq!(counts, want);
    assert_eq!(
        store.meta(serving::alerts::META_OUTBOX).unwrap().as_deref(),
        Some("[]")
    );
}
