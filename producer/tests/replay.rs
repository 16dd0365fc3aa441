//! `producer replay` on the sample data set and on generated data.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::*;
use eventlog::hooked::{Call, Hooked};
use eventlog::{EmbeddedLog, Log};
use producer::replay::{Order, ReplayOptions, replay};

fn opts(landing: &std::path::Path, state: &std::path::Path, order: Order) -> ReplayOptions {
    ReplayOptions {
        landing: landing.to_owned(),
        order,
        speedup: None,
        follow: false,
        new_run: false,
        state_dir: state.to_owned(),
        event_partitions: 4,
        batch_records: 500,
        sort_chunk_entries: 10_000,
        follow_poll: Duration::from_millis(50),
    }
}

#[test]
fn sample_replays_every_record_and_the_rules_find_the_known_counts() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path().join("log"), fast_config()).unwrap();
    let report = replay(
        &log,
        &opts(&landing(), &dir.path().join("state"), Order::EventTime),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(report.appended["raw.usage_events"], 43_200);
    let ends: u64 = (0..4)
        .map(|p| log.end_offset("raw.usage_events", p).unwrap())
        .sum();
    assert_eq!(ends, 43_200);
    for (topic, rows) in csv_rows(&landing()) {
        assert_eq!(log.end_offset(&topic, 0).unwrap(), rows, "{topic}");
    }
    // The contract applied to what the log holds (SPEC section 4 on the sample).
    let counts = apply_rules(&log);
    assert_eq!(counts.kept["usage_events"], 43_163);
    assert_eq!(
        counts
            .reasons
            .get(&("usage_events".into(), "no_measure".into())),
        Some(&37)
    );
    assert_eq!(
        counts
            .reasons
            .keys()
            .filter(|(s, _)| s == "usage_events")
            .count(),
        1,
        "{:?}",
        counts.reasons
    );
    assert_eq!(counts.flags["unit_imputed"], 2_038);
    assert_eq!(counts.flags["cost_negative"], 210);
    assert_eq!(counts.flags["before_resource"], 7_362);
    for (source, read) in &counts.read {
        let quarantined: u64 = counts
            .reasons
            .iter()
            .filter(|((s, _), _)| s == source)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            *read,
            counts.kept.get(source).copied().unwrap_or(0) + quarantined,
            "{source}"
        );
    }
}

#[test]
fn raw_bytes_and_lineage_headers_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path().join("log"), fast_config()).unwrap();
    replay(
        &log,
        &opts(&landing(), &dir.path().join("state"), Order::File),
        &AtomicBool::new(false),
    )
    .unwrap();
    let d = dump(&log);
    let mut checked = 0;
    for ((topic, _), records) in &d {
        if topic != "raw.usage_events" {
            continue;
        }
        for (_, value, headers) in records.iter().step_by(97) {
            let file = std::str::from_utf8(&headers[0].1).unwrap();
            let line_no: usize = std::str::from_utf8(&headers[1].1).unwrap().parse().unwrap();
            assert_eq!(headers[0].0, "source_file");
            let text = std::fs::read(landing().join(file)).unwrap();
            let line = text.split(|b| *b == b'\n').nth(line_no - 1).unwrap();
            assert_eq!(value.as_slice(), line, "{file}:{line_no}");
            checked += 1;
        }
    }
    assert!(checked > 400);
    let orgs = &d[&("raw.customers_orgs".to_string(), 0)];
    let (key, value, headers) = &orgs[0];
    assert_eq!(
        std::str::from_utf8(&headers[1].1).unwrap(),
        "2",
        "the first data row is line 2"
    );
    let v: serde_json::Value = serde_json::from_slice(value).unwrap();
    assert_eq!(
        v["org_id"].as_str().unwrap().as_bytes(),
        key.as_deref().unwrap()
    );
}

#[test]
fn event_time_order_is_nondecreasing_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path().join("log"), fast_config()).unwrap();
    // A small sort chunk forces spilled runs and a merge.
    let mut o = opts(&landing(), &dir.path().join("state"), Order::EventTime);
    o.sort_chunk_entries = 5_000;
    replay(&log, &o, &AtomicBool::new(false)).unwrap();
    for p in 0..4 {
        let values = &dump(&log)[&("raw.usage_events".to_string(), p)];
        let times: Vec<i64> = values
            .iter()
            .map(|(_, v, _)| schemas::event::event_routing(v).ts_micros.unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "partition {p}");
    }
    assert!(
        !dir.path().join("state").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("sort-")),
        "spill files are removed"
    );
}

