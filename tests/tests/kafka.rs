//! The same binaries on the Kafka backend (SPEC section 1), against the real
//! Kafka-API broker `.ci/run` starts (`KAFKA_TEST_BROKERS`): the whole pipeline gives
//! what the embedded log gives; the processor's crash test passes; two processor
//! instances give what one gives, also when one of them is killed mid-run. Each test
//! runs in a namespace of its own on the broker (`kafka://host:port/<namespace>`).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Instant;

use e2e::*;
use eventlog::{Log, PartitionReader};

/// A data directory (in a parent of its own, which holds its config file) whose
/// binaries use the log at `url`, or the embedded log when `url` is `None`.
fn data_dir(root: &Path, name: &str, url: Option<&str>) -> PathBuf {
    let data = root.join(name).join("data");
    std::fs::create_dir_all(&data).unwrap();
    if let Some(url) = url {
        use_log_url(&data, url);
    }
    data
}

fn processor(data: &Path) -> Command {
    let mut c = pipeline_command("processor", data);
    c.args(["--metrics-addr", "127.0.0.1:0"]);
    c
}

/// `processor` with these arguments, which must succeed.
fn process(data: &Path, args: &[&str]) {
    let mut c = processor(data);
    c.args(args);
    run_ok(c);
}

/// The brokers and the namespace of a URL made by `kafka_url`.
fn brokers_and_namespace(url: &str) -> (&str, &str) {
    url.strip_prefix("kafka://")
        .and_then(|rest| rest.split_once('/'))
        .unwrap()
}

fn replay(data: &Path, order: &str) {
    let mut c = pipeline_command("producer", data);
    c.arg("replay").arg(landing()).args(["--order", order]);
    run_ok(c);
}

/// The number of void ranges a Kafka log in namespace `url` recorded (the truncations
/// of uncommitted outputs the restarts made).
fn voids(url: &str) -> u64 {
    let (brokers, ns) = brokers_and_namespace(url);
    let log = eventlog::KafkaLog::open(brokers, None, &Default::default()).unwrap();
    let topic = format!("_{ns}.eventlog.voids");
    let mut r = log.reader(&topic, 0, 0).unwrap();
    let mut n = 0;
    loop {
        let batch = r.poll(1000).unwrap();
        if batch.is_empty() {
            return n;
        }
        n += batch.len() as u64;
    }
}

#[test]
fn the_whole_pipeline_on_kafka_equals_the_embedded_log() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let embedded = data_dir(dir.path(), "embedded", None);
    let kafka = data_dir(dir.path(), "kafka", Some(&kafka_url(&brokers, "pipeline")));
    batch_run(&embedded, &landing());
    let started = Instant::now();
    batch_run(&kafka, &landing());
    eprintln!(
        "replay, processor, compactor and publish on Kafka: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Every topic, every lake table, gold byte for byte, the accounting, and the five
    // queries for every org.
    assert_same_outputs(&kafka, &embedded);
    let accounting = balanced_accounting(&kafka.join("lake"));
    assert_eq!(accounting["usage_events"]["read"], 43_200);
    assert_eq!(accounting["usage_events"]["silver"], 43_163);
    // `producer topics` lists the pipeline's topics, not the backend's internal one.
    let topics = run_ok({
        let mut c = pipeline_command("producer", &kafka);
        c.arg("topics");
        c
    });
    assert!(topics.contains("raw.usage_events"), "{topics}");
    assert!(!topics.contains("voids"), "{topics}");

    // The topics were created to keep their records (SPEC section 3), as the broker
    // reports them; speed.daily_usage compacted by key.
    let url = kafka_url(&brokers, "pipeline");
    let (b, ns) = brokers_and_namespace(&url);
    let log = eventlog::KafkaLog::open(b, Some(ns), &Default::default()).unwrap();
    for (topic, _) in log.topics().unwrap() {
        let config = log.topic_config(&topic).unwrap().unwrap();
        assert_eq!(config["retention.ms"], "-1", "{topic}: {config:?}");
        assert_eq!(config["retention.bytes"], "-1", "{topic}: {config:?}");
        let compacted = topic == schemas::topics::DAILY_TOPIC;
        assert_eq!(
            config.get("cleanup.policy").map(String::as_str),
            compacted.then_some("compact"),
            "{topic}: {config:?}"
        );
        if topic.starts_with("raw.") {
            assert_eq!(log.finite_retention(&topic).unwrap(), None, "{topic}");
        }
    }
}

