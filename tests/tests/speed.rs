//! SPEC section 8 on a hand-made fixture: watermark, window finality, late events,
//! and the dedup horizon, replayed in file order so that events arrive out of order.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use e2e::*;
use processor::FromOffset;

fn event(id: &str, ts: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","timestamp":"{ts}","org_id":"org_a","resource_id":"res_1","service":"compute","region":"us-east","metric":"requests","value":10,"unit":"count","cost_usd_increment":1.5,"schema_version":2,"carbon_kg":0.1}}"#
    )
}

/// The fixture's master data (one org, one resource) and `lines` as one events file,
/// replayed in file order into a log under `dir`.
fn fixture(dir: &std::path::Path, lines: &[String]) -> eventlog::EmbeddedLog {
    let landing = dir.join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::write(
        landing.join("customers_orgs.csv"),
        "org_id,org_name,industry,hq_region,plan_tier,is_enterprise,signup_date,sales_rep,lifecycle_stage,marketing_source,nps_score\n\
         org_a,Acme,Gaming,us-east,pro,False,2025-01-01,rep_a,active,ads,\n",
    )
    .unwrap();
    std::fs::write(
        landing.join("resources.csv"),
        "resource_id,org_id,service,region,created_at,state,tags_json\nres_1,org_a,compute,us-east,2025-01-01,running,\n",
    )
    .unwrap();
    std::fs::write(landing.join("events.jsonl"), lines.join("\n")).unwrap();
    let log = open_log(dir);
    let opts = producer::replay::ReplayOptions {
        landing,
        order: producer::replay::Order::File,
        speedup: None,
        follow: false,
        new_run: false,
        state_dir: dir.join("producer"),
        event_partitions: 4,
        batch_records: 100,
        sort_chunk_entries: 1000,
        follow_poll: Duration::from_millis(50),
    };
    producer::replay::replay(&log, &opts, &AtomicBool::new(false)).unwrap();
    log
}

#[test]
fn late_events_windows_and_the_dedup_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        event("e1", "2025-07-01T10:05:00Z"),
        event("e2", "2025-07-01T12:00:00Z"), // watermark 11:50: 09:30 and 10:00 windows final
        event("e3", "2025-07-01T10:40:00Z"), // both its windows final: late
        event("x1", "2025-03-01T00:00:00Z"), // late
        event("x2", "2025-05-01T00:00:00Z"), // late
        event("e1", "2025-07-01T13:00:00Z"), // duplicate of e1 (and does not move the watermark)
        event("x1", "2025-07-01T13:05:00Z"), // x1 is 122 days older than the watermark: expired, kept
        event("x2", "2025-07-01T13:10:00Z"), // x2 is 61 days older: within 90 days, duplicate
    ];
    let log = fixture(dir.path(), &lines);
    process(&log, dir.path(), FromOffset::Committed);

    let ids = |topic: &str| -> Vec<String> {
        read_topic(&log, topic)
            .into_values()
            .flatten()
            .map(|r| {
                let v = record_json(topic, &r);
                v["event"]["event_id"]
                    .as_str()
                    .or(v["event_id"].as_str())
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        ids(processor::SILVER_TOPIC),
        ["e1", "e2", "e3", "x1", "x2", "x1"]
    );
    assert_eq!(ids(processor::LATE_TOPIC), ["e3", "x1", "x2"]);
    let dups: Vec<String> = read_topic(&log, processor::QUARANTINE_TOPIC)
        .into_values()
        .flatten()
        .map(|r| format!("{}:{}", header(&r, "reason"), header(&r, "line_no")))
        .collect();
    assert_eq!(dups, ["duplicate:6", "duplicate:8"]);

    // Windows: one event each; the late e3 changed none and opened none.
    let windows: Vec<(String, i64)> = read_topic(&log, processor::WINDOWS_TOPIC)
        .into_values()
        .flatten()
        .map(|r| {
            let w = record_json(processor::WINDOWS_TOPIC, &r);
            let start = schemas::time::format_micros(w["window_start"].as_i64().unwrap());
            (start, w["events"].as_i64().unwrap())
        })
        .collect();
    let starts: Vec<&str> = windows.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        starts,
        [
            "2025-07-01T09:30:00Z",
            "2025-07-01T10:00:00Z",
            "2025-07-01T11:30:00Z",
            "2025-07-01T12:00:00Z",
            "2025-07-01T12:30:00Z",
            "2025-07-01T13:00:00Z"
        ]
    );
    assert!(windows.iter().all(|(_, n)| *n == 1), "{windows:?}");

    // Daily totals count the late event (the batch path will).
    let daily = table(&log, processor::DAILY_TOPIC, &["usage_date", "service"]);
    let july_1 = schemas::time::date_to_days(schemas::time::parse_date("2025-07-01").unwrap());
    let d = &daily[&format!("{july_1}|\"compute\"")];
    assert_eq!(d["events"], 4);
    assert_eq!(d["requests"], 40.0);
    assert_eq!(d["cost_usd"], 6.0);
    assert_eq!(d["org_name"], "Acme");
}

