//! The processor on the sample data set: counts, windows against an independent
//! computation, replays, reprocessing, and SIGKILL at random moments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use e2e::*;
use processor::FromOffset;

fn silver_values(log: &eventlog::EmbeddedLog) -> Vec<serde_json::Value> {
    read_topic(log, processor::SILVER_TOPIC)
        .into_values()
        .flatten()
        .map(|r| record_json(processor::SILVER_TOPIC, &r))
        .collect()
}

fn quarantine_reasons(log: &eventlog::EmbeddedLog) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for r in read_topic(log, processor::QUARANTINE_TOPIC)
        .into_values()
        .flatten()
    {
        *out.entry((header(&r, "source"), header(&r, "reason")))
            .or_default() += 1;
    }
    out
}

/// Windows computed from silver events alone, with plain arithmetic (not the
/// processor's code): key (org, service, start) -> [events, cost, requests,
/// cpu_hours, storage_gb_hours, tokens].
fn windows_from_silver(silver: &[serde_json::Value]) -> BTreeMap<(String, String, i64), [f64; 6]> {
    const HALF_HOUR: i64 = 1_800_000_000;
    let mut out: BTreeMap<(String, String, i64), [f64; 6]> = BTreeMap::new();
    for m in silver {
        let e = &m["event"];
        let f = &m["flags"];
        let ts = e["ts_micros"].as_i64().unwrap();
        let later = ts.div_euclid(HALF_HOUR) * HALF_HOUR;
        let value = e["value"].as_f64().unwrap_or(0.0);
        let cost = if f["cost_negative"].as_bool().unwrap() {
            0.0
        } else {
            e["cost_usd"].as_f64().unwrap()
        };
        let tokens = if f["tokens_misplaced"].as_bool().unwrap() {
            0.0
        } else {
            e["genai_tokens"].as_f64().unwrap_or(0.0)
        };
        for start in [later - HALF_HOUR, later] {
            let key = (
                e["org_id"].as_str().unwrap().to_owned(),
                e["service"].as_str().unwrap().to_owned(),
                start,
            );
            let w = out.entry(key).or_default();
            w[0] += 1.0;
            w[1] += cost;
            match e["metric"].as_str().unwrap() {
                "requests" => w[2] += value,
                "cpu_hours" => w[3] += value,
                _ => w[4] += value,
            }
            w[5] += tokens;
        }
    }
    out
}

fn emitted_windows(log: &eventlog::EmbeddedLog) -> BTreeMap<(String, String, i64), [f64; 6]> {
    let mut out = BTreeMap::new();
    for r in read_topic(log, processor::WINDOWS_TOPIC)
        .into_values()
        .flatten()
    {
        let w = record_json(processor::WINDOWS_TOPIC, &r);
        let key = (
            w["org_id"].as_str().unwrap().to_owned(),
            w["service"].as_str().unwrap().to_owned(),
            w["window_start"].as_i64().unwrap(),
        );
        assert_eq!(w["window_end"].as_i64().unwrap() - key.2, 3_600_000_000);
        let vals = [
            w["events"].as_f64().unwrap(),
            w["cost_usd"].as_f64().unwrap(),
            w["requests"].as_f64().unwrap(),
            w["cpu_hours"].as_f64().unwrap(),
            w["storage_gb_hours"].as_f64().unwrap(),
            w["genai_tokens"].as_f64().unwrap(),
        ];
        assert!(
            out.insert(key.clone(), vals).is_none(),
            "window {key:?} emitted twice"
        );
    }
    out
}

fn assert_same_windows(
    a: &BTreeMap<(String, String, i64), [f64; 6]>,
    b: &BTreeMap<(String, String, i64), [f64; 6]>,
) {
    assert_eq!(a.len(), b.len());
    for (k, va) in a {
        let vb = b.get(k).unwrap_or_else(|| panic!("missing window {k:?}"));
        for i in 0..6 {
            assert!(
                (va[i] - vb[i]).abs() <= 1e-9 * va[i].abs().max(1.0),
                "{k:?}[{i}]: {} vs {}",
                va[i],
                vb[i]
            );
        }
    }
}

