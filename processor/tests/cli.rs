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