/// A raw topic that someone created with a finite retention (Kafka's default of
/// seven days here) is named at start with the fix, and `--reprocess-all` is refused
/// on it with one line.
#[test]
fn a_raw_topic_with_a_finite_retention_is_named_and_reprocess_all_refused() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let dir = tempfile::tempdir().unwrap();
    let url = kafka_url(&brokers, "retention");
    let (_, ns) = brokers_and_namespace(&url);
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let name = format!("{ns}.raw.usage_events");
    let topic =
        NewTopic::new(&name, 4, TopicReplication::Fixed(1)).set("retention.ms", "604800000");
    let created =
        futures_executor::block_on(admin.create_topics([&topic], &AdminOptions::new())).unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    let data = data_dir(dir.path(), "kafka", Some(&url));

    let out = processor(&data).arg("--until-idle").output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("topic raw.usage_events may delete records (retention.ms=604800000)")
            && err.contains("retention.ms=-1"),
        "{err}"
    );
    // The other raw topics, which the processor created, keep their records.
    assert!(!err.contains("topic raw.customers_orgs"), "{err}");

    let out = pipeline_command("compactor", &data)
        .args(["--once", "--reprocess-all"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "--reprocess-all ran on a finite retention"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: --reprocess-all: topic raw.usage_events may have deleted records"),
        "{err}"
    );
}

#[test]
fn processor_sigkill_on_kafka_changes_nothing() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let clean = data_dir(dir.path(), "clean", None);
    let url = kafka_url(&brokers, "crash");
    let crashed = data_dir(dir.path(), "crashed", Some(&url));
    for d in [&clean, &crashed] {
        replay(d, "event-time");
    }
    process(&clean, &["--until-idle"]);

    let kills: usize = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // Small batches, so that each run commits several before its kill: a run on the
    // test broker takes about 1.5 s to its first commit (connections, metadata,
    // coordinator), then commits about every 250 ms (each commit asks for the end
    // offset of every output partition). Most kills land a random moment after the
    // run's first commit, every fourth one a random moment from its start.
    let small = small_batches_config(dir.path(), Some(&url), 100, 200);
    let log = open_pipeline_log(&crashed);
    let killed = kill_processor_runs(kills, 11, (1, 400), &log, || {
        let mut run = processor(&crashed);
        run.arg("--config").arg(&small).arg("--until-idle");
        run
    });
    let committed = committed_silver(&log);
    let voided = voids(&url);
    eprintln!(
        "{killed} of {kills} runs killed mid-work; silver committed up to {committed} records in all; {voided} void ranges recorded"
    );
    assert!(
        killed * 4 >= kills * 3,
        "only {killed} of {kills} runs were killed mid-work"
    );
    assert!(
        committed > 0 && committed < 43_163,
        "{committed} silver records committed before the last run"
    );
    process(&crashed, &["--until-idle"]);
    let expected = processor_outputs(&open_log(&clean));
    assert_same_processor_outputs(&processor_outputs(&log), &expected);

    // Reprocessing from the earliest offset on Kafka, where outputs cannot be cut: the
    // old ones become a void range, and readers see the same outputs.
    process(&crashed, &["--until-idle", "--from-offset", "earliest"]);
    assert!(voids(&url) > voided, "reprocessing recorded no void range");
    assert_same_processor_outputs(&processor_outputs(&log), &expected);

    // The compactor and publish read those topics through their void ranges: the
    // lake, gold, accounting and answers equal the clean run's (`catch_up`: the
    // processor has nothing left, then one compaction and one publish). Less the lake's
    // `offset` column: the speed tables record their own topic offsets, which on
    // Kafka keep a hole where each void range is.
    for d in [&clean, &crashed] {
        catch_up(d);
    }
    assert_same_outputs_without(&crashed, &clean, &["offset"]);
}

fn spawn_instance(data: &Path, instance: &str) -> Child {
    processor(data)
        .args(["--until-idle", "--instance", instance])
        .spawn()
        .unwrap()
}