/// A commit per record: each event is read while the commit of the one before it is
/// still being written on the commit thread (its fsyncs take milliseconds, reading an
/// event microseconds), so its dedup entry and its day's totals must come from that
/// commit's changes, not from RocksDB, which may not show them yet.
#[test]
fn each_event_sees_the_commit_before_it_while_that_one_is_written() {
    let dir = tempfile::tempdir().unwrap();
    // Duplicates right after their first (lines 2 and 8) and two commits later (5);
    // kept events right after kept events of the same day (3-4, 6-7).
    let ids = ["a", "a", "b", "c", "b", "d", "e", "e"];
    let lines: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| event(id, &format!("2025-07-01T10:{:02}:00Z", i + 1)))
        .collect();
    let log = fixture(dir.path(), &lines);
    let cfg = processor::ProcessorConfig {
        poll_records: 1,
        commit_records: 1,
        ..processor_config(FromOffset::Committed)
    };
    let report = processor::run_threads(
        &log,
        &dir.path().join("state"),
        &cfg,
        1,
        &Default::default(),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(report.commits >= 8, "a commit per record: {report:?}");

    let silver: Vec<String> = read_topic(&log, processor::SILVER_TOPIC)
        .into_values()
        .flatten()
        .map(|r| {
            record_json(processor::SILVER_TOPIC, &r)["event"]["event_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(silver, ["a", "b", "c", "d", "e"]);
    let dups: Vec<String> = read_topic(&log, processor::QUARANTINE_TOPIC)
        .into_values()
        .flatten()
        .map(|r| format!("{}:{}", header(&r, "reason"), header(&r, "line_no")))
        .collect();
    assert_eq!(dups, ["duplicate:2", "duplicate:5", "duplicate:8"]);
    // The day's upserts, one per commit of a kept event, each adding to the last.
    let july_1 = schemas::time::date_to_days(schemas::time::parse_date("2025-07-01").unwrap());
    let events: Vec<i64> = read_topic(&log, processor::DAILY_TOPIC)
        .into_values()
        .flatten()
        .map(|r| record_json(processor::DAILY_TOPIC, &r))
        .filter(|d| d["usage_date"] == july_1)
        .map(|d| d["events"].as_i64().unwrap())
        .collect();
    assert_eq!(events, [1, 2, 3, 4, 5]);
}

#[test]
fn a_follower_sees_records_appended_after_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    replay(&log, dir.path(), &landing());
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let follower = s.spawn(|| {
            let state = processor::state::State::open(&dir.path().join("state/processor")).unwrap();
            let cfg = processor::ProcessorConfig {
                until_idle: false,
                ..Default::default()
            };
            let mut p = processor::Processor::open(&log, state, cfg, Default::default()).unwrap();
            p.run_until(&stop).unwrap()
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while committed_silver(&log) < 43_163 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            committed_silver(&log),
            43_163,
            "the follower caught up with the sample"
        );
        // A new file while it follows: its events appear in silver, committed.
        let extra = dir.path().join("extra");
        std::fs::create_dir_all(&extra).unwrap();
        let line =
            std::fs::read_to_string(landing().join("usage_events_stream/events_part_0000.jsonl"))
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .replacen("\"event_id\": \"", "\"event_id\": \"new_", 1);
        std::fs::write(extra.join("late.jsonl"), line).unwrap();
        replay(&log, &dir.path().join("extra-state"), &extra);
        while committed_silver(&log) < 43_164 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let report = follower.join().unwrap();
        assert!(report.commits >= 2);
        assert_eq!(committed_silver(&log), 43_164);
    });
}