#[test]
fn replaying_again_appends_again_and_a_new_run_is_not_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path().join("log"), fast_config()).unwrap();
    let o = opts(&landing(), &dir.path().join("state"), Order::File);
    replay(&log, &o, &AtomicBool::new(false)).unwrap();
    let second = replay(&log, &o, &AtomicBool::new(false)).unwrap();
    assert_eq!(second.resumed_past, 0);
    let ends: u64 = (0..4)
        .map(|p| log.end_offset("raw.usage_events", p).unwrap())
        .sum();
    assert_eq!(ends, 86_400);
    let counts = apply_rules(&log);
    assert_eq!(
        counts.kept["usage_events"], 43_163,
        "the second copies are duplicates"
    );
    assert_eq!(
        counts.reasons[&("usage_events".to_string(), "duplicate".to_string())],
        43_163
    );
}

/// `log`, its appends failing after `left` of them: a crash at every batch boundary,
/// without a process.
fn failing_after(log: &EmbeddedLog, left: i64) -> Hooked<'_, EmbeddedLog> {
    let left = std::sync::atomic::AtomicI64::new(left);
    Hooked::new(log, move |call| match call {
        Call::Append { .. } if left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) <= 0 => {
            Err(eventlog::Error::Config("injected crash".into()))
        }
        _ => Ok(()),
    })
}

#[test]
fn an_interrupted_replay_resumes_without_gaps_or_repeats() {
    let gen_dir = tempfile::tempdir().unwrap();
    let landing = gen_dir.path().join("landing");
    producer::generate::generate(
        &landing,
        &producer::generate::GenSpec {
            orgs: 12,
            days: 6,
            events_per_day: 400,
            seed: 9,
        },
    )
    .unwrap();
    let clean_dir = tempfile::tempdir().unwrap();
    let clean = EmbeddedLog::open(clean_dir.path().join("log"), fast_config()).unwrap();
    let mut o = opts(&landing, &clean_dir.path().join("state"), Order::EventTime);
    o.batch_records = 97;
    replay(&clean, &o, &AtomicBool::new(false)).unwrap();
    let want = dump(&clean);
    for crash_after in [0, 1, 5, 13, 27] {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path().join("log"), fast_config()).unwrap();
        o.state_dir = dir.path().join("state");
        let failing = failing_after(&log, crash_after);
        assert!(replay(&failing, &o, &AtomicBool::new(false)).is_err());
        let report = replay(&log, &o, &AtomicBool::new(false)).unwrap();
        assert!(report.resumed_past > 0 || crash_after == 0);
        assert_eq!(dump(&log), want, "crash after {crash_after} appends");
    }
}

#[test]
fn follow_picks_up_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::copy(
        common::landing().join("customers_orgs.csv"),
        landing.join("customers_orgs.csv"),
    )
    .unwrap();
    let log = EmbeddedLog::open(dir.path().join("log"), fast_config()).unwrap();
    let mut o = opts(&landing, &dir.path().join("state"), Order::EventTime);
    o.follow = true;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let handle = s.spawn(|| replay(&log, &o, &stop));
        let src = common::landing().join("usage_events_stream/events_part_0000.jsonl");
        // Dropped in the way a writer should: a temporary name, then a rename.
        std::fs::copy(&src, landing.join(".new.jsonl.tmp")).unwrap();
        std::fs::rename(landing.join(".new.jsonl.tmp"), landing.join("new.jsonl")).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while (0..4)
            .map(|p| log.end_offset("raw.usage_events", p).unwrap_or(0))
            .sum::<u64>()
            < 360
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let report = handle.join().unwrap().unwrap();
        assert_eq!(report.appended["raw.usage_events"], 360);
        assert_eq!(report.appended["raw.customers_orgs"], 80);
    });
}