fn wait_ok(mut child: Child, what: &str) {
    let status = child.wait().unwrap();
    assert!(status.success(), "{what} failed: {status}");
}

#[test]
fn two_processor_instances_give_what_one_gives_also_when_one_is_killed() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let single = data_dir(dir.path(), "single", None);
    replay(&single, "file");
    process(&single, &["--until-idle"]);
    let expected = processor_outputs(&open_log(&single));

    // Two instances, undisturbed.
    let two = data_dir(dir.path(), "two", Some(&kafka_url(&brokers, "two")));
    replay(&two, "file");
    let (a, b) = (spawn_instance(&two, "0/2"), spawn_instance(&two, "1/2"));
    wait_ok(a, "instance 0/2");
    wait_ok(b, "instance 1/2");
    assert_same_processor_outputs(&processor_outputs(&open_pipeline_log(&two)), &expected);

    // Two instances, one killed mid-run and restarted while the other works on.
    let url = kafka_url(&brokers, "killed");
    let killed = data_dir(dir.path(), "killed", Some(&url));
    replay(&killed, "file");
    let small = small_batches_config(dir.path(), Some(&url), 100, 200);
    let a = spawn_instance(&killed, "0/2");
    let mut kills = 0;
    for d in delays(3, 5, 1600, 3200) {
        let mut b = processor(&killed);
        b.arg("--config")
            .arg(&small)
            .args(["--until-idle", "--instance", "1/2"]);
        kills += usize::from(kill_after(b, d));
    }
    assert!(kills > 0, "instance 1/2 finished before any kill");
    let b = spawn_instance(&killed, "1/2");
    wait_ok(a, "instance 0/2");
    wait_ok(b, "instance 1/2 (restarted)");
    assert_same_processor_outputs(&processor_outputs(&open_pipeline_log(&killed)), &expected);
}

#[test]
fn several_instances_on_the_embedded_log_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir(dir.path(), "x", None);
    let out = processor(&data)
        .args(["--until-idle", "--instance", "1/2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("need the Kafka backend"), "{err}");
    for bad in ["2/2", "1", "0/0", "a/b"] {
        let out = processor(&data).args(["--instance", bad]).output().unwrap();
        assert!(!out.status.success(), "--instance {bad} accepted");
    }
}

#[test]
fn a_record_larger_than_the_broker_takes_stops_the_replay_with_one_clear_line() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let events = landing.join("usage_events_stream");
    std::fs::create_dir_all(&events).unwrap();
    // A 2 MB line: above librdkafka's and Kafka's default 1 MB message limit.
    let line = format!(
        "{{\"event_id\": \"big\", \"pad\": \"{}\"}}\n",
        "x".repeat(2 << 20)
    );
    std::fs::write(events.join("events_big.jsonl"), line).unwrap();
    let data = data_dir(dir.path(), "kafka", Some(&kafka_url(&brokers, "big")));
    let out = pipeline_command("producer", &data)
        .arg("replay")
        .arg(&landing)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a 2 MB record was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: kafka produce"), "{err}");
    assert!(last.to_lowercase().contains("too large"), "{err}");
}

#[test]
fn a_replay_killed_on_kafka_resumes_without_gap_or_repeat() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let clean = data_dir(dir.path(), "clean", None);
    replay(&clean, "file");
    let killed = data_dir(dir.path(), "killed", Some(&kafka_url(&brokers, "replay")));
    let mut kills = 0;
    for d in delays(5, 3, 400, 2000) {
        let mut c = pipeline_command("producer", &killed);
        c.arg("replay").arg(landing()).args(["--order", "file"]);
        kills += usize::from(kill_after(c, d));
    }
    assert!(kills > 0, "every replay finished before its kill");
    replay(&killed, "file");
    let (a, b) = (open_log(&clean), open_pipeline_log(&killed));
    let clean_offsets = end_offsets(&clean);
    assert_eq!(end_offsets(&killed), clean_offsets);
    for topic in clean_offsets
        .keys()
        .map(|(t, _)| t.clone())
        .collect::<std::collections::BTreeSet<_>>()
    {
        assert!(flat(&a, &topic) == flat(&b, &topic), "{topic} differs");
    }
    eprintln!("{kills} replays killed mid-way");
}