#[test]
fn sample_gives_the_known_counts_and_windows_equal_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    replay(&log, dir.path(), &landing());
    process(&log, dir.path(), FromOffset::Committed);

    let silver = silver_values(&log);
    assert_eq!(silver.len(), 43_163);
    let count = |flag: &str| {
        silver
            .iter()
            .filter(|m| m["flags"][flag].as_bool().unwrap())
            .count()
    };
    assert_eq!(count("unit_imputed"), 2_038);
    assert_eq!(count("cost_negative"), 210);
    assert_eq!(count("before_resource"), 7_362);
    let reasons = quarantine_reasons(&log);
    assert_eq!(
        reasons,
        BTreeMap::from([(("usage_events".to_string(), "no_measure".to_string()), 37)])
    );
    assert_eq!(
        read_topic(&log, processor::LATE_TOPIC)
            .values()
            .map(Vec::len)
            .sum::<usize>(),
        0
    );
    assert_same_windows(&emitted_windows(&log), &windows_from_silver(&silver));
    // Enrichment as SPEC section 5 says.
    let e = &silver[0]["event"];
    for field in [
        "org_name",
        "industry",
        "plan_tier",
        "hq_region",
        "resource_state",
        "resource_created_at",
    ] {
        assert!(!e[field].is_null(), "{field}");
    }
    // Each silver record points at the raw record it came from: the same event, and
    // that record names its landing file and line.
    let raw = read_topic(&log, "raw.usage_events");
    for m in &silver {
        let p = m["lineage"]["partition"].as_u64().unwrap() as u32;
        let offset = m["lineage"]["offset"].as_u64().unwrap();
        let k = raw[&p]
            .binary_search_by_key(&offset, |r| r.offset)
            .unwrap_or_else(|_| panic!("no raw record at {p}/{offset}"));
        let r = &raw[&p][k];
        let line: serde_json::Value = serde_json::from_slice(&r.record.value).unwrap();
        assert_eq!(line["event_id"], m["event"]["event_id"]);
        assert_eq!(
            m["lineage"]["ingest_ms"].as_i64().unwrap(),
            r.record.timestamp_ms
        );
        assert!(header(r, "source_file").ends_with(".jsonl"));
        assert!(header(r, "line_no").parse::<u64>().unwrap() >= 1);
    }
}

#[test]
fn replaying_again_adds_only_quarantine_and_reprocessing_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    replay(&log, dir.path(), &landing());
    process(&log, dir.path(), FromOffset::Committed);
    let first = processor_outputs(&log);

    // --from-offset earliest on a finished processor: the same outputs.
    process(&log, dir.path(), FromOffset::Earliest);
    assert!(
        processor_outputs(&log) == first,
        "from-offset earliest changed the outputs"
    );
    // --from-offset N, earlier than committed: the same outputs.
    process(&log, dir.path(), FromOffset::At(5_000));
    assert!(
        processor_outputs(&log) == first,
        "from-offset 5000 changed the outputs"
    );

    // The landing directory again: silver and windows unchanged, quarantine grows.
    replay(&log, dir.path(), &landing());
    process(&log, dir.path(), FromOffset::Committed);
    let second = processor_outputs(&log);
    assert!(second.0 == first.0, "silver changed");
    assert!(second.2 == first.2, "windows changed");
    let reasons = quarantine_reasons(&log);
    assert_eq!(
        reasons[&("usage_events".to_string(), "duplicate".to_string())],
        43_163
    );
    assert_eq!(
        reasons[&("usage_events".to_string(), "no_measure".to_string())],
        74
    );
    let master_dups: u64 = reasons
        .iter()
        .filter(|((s, r), _)| s != "usage_events" && r == "duplicate")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        master_dups,
        80 + 800 + 400 + 240 + 1000 + 1500 + 92,
        "every master row again is a duplicate"
    );
}

fn run_processor(data: &Path) -> Command {
    let mut c = pipeline_command("processor", data);
    c.args(["--metrics-addr", "127.0.0.1:0"]);
    c
}

