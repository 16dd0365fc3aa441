//! Pathological input through the real binaries (SPEC section 9): a 50 MB line, JSON
//! nested 100,000 deep, NUL bytes, bytes that are not UTF-8, a valid event carrying
//! a 1 MB field, and a CSV row whose quoted field never closes and runs to the end of
//! a 10 MB file. Every process finishes in bounded memory, every bad line is
//! quarantined with a reason, and for every source read = silver + quarantine.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use e2e::*;

/// Runs a pipeline step under `/usr/bin/time`; its peak RSS in MiB.
fn peak_mib(c: Command) -> u64 {
    let program = c.get_program().to_owned();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("peak_kib=%M")
        .arg(program)
        .args(c.get_args());
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            timed.env(k, v);
        }
    }
    if let Some(d) = c.get_current_dir() {
        timed.current_dir(d);
    }
    let out = timed.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{c:?}: {stderr}");
    let kib: u64 = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak_kib="))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kib / 1024
}

fn hostile_landing(dir: &Path) -> usize {
    let events = dir.join("usage_events_stream");
    std::fs::create_dir_all(&events).unwrap();
    for e in std::fs::read_dir(landing()).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    let first = landing().join("usage_events_stream/events_part_0000.jsonl");
    std::fs::copy(&first, events.join("events_part_0000.jsonl")).unwrap();

    let good = r#"{"event_id": "evt_hostile_ok", "timestamp": "2025-08-17T01:55:00Z", "org_id": "org_cvs4f8cg", "resource_id": "res_i8kcmm7d", "service": "networking", "region": "sa-east", "metric": "requests", "value": 3, "unit": "count", "cost_usd_increment": 0.5, "schema_version": 1"#;
    let mut lines: Vec<Vec<u8>> = vec![
        // 50 MB in one line, valid JSON, not an event.
        format!(
            r#"{{"event_id": "evt_big", "pad": "{}"}}"#,
            "x".repeat(50 << 20)
        )
        .into_bytes(),
        // Nested far beyond any parser's depth limit.
        "[".repeat(100_000).into_bytes(),
        // NUL bytes, raw and inside a string.
        b"\0\0\0".to_vec(),
        b"{\"event_id\": \"evt_n\0ul\", \"timestamp\": \"2025-08-17T01:55:00Z\"}".to_vec(),
        // Not UTF-8.
        b"\xff\xfe{\"event_id\": \"evt_bad_utf8\"}".to_vec(),
    ];
    let bad = lines.len();
    // A valid event with a 1 MB field it does not know: kept, the field ignored.
    lines.push(format!(r#"{good}, "note": "{}"}}"#, "y".repeat(1 << 20)).into_bytes());
    let mut file = Vec::new();
    for l in lines {
        file.extend_from_slice(&l);
        file.push(b'\n');
    }
    std::fs::write(events.join("events_part_9999.jsonl"), file).unwrap();

    // A users extract whose second row opens a quote that never closes.
    let mut csv = b"user_id,org_id,email,role,active,created_at,last_login\n".to_vec();
    csv.extend_from_slice(b"user_ok1,org_3t60rjiw,u@example.com,devops,True,2025-07-10,\n");
    csv.extend_from_slice(b"user_bad,\"");
    csv.extend(std::iter::repeat_n(b'z', 10 << 20));
    csv.push(b'\n');
    std::fs::write(dir.join("users_hostile.csv"), csv).unwrap();
    bad
}

#[test]
fn pathological_lines_are_quarantined_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let landing_dir = dir.path().join("landing");
    let bad = hostile_landing(&landing_dir);
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();

    let mut replay = pipeline_command("producer", &data);
    replay.arg("replay").arg(&landing_dir);
    let mut process = pipeline_command("processor", &data);
    process.args(["--until-idle", "--metrics-addr", "127.0.0.1:0"]);
    let mut compact = pipeline_command("compactor", &data);
    compact.arg("--once");
    let peaks = [
        ("producer", peak_mib(replay)),
        ("processor", peak_mib(process)),
        ("compactor", peak_mib(compact)),
    ];
    eprintln!("peak RSS (MiB): {peaks:?}");
    for (name, mib) in peaks {
        // The largest line is 50 MB; a few copies of it are fine, a blow-up is not.
        assert!(mib < 1024, "{name} peaked at {mib} MiB");
    }

    let lake = data.join("lake");
    let accounting = balanced_accounting(&lake);
    // Every pathological event line is in quarantine with a reason; the valid one
    // with a huge unknown field is in silver.
    let quarantined: Vec<_> = lake_rows(&lake, "quarantine/usage_events")
        .into_iter()
        .filter(|r| {
            r["source_file"]
                .as_str()
                .unwrap_or_default()
                .ends_with("events_part_9999.jsonl")
        })
        .collect();
    assert_eq!(quarantined.len(), bad, "{quarantined:?}");
    for r in &quarantined {
        assert!(r["reason"].as_str().is_some_and(|s| !s.is_empty()), "{r:?}");
    }
    let kept = lake_rows(&lake, "silver/usage_events")
        .into_iter()
        .filter(|r| r["event_id"] == "evt_hostile_ok")
        .count();
    assert_eq!(kept, 1);
    // The CSV's runaway row is a record like any other: counted, in silver or in
    // quarantine (checked by the balance above), and the rows before it kept.
    let users = &accounting["users"];
    let sample_users = std::fs::read_to_string(landing().join("users.csv"))
        .unwrap()
        .lines()
        .count() as u64
        - 1;
    assert_eq!(users["read"].as_u64().unwrap(), sample_users + 2, "{users}");
}
