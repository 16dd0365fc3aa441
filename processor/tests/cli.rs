//! The `processor` binary's errors: one line, non-zero exit.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn an_unusable_state_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // A file where the state directory should be.
    std::fs::write(data.join("state"), b"not a directory").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_processor"))
        .env("PIPELINE_DATA_DIR", &data)
        .env("RUST_LOG", "off")
        .args(["--until-idle", "--metrics-addr", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: state"), "{err}");
}

#[test]
fn bad_arguments_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_processor"))
        .env("PIPELINE_DATA_DIR", dir.path().join("data"))
        .args([
            "--from-offset",
            "yesterday",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from-offset"));
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let m = processor::metrics::Metrics::default();
    m.update(|s| {
        s.quarantined.insert("no_measure".into(), 3);
        s.lag_records.insert(0, 5);
    });
    let addr = m.serve("127.0.0.1:0").unwrap();
    assert!(addr.ip().is_loopback());
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"));
    assert!(body.contains("processor_quarantined_total{reason=\"no_measure\"} 3"));
    assert!(body.contains("processor_lag_records{partition=\"0\"} 5"));
    assert!(body.contains("# TYPE processor_commit_latency_seconds summary"));
}

/// Logs to a file or a pipe carry no colour codes; `PIPELINE_LOG_FORMAT=json` gives
/// one JSON object per line with the event's level, message and fields; any other
/// format is a one-line error.
#[test]
fn logs_are_plain_text_off_a_terminal_or_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let run = |format: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_processor"));
        c.env("PIPELINE_DATA_DIR", dir.path().join("data"))
            .env("RUST_LOG", "info")
            .env_remove("PIPELINE_LOG_FORMAT")
            .args(["--until-idle", "--metrics-addr", "127.0.0.1:0"])
            .current_dir(dir.path());
        if let Some(f) = format {
            c.env("PIPELINE_LOG_FORMAT", f);
        }
        c.output().unwrap()
    };
    let text = run(None);
    assert!(text.status.success());
    let err = String::from_utf8(text.stderr).unwrap();
    assert!(
        err.contains("INFO") && err.contains("metrics at http://"),
        "{err}"
    );
    assert!(!err.contains('\x1b'), "colour codes in a pipe: {err:?}");

    let json = run(Some("json"));
    assert!(json.status.success());
    let err = String::from_utf8(json.stderr).unwrap();
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!lines.is_empty());
    let metrics = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("metrics at"))
        })
        .unwrap();
    assert_eq!(metrics["level"], "INFO");
    assert_eq!(metrics["target"], "processor");
    assert!(metrics["bound"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(lines.iter().all(|l| l["timestamp"].is_string()));

    let bad = run(Some("yaml"));
    assert!(!bad.status.success());
    let err = String::from_utf8(bad.stderr).unwrap();
    assert_eq!(
        err.trim(),
        "error: PIPELINE_LOG_FORMAT=\"yaml\": expected text or json"
    );
}