#[test]
fn sigkill_at_random_moments_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean");
    let crashed = dir.path().join("crashed");
    for d in [&clean, &crashed] {
        std::fs::create_dir_all(d).unwrap();
        let log = open_log(d);
        replay(&log, d, &landing());
    }
    let out = run_processor(&clean).arg("--until-idle").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let kills: usize = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // Small batches, so that a run lives long enough to commit several of them
    // before its kill (the default batch of an unoptimized build takes longer than
    // the longest delay).
    let small = small_batches_config(dir.path(), None, 100, 400);
    // The committed positions, read from the commit file the processor rewrites.
    let watch = open_log(&crashed);
    let killed = kill_processor_runs(kills, 7, (1, 30), &watch, || {
        let mut run = run_processor(&crashed);
        run.arg("--config").arg(&small).arg("--until-idle");
        run
    });
    // The kills landed mid-work: some of the sample is committed, not all of it.
    let partial = committed_silver(&watch);
    eprintln!("{partial} silver events committed across {killed} killed runs");
    assert!(
        partial > 0 && partial < 43_163,
        "{partial} silver events committed before the last run"
    );
    let mut last = run_processor(&crashed);
    last.arg("--until-idle");
    run_ok(last);
    // Every run was still working through the sample when it was killed (30 ms
    // past a commit, or 240 ms from the start, of an unoptimized build get through a
    // few thousand events at most).
    assert_eq!(killed, kills, "some runs finished before their kill");
    let a = open_log(&clean);
    let b = open_log(&crashed);
    assert_same_processor_outputs(&processor_outputs(&a), &processor_outputs(&b));
}

#[test]
fn threads_split_the_work_and_a_new_split_rebuilds_the_same_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    replay(&open_log(&data), &data, &landing());
    let threads = |n: &str| {
        let mut c = run_processor(&data);
        c.args(["--until-idle", "--threads", n]);
        run_ok(c);
        processor_outputs(&open_log(&data))
    };
    let states = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(data.join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    // One thread: the outputs every split must give.
    let one = threads("1");
    assert_eq!(states(), ["processor"]);
    // Four threads, one partition each: the old state goes, the same outputs are
    // rebuilt from offset 0.
    let four = threads("4");
    assert_eq!(
        states(),
        [
            "processor-0-of-4",
            "processor-1-of-4",
            "processor-2-of-4",
            "processor-3-of-4"
        ]
    );
    assert_same_processor_outputs(&one, &four);
    // More threads than partitions: one per partition (the same split).
    let many = threads("9");
    assert_eq!(states().len(), 4);
    assert_same_processor_outputs(&one, &many);
    // Two, and back to one.
    assert_same_processor_outputs(&one, &threads("2"));
    assert_eq!(states(), ["processor-0-of-2", "processor-1-of-2"]);
    assert_same_processor_outputs(&one, &threads("1"));
    assert_eq!(states(), ["processor"]);
}

/// A generated landing directory under `dir`: six orgs, `days` days of
/// `events_per_day` events.
fn generated_landing(dir: &Path, days: u32, events_per_day: u64) -> std::path::PathBuf {
    let landing = dir.join("landing");
    let spec = producer::generate::GenSpec {
        orgs: 6,
        days,
        events_per_day,
        seed: 3,
    };
    producer::generate::generate(&landing, &spec).unwrap();
    landing
}

/// Log lines written to a shared buffer.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_slow_commit_is_logged_with_where_its_time_went() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .finish();
    // The commits run on the processor's own threads: the subscriber must be global.
    tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
    let dir = tempfile::tempdir().unwrap();
    let landing = generated_landing(dir.path(), 1, 300);
    let log = open_log(dir.path());
    replay(&log, dir.path(), &landing);
    // The first two output fsyncs take 300 ms more: a disk that stalls.
    let stalls = std::sync::atomic::AtomicU32::new(2);
    let stalling = eventlog::hooked::Hooked::new(&log, |call| {
        use std::sync::atomic::Ordering::SeqCst;
        if matches!(call, eventlog::hooked::Call::FlushPartitions(_))
            && stalls
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        Ok(())
    });
    processor::run_threads(
        &stalling,
        &dir.path().join("state"),
        &processor_config(FromOffset::Committed),
        1,
        &Default::default(),
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap();
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // Other tests of this binary may log slow commits of their own: only the stalled
    // ones are known here.
    let field = |line: &str, name: &str| -> f64 {
        let at = line.find(&format!("{name}=")).expect(name) + name.len() + 1;
        let v = &line[at..];
        v[..v.find(' ').unwrap_or(v.len())].parse().unwrap()
    };
    let stalled: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("slow commit") && field(l, "outputs_fsync_ms") >= 300.0)
        .collect();
    assert!(
        stalled.len() >= 2,
        "one warning per stalled commit:\n{text}"
    );
    for line in stalled {
        let parts: f64 = [
            "prepared_and_queued_ms",
            "outputs_fsync_ms",
            "state_write_ms",
            "publish_ms",
        ]
        .iter()
        .map(|p| field(line, p))
        .sum();
        assert!((parts - field(line, "total_ms")).abs() < 5.0, "{line}");
    }
    // The stalls delayed the commits and changed nothing: every event is accounted.
    let silver = read_topic(&log, processor::SILVER_TOPIC);
    let quarantined = read_topic(&log, processor::QUARANTINE_TOPIC);
    let raw: usize = read_topic(&log, "raw.usage_events")
        .values()
        .map(Vec::len)
        .sum();
    let kept: usize = silver.values().map(Vec::len).sum();
    let events_quarantined = quarantined
        .values()
        .flatten()
        .filter(|r| header(r, "source") == "usage_events")
        .count();
    assert!(kept > 0);
    assert_eq!(kept + events_quarantined, raw);
}