#[test]
fn a_cursor_up_to_a_committed_position_that_ends_a_void_range() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let url = kafka_url(&brokers, "cursor");
    let (b, ns) = brokers_and_namespace(&url);
    let log = eventlog::KafkaLog::open(b, Some(ns), &Default::default()).unwrap();
    log.ensure_topic("t", 1).unwrap();
    let recs: Vec<eventlog::Record> = (0..10)
        .map(|i| eventlog::Record::new(None::<Vec<u8>>, format!("r{i}").into_bytes()))
        .collect();
    log.append("t", 0, &recs).unwrap();
    let decode = |r: eventlog::StoredRecord| Ok((r.offset, r.record.value.to_vec()));
    // A cursor opened at 5 before 5..10 becomes void: it meets the void range on
    // its first poll, which then returns nothing, having skipped to the end.
    let mut early = compactor::cursor::Cursor::new(&log, "t", 0, 5, 10, decode).unwrap();
    // Offsets 5..10 uncommitted and discarded: the committed position is then 10.
    log.truncate("t", 0, 5).unwrap();
    assert!(early.next().unwrap().is_none());
    for from in [0, 3, 5, 7] {
        let mut cur = compactor::cursor::Cursor::new(&log, "t", 0, from, 10, decode).unwrap();
        let mut got = Vec::new();
        while let Some((offset, _)) = cur.next().unwrap() {
            got.push(offset);
        }
        assert_eq!(got, (from..5).collect::<Vec<u64>>(), "from {from}");
    }
}

/// A Kafka-API broker of a test's own (`.ci/tansu` with a state directory of its
/// own), which the test may kill and restart; stopped when dropped.
struct OwnBroker {
    state: PathBuf,
}

impl OwnBroker {
    /// Starts one, if tansu is installed (CI installs it: there a missing one fails).
    fn start(state: PathBuf) -> Option<OwnBroker> {
        let tansu = std::env::var_os("TANSU")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(&std::env::var("HOME").unwrap()).join(".cargo/bin/tansu"));
        if !tansu.exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must install tansu (see .ci/run)"
            );
            eprintln!("SKIPPED: no tansu at {} (set TANSU)", tansu.display());
            return None;
        }
        let broker = OwnBroker { state };
        broker.run("start");
        Some(broker)
    }

    fn run(&self, what: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/tansu");
        let ok = Command::new("bash")
            .arg(script)
            .arg(what)
            .env("TANSU_STATE", &self.state)
            .status()
            .unwrap();
        assert!(ok.success(), ".ci/tansu {what}");
    }

    fn brokers(&self) -> String {
        std::fs::read_to_string(self.state.join("brokers"))
            .unwrap()
            .trim()
            .to_owned()
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.run("stop");
    }
}

/// Waits for a child with a deadline; its exit status and the last line of `log`.
fn wait_for(
    child: &mut Child,
    what: &str,
    log: &Path,
    within: std::time::Duration,
) -> (bool, String) {
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}: still running after {within:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let last = text.lines().last().unwrap_or_default().to_owned();
    (status.success(), last)
}

