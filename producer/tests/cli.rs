//! The real `producer` binary: replay, kill -9, replay again; topics; errors.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn producer(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_producer"));
    c.env("PIPELINE_DATA_DIR", data)
        .env("PIPELINE_LOG_FSYNC", "never")
        .env_remove("PIPELINE_LOG_URL")
        .env("RUST_LOG", "warn")
        .current_dir(data.parent().unwrap());
    c
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn topics_json(data: &Path) -> Vec<serde_json::Value> {
    ok(producer(data)
        .args(["topics", "--format", "json"])
        .output()
        .unwrap())
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

#[test]
fn replay_then_topics_reports_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(producer(&data)
        .arg("replay")
        .arg(common::landing())
        .output()
        .unwrap());
    let rows = topics_json(&data);
    let events: u64 = rows
        .iter()
        .filter(|r| r["topic"] == "raw.usage_events")
        .map(|r| r["end_offset"].as_u64().unwrap())
        .sum();
    assert_eq!(events, 43_200);
    assert_eq!(
        rows.iter()
            .filter(|r| r["topic"] == "raw.usage_events")
            .count(),
        4
    );
    for (topic, n) in common::csv_rows(&common::landing()) {
        let row = rows.iter().find(|r| r["topic"] == topic.as_str()).unwrap();
        assert_eq!(row["end_offset"].as_u64().unwrap(), n, "{topic}");
        assert_eq!(row["partition"], 0);
    }
    let table = ok(producer(&data).arg("topics").output().unwrap());
    assert!(table.lines().next().unwrap().contains("end_offset"));
}

#[test]
fn kill_9_in_the_middle_then_replay_again_gives_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean");
    ok(producer(&clean)
        .arg("replay")
        .arg(common::landing())
        .output()
        .unwrap());

    let crashed = dir.path().join("crashed");
    std::fs::create_dir_all(&crashed).unwrap();
    let cfg = dir.path().join("small-batches.toml");
    std::fs::write(&cfg, "[producer]\nbatch_records = 50\n").unwrap();
    // Paced, so that the kill lands in the middle: 60 days of events in about 2 s.
    let mut child = producer(&crashed)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "replay",
            "--speedup",
            "2600000",
        ])
        .arg(common::landing())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(900));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial: u64 = topics_json(&crashed)
        .iter()
        .filter(|r| r["topic"] == "raw.usage_events")
        .map(|r| r["end_offset"].as_u64().unwrap())
        .sum();
    assert!(
        partial > 0 && partial < 43_200,
        "the kill landed after {partial} events"
    );

    ok(producer(&crashed)
        .arg("replay")
        .arg(common::landing())
        .output()
        .unwrap());
    assert_eq!(topics_json(&crashed), topics_json(&clean));
    let a = eventlog::EmbeddedLog::open(clean.join("log"), common::fast_config()).unwrap();
    let b = eventlog::EmbeddedLog::open(crashed.join("log"), common::fast_config()).unwrap();
    assert!(
        common::dump(&a) == common::dump(&b),
        "same records, same order, same headers"
    );
}

#[test]
fn errors_are_one_line_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cases: Vec<Vec<&str>> = vec![
        vec!["replay", "/nonexistent/landing"],
        vec!["--config", "/nonexistent/pipeline.toml", "topics"],
        vec!["replay", "--speedup", "0", "."],
    ];
    for args in cases {
        let out = producer(&data).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[log]\nfsync = \"sometimes\"\n").unwrap();
    let out = producer(&data)
        .env_remove("PIPELINE_LOG_FSYNC")
        .args(["--config", bad.to_str().unwrap(), "topics"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fsync"));
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[log]\nfsink = \"always\"\n").unwrap();
    let out = producer(&data)
        .args(["--config", unknown.to_str().unwrap(), "topics"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
}

#[test]
fn a_second_replay_writer_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut first = producer(&data)
        .args(["replay", "--speedup", "500000"])
        .arg(common::landing())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let out = producer(&data)
        .arg("replay")
        .arg(common::landing())
        .output()
        .unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already open for writing"), "{err}");
}