#[test]
fn while_behind_commits_come_at_the_longer_interval_and_change_nothing() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let landing = generated_landing(dir.path(), 2, 3000);
    let poll = 100;
    let run = |name: &str, behind: Duration| {
        let data = dir.path().join(name);
        let log = open_log(&data);
        replay(&log, &data, &landing);
        // One thread, every partition: a step reads up to `poll` records of each.
        let cfg = processor::ProcessorConfig {
            poll_records: poll,
            commit_interval: Duration::ZERO,
            commit_interval_behind: behind,
            ..processor_config(FromOffset::Committed)
        };
        let report = processor::run_threads(
            &log,
            &data.join("state"),
            &cfg,
            1,
            &Default::default(),
            &std::sync::atomic::AtomicBool::new(false),
        )
        .unwrap();
        (report, processor_outputs(&log))
    };
    let (every_step, a) = run("every-step", Duration::ZERO);
    let (behind, b) = run("behind", Duration::from_secs(3600));
    assert_same_processor_outputs(&a, &b);
    assert_eq!(every_step.records_in, behind.records_in);
    // With no interval every step commits; with an hour's while behind, only the
    // steps that found less than a poll's worth (the last ones) and the end do.
    let events = 2 * 3000;
    assert!(
        every_step.commits as usize >= events / (4 * poll),
        "{every_step:?}"
    );
    assert!(behind.commits <= 5, "{behind:?} against {every_step:?}");
}

/// Bytes of `path` in the page cache, by util-linux's `fincore` (mincore(2)).
fn cached_bytes(path: &Path) -> u64 {
    let out = run_ok({
        let mut c = Command::new("fincore");
        c.args(["--bytes", "--noheadings", "--output", "RES"])
            .arg(path);
        c
    });
    out.trim().parse().unwrap()
}

#[test]
fn the_processor_drops_its_older_output_pages_and_reads_them_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (dropped, plain) = (dir.path().join("dropped"), dir.path().join("plain"));
    for d in [&dropped, &plain] {
        std::fs::create_dir_all(d).unwrap();
        replay(&open_log(d), d, &landing());
    }
    const KEEP: u64 = 64 * 1024;
    let config = dir.path().join("keep.toml");
    std::fs::write(
        &config,
        format!("[processor]\noutput_cache_bytes = {KEEP}\n"),
    )
    .unwrap();
    let mut run = run_processor(&dropped);
    run.arg("--config").arg(&config).arg("--until-idle");
    run_ok(run);
    // Each silver partition holds megabytes; only its newest KEEP bytes stay cached
    // (and the folio, of up to 128 KiB here, that holds where the dropping stopped).
    for p in 0..4 {
        let part = dropped.join(format!("log/{}/{p}", processor::SILVER_TOPIC));
        for entry in std::fs::read_dir(&part).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                let (size, cached) = (std::fs::metadata(&path).unwrap().len(), cached_bytes(&path));
                assert!(size > 1024 * 1024, "{}: {size} bytes", path.display());
                assert!(
                    cached <= KEEP + 128 * 1024,
                    "{}: {cached} of {size} bytes cached",
                    path.display()
                );
            }
        }
    }
    // Read back from disk, the outputs are those of a run that kept its pages.
    process(&open_log(&plain), &plain, FromOffset::Committed);
    assert_same_processor_outputs(
        &processor_outputs(&open_log(&dropped)),
        &processor_outputs(&open_log(&plain)),
    );
}