#[test]
fn speedup_paces_events_at_a_multiple_of_event_time() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    // Three events, 1 s of event time apart; at 5x that is 0.4 s of wall time.
    let lines: Vec<String> = (0..3)
        .map(|i| {
            format!(r#"{{"event_id":"e{i}","timestamp":"2025-07-01T00:00:0{i}Z","org_id":"o"}}"#)
        })
        .collect();
    std::fs::write(landing.join("e.jsonl"), lines.join("\n")).unwrap();
    let log = EmbeddedLog::open(dir.path().join("log"), fast_config()).unwrap();
    let mut o = opts(&landing, &dir.path().join("state"), Order::EventTime);
    o.speedup = Some(5.0);
    let t = std::time::Instant::now();
    replay(&log, &o, &AtomicBool::new(false)).unwrap();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(380), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    o.speedup = Some(0.0);
    assert!(replay(&log, &o, &AtomicBool::new(false)).is_err());
}

#[test]
fn generated_data_has_every_defect_class_and_flag() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let summary = producer::generate::generate(
        &landing,
        &producer::generate::GenSpec {
            orgs: 60,
            days: 20,
            events_per_day: 8_000,
            seed: 3,
        },
    )
    .unwrap();
    assert!(summary.events >= 160_000);
    let log = EmbeddedLog::open(dir.path().join("log"), fast_config()).unwrap();
    replay(
        &log,
        &opts(&landing, &dir.path().join("state"), Order::File),
        &AtomicBool::new(false),
    )
    .unwrap();
    let counts = apply_rules(&log);
    let event_reasons: Vec<&str> = counts
        .reasons
        .keys()
        .filter(|(s, _)| s == "usage_events")
        .map(|(_, r)| r.as_str())
        .collect();
    for code in [
        "parse_error",
        "missing_event_id",
        "bad_timestamp",
        "bad_schema_version",
        "bad_value",
        "bad_cost",
        "no_measure",
        "bad_domain",
        "unknown_org",
        "unknown_resource",
        "duplicate",
    ] {
        assert!(
            event_reasons.contains(&code),
            "no {code} in {event_reasons:?}"
        );
    }
    let master_reasons: Vec<&str> = counts
        .reasons
        .keys()
        .filter(|(s, _)| s != "usage_events")
        .map(|(_, r)| r.as_str())
        .collect();
    for code in [
        "parse_error",
        "missing_key",
        "bad_domain",
        "unknown_org",
        "bad_dates",
        "duplicate",
    ] {
        assert!(
            master_reasons.contains(&code),
            "no master {code} in {master_reasons:?}"
        );
    }
    for flag in [
        "unit_imputed",
        "cost_negative",
        "tokens_misplaced",
        "before_resource",
        "nps_out_of_range",
        "sign_mismatch",
        "credits_imputed",
        "fx_overridden",
        "csat_out_of_range",
        "open_with_csat",
    ] {
        assert!(
            counts.flags.get(flag).is_some_and(|n| *n > 0),
            "no {flag}: {:?}",
            counts.flags
        );
    }
    // A few, not many: defects are rare.
    let bad: u64 = counts
        .reasons
        .iter()
        .filter(|((s, _), _)| s == "usage_events")
        .map(|(_, n)| n)
        .sum();
    assert!(bad * 100 < counts.read["usage_events"], "{bad} defects");
}

#[test]
fn generate_is_deterministic_for_a_seed() {
    let spec = producer::generate::GenSpec {
        orgs: 10,
        days: 3,
        events_per_day: 500,
        seed: 11,
    };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    producer::generate::generate(&a.path().join("l"), &spec).unwrap();
    producer::generate::generate(&b.path().join("l"), &spec).unwrap();
    let files = |d: &std::path::Path| {
        let mut v: Vec<(String, Vec<u8>)> = Vec::new();
        let (found, _) = producer::landing::scan(d).unwrap();
        for f in found {
            v.push((f.rel.clone(), std::fs::read(&f.path).unwrap()));
        }
        v
    };
    let fa = files(&a.path().join("l"));
    assert_eq!(fa, files(&b.path().join("l")));
    assert_eq!(fa.len(), 7 + 4);
    let c = tempfile::tempdir().unwrap();
    producer::generate::generate(
        &c.path().join("l"),
        &producer::generate::GenSpec {
            seed: 12,
            ..spec.clone()
        },
    )
    .unwrap();
    assert_ne!(fa, files(&c.path().join("l")));
    assert!(
        producer::generate::generate(&a.path().join("l"), &spec).is_err(),
        "refuses a non-empty directory"
    );
}
