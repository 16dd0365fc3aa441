//! Publish throughput and query latency of the embedded serving store.
//!
//! Usage: servingbench <data_dir> [queries_per_kind]   (a data dir with a lake and a
//! log, as `compactor --once` leaves it). Publishes into a fresh store under
//! `<data_dir>/servingbench` four times (the first reads the real-time view from the
//! start, the others are incremental), then runs N random queries of each kind and
//! prints one JSON object of medians and percentiles.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use serving::query::{QueryArgs, run};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let data = std::path::PathBuf::from(std::env::args().nth(1).expect("data dir"));
    let n: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let log =
        eventlog::EmbeddedLog::open(data.join("log"), eventlog::LogConfig::default()).unwrap();
    let store_dir = data.join("servingbench");
    let _ = std::fs::remove_dir_all(&store_dir);
    let store = serving::embedded::EmbeddedStore::open(&store_dir).unwrap();
    // The first publish reads the real-time view from the start; the next ones only
    // what is new (nothing, here), so they time the marts themselves.
    let mut publish_secs = Vec::new();
    let mut rows = 0;
    let mut first = (0, 0.0);
    for i in 0..4 {
        let t = Instant::now();
        let r = serving::publish::publish(&store, &data.join("lake"), &log).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let n = r.rows.values().sum::<usize>();
        if i == 0 {
            first = (n, secs);
        } else {
            publish_secs.push(secs);
            rows = n;
        }
    }
    let orgs: Vec<String> = {
        let a = run(&store, "q4", &QueryArgs::default()).unwrap();
        let mut o: Vec<String> = a
            .rows
            .iter()
            .map(|r| r["org_id"].as_str().unwrap().to_owned())
            .collect();
        o.sort();
        o.dedup();
        o
    };
    let mut x = 42u64;
    let mut next = |m: usize| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize % m
    };
    let start = chrono::NaiveDate::from_ymd_opt(2025, 7, 1).unwrap();
    let mut out = serde_json::Map::new();
    for q in ["q1", "q2", "q3", "q4", "q5"] {
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let from = start + chrono::Duration::days(next(50) as i64);
            let args = QueryArgs {
                org: Some(orgs[next(orgs.len())].clone()),
                from: Some(from),
                to: Some(from + chrono::Duration::days(7 + next(14) as i64)),
                ..Default::default()
            };
            let t = Instant::now();
            let a = run(&store, q, &args).unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            std::hint::black_box(a);
        }
        out.insert(
            q.to_owned(),
            serde_json::json!({"p50_ms": percentile(&mut lat, 0.5), "p99_ms": percentile(&mut lat, 0.99)}),
        );
    }
    let med = percentile(&mut publish_secs, 0.5);
    out.insert("first_publish_rows".into(), first.0.into());
    out.insert("first_publish_seconds".into(), first.1.into());
    out.insert(
        "first_publish_rows_per_s".into(),
        (first.0 as f64 / first.1).into(),
    );
    out.insert("publish_rows".into(), rows.into());
    out.insert("publish_seconds".into(), med.into());
    out.insert("publish_rows_per_s".into(), (rows as f64 / med).into());
    println!("{}", serde_json::Value::Object(out));
    let _ = std::fs::remove_dir_all(&store_dir);
}