/// The broker killed (SIGKILL) and restarted on the same storage while a replay and
/// the processor run: each either carries on or fails with one line `error: ...`, and
/// the pipeline, restarted, ends as a clean run on the embedded log.
#[test]
fn a_broker_killed_and_restarted_under_replay_and_processor_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = OwnBroker::start(dir.path().join("broker")) else {
        return;
    };
    let clean = data_dir(dir.path(), "clean", None);
    batch_run(&clean, &landing());
    let url = format!("kafka://{}/restart", broker.brokers());
    let live = data_dir(dir.path(), "live", Some(&url));
    let file = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();

    // A paced replay (under a minute for the sample), and the processor following.
    let mut replay = pipeline_command("producer", &live);
    replay
        .arg("replay")
        .arg(landing())
        .args(["--order", "file", "--speedup", "100000"])
        .stderr(file("replay.log"));
    let mut replay = replay.spawn().unwrap();
    let mut follower = processor(&live);
    follower.stderr(file("processor.log"));
    let mut follower = follower.spawn().unwrap();
    let log = open_pipeline_log(&live);
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    while committed_silver(&log) == 0 {
        assert!(Instant::now() < deadline, "no silver after 120 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(log);
    assert!(
        replay.try_wait().unwrap().is_none() && follower.try_wait().unwrap().is_none(),
        "the replay or the processor ended before the broker was killed"
    );

    broker.run("kill");
    std::thread::sleep(std::time::Duration::from_secs(3));
    broker.run("restart");

    // The replay carries on to its end or stops with one line; so does the processor,
    // which is then stopped (SIGTERM) if it still runs.
    let within = std::time::Duration::from_secs(300);
    let (replayed, last) = wait_for(
        &mut replay,
        "replay",
        &dir.path().join("replay.log"),
        within,
    );
    eprintln!("replay after the broker restart: ok={replayed} {last}");
    assert!(replayed || last.starts_with("error: "), "{last}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    if follower.try_wait().unwrap().is_none() {
        let ok = Command::new("kill")
            .args(["-TERM", &follower.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let (processed, last) = wait_for(
        &mut follower,
        "processor",
        &dir.path().join("processor.log"),
        std::time::Duration::from_secs(30),
    );
    eprintln!("processor after the broker restart: ok={processed} {last}");
    assert!(processed || last.starts_with("error: "), "{last}");

    // The pipeline restarted: a replay that failed resumes, the processor catches up.
    if !replayed {
        let mut resume = pipeline_command("producer", &live);
        resume.arg("replay").arg(landing());
        run_ok(resume);
    }
    catch_up(&live);
    // A broker that restarts may take a produce request the client then sends again
    // (Kafka keeps the idempotent producer's state across restarts; a Kafka-API
    // broker may not): the raw topics then hold a record twice. Nothing may be lost,
    // an extra raw record may only repeat one, and the processor's dedup must keep it
    // out of silver (a `duplicate` in quarantine), so that silver, gold and the answers
    // are the clean run's.
    let extra = repeated_raw_records(&live, &clean);
    if extra == 0 {
        assert_same_outputs_without(&live, &clean, &["offset"]);
    } else {
        eprintln!("the broker took {extra} raw records twice");
        let (a, b) = (open_pipeline_log(&live), open_pipeline_log(&clean));
        assert!(
            flat(&a, processor::SILVER_TOPIC) == flat(&b, processor::SILVER_TOPIC),
            "silver differs"
        );
        let extra_quarantine = flat(&a, processor::QUARANTINE_TOPIC).len()
            - flat(&b, processor::QUARANTINE_TOPIC).len();
        let accounting = balanced_accounting(&live.join("lake"));
        let clean_accounting = balanced_accounting(&clean.join("lake"));
        let dups = |a: &serde_json::Value| {
            a.as_object()
                .unwrap()
                .values()
                .map(|s| s["quarantine"]["duplicate"].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        assert_eq!(dups(&accounting) - dups(&clean_accounting), extra as u64);
        assert_eq!(extra_quarantine, extra);
        assert!(
            gold_marts(&live.join("lake")) == gold_marts(&clean.join("lake")),
            "gold differs"
        );
        assert!(answers(&live) == answers(&clean), "the answers differ");
    }
}

/// How many records the raw topics of `live` hold beyond `clean`'s, after checking
/// that every clean record is there and every extra one repeats a record.
fn repeated_raw_records(live: &Path, clean: &Path) -> usize {
    let (a, b) = (open_pipeline_log(live), open_pipeline_log(clean));
    let mut extra = 0;
    for (topic, _) in b.topics().unwrap() {
        if !topic.starts_with("raw.") {
            continue;
        }
        let mut left: std::collections::BTreeMap<_, usize> = Default::default();
        for r in flat(&a, &topic) {
            *left.entry(r).or_default() += 1;
        }
        let clean_records = flat(&b, &topic);
        for r in &clean_records {
            let n = left
                .get_mut(r)
                .unwrap_or_else(|| panic!("{topic}: a record lost"));
            assert!(*n > 0, "{topic}: a record lost");
            *n -= 1;
        }
        for (r, n) in left {
            if n > 0 {
                assert!(
                    clean_records.contains(&r),
                    "{topic}: a record no one appended"
                );
                extra += n;
            }
        }
    }
    extra
}
