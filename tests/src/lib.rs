//! Helpers of the end-to-end tests: run the pipeline's pieces on a landing directory
//! and read back what the topics hold. (A test harness, not a product crate: it may
//! depend on every binary crate.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use eventlog::{EmbeddedLog, FsyncPolicy, Log, LogConfig, PartitionReader, StoredRecord};

pub fn landing() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/landing")
}

pub fn log_config() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Never,
        ..LogConfig::default()
    }
}

pub fn open_log(data: &Path) -> EmbeddedLog {
    EmbeddedLog::open(data.join("log"), log_config()).unwrap()
}

/// The log the binaries run on `data` use: the one named by the config file of
/// `data`'s parent directory (see [`use_log_url`]), else the embedded log in `data`.
pub fn open_pipeline_log(data: &Path) -> eventlog::AnyLog {
    let file = data
        .parent()
        .unwrap()
        .join(eventlog::config::DEFAULT_CONFIG_PATH);
    let mut config = if file.exists() {
        eventlog::PipelineConfig::load(Some(&file)).unwrap()
    } else {
        eventlog::PipelineConfig::default()
    };
    config.pipeline.data_dir = data.to_owned();
    config.log.fsync = "never".into();
    config.open_log().unwrap()
}

/// Makes the binaries run on `data` (from its parent directory, see
/// [`pipeline_command`]) use the log at `url`, through the product's own config file.
pub fn use_log_url(data: &Path, url: &str) {
    let dir = data.parent().unwrap().join("config");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("pipeline.toml"),
        format!("[pipeline]\nlog_url = \"{url}\"\n"),
    )
    .unwrap();
}

/// The broker of the Kafka tests: `KAFKA_TEST_BROKERS` (`.ci/run` starts one). In CI
/// a missing broker is a failure; elsewhere the caller skips, saying so.
pub fn kafka_brokers() -> Option<String> {
    match std::env::var("KAFKA_TEST_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "KAFKA_TEST_BROKERS is not set: CI must start the test broker (.ci/run)"
            );
            eprintln!("SKIPPED: set KAFKA_TEST_BROKERS=host:port to run the Kafka tests");
            None
        }
    }
}

/// A namespace of its own on the test broker for one test run.
pub fn kafka_url(brokers: &str, name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("kafka://{brokers}/{name}-{}-{nanos}", std::process::id())
}

/// Everything the processor wrote, in comparable form; the daily upserts as the
/// table they stand for (which intermediate upserts a run emits depends on where its
/// commits fell; the table does not).
pub type ProcessorOutputs = (Flat, Flat, Flat, Flat, BTreeMap<String, serde_json::Value>);

pub fn processor_outputs(log: &impl Log) -> ProcessorOutputs {
    (
        flat(log, processor::SILVER_TOPIC),
        flat(log, processor::QUARANTINE_TOPIC),
        flat(log, processor::WINDOWS_TOPIC),
        flat(log, processor::LATE_TOPIC),
        table(
            log,
            processor::DAILY_TOPIC,
            &["org_id", "usage_date", "service"],
        ),
    )
}

/// Two processors' outputs, equal part by part (each named in the failure).
pub fn assert_same_processor_outputs(a: &ProcessorOutputs, b: &ProcessorOutputs) {
    assert!(
        a.0 == b.0,
        "silver differs ({} vs {} records)",
        a.0.len(),
        b.0.len()
    );
    assert!(
        a.1 == b.1,
        "quarantine differs ({} vs {} records)",
        a.1.len(),
        b.1.len()
    );
    assert!(
        a.2 == b.2,
        "windows differ ({} vs {} records)",
        a.2.len(),
        b.2.len()
    );
    assert!(a.3 == b.3, "late events differ");
    assert!(a.4 == b.4, "daily aggregates differ");
}

/// `producer replay` in event-time order, in process.
pub fn replay(log: &EmbeddedLog, data: &Path, landing: &Path) {
    let opts = producer::replay::ReplayOptions {
        landing: landing.to_owned(),
        order: producer::replay::Order::EventTime,
        speedup: None,
        follow: false,
        new_run: false,
        state_dir: data.join("producer"),
        event_partitions: 4,
        batch_records: 2000,
        sort_chunk_entries: 1_000_000,
        follow_poll: Duration::from_millis(50),
    };
    producer::replay::replay(log, &opts, &AtomicBool::new(false)).unwrap();
}

pub fn processor_config(from: processor::FromOffset) -> processor::ProcessorConfig {
    processor::ProcessorConfig {
        from,
        until_idle: true,
        ..Default::default()
    }
}

/// `processor --until-idle`, in process, with the default number of threads.
pub fn process(log: &EmbeddedLog, data: &Path, from: processor::FromOffset) {
    let threads = eventlog::PipelineConfig::default().processor.threads;
    processor::run_threads(
        log,
        &data.join("state"),
        &processor_config(from),
        threads,
        &Default::default(),
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap();
}

/// Every record of every partition of a topic, in offset order.
pub fn read_topic(log: &impl Log, topic: &str) -> BTreeMap<u32, Vec<StoredRecord>> {
    let mut out = BTreeMap::new();
    let n = log.partitions(topic).unwrap().unwrap_or(0);
    for p in 0..n {
        let mut r = log.reader(topic, p, 0).unwrap();
        let mut v = Vec::new();
        loop {
            let batch = r.poll(100_000).unwrap();
            if batch.is_empty() {
                break;
            }
            v.extend(batch);
        }
        out.insert(p, v);
    }
    out
}

/// A topic's records as comparable bytes: (partition, key, value, headers).
pub type Flat = Vec<(u32, Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>)>;

pub fn flat(log: &impl Log, topic: &str) -> Flat {
    read_topic(log, topic)
        .into_iter()
        .flat_map(|(p, recs)| {
            recs.into_iter().map(move |r| {
                (
                    p,
                    r.record.key.map(|k| k.to_vec()),
                    r.record.value.to_vec(),
                    r.record
                        .headers
                        .into_iter()
                        .map(|(n, v)| (n.into_owned(), v.to_vec()))
                        .collect(),
                )
            })
        })
        .collect()
}

/// An upsert topic read as the table it stands for: the last value per key.
pub fn table(
    log: &impl Log,
    topic: &str,
    key_fields: &[&str],
) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for (_, recs) in read_topic(log, topic) {
        for r in recs {
            let v: serde_json::Value = serde_json::from_slice(&r.record.value).unwrap();
            let key = key_fields
                .iter()
                .map(|f| v[*f].to_string())
                .collect::<Vec<_>>()
                .join("|");
            out.insert(key, v);
        }
    }
    out
}

/// A record of a derived event topic as JSON: a `silver.usage_events` or
/// `speed.usage_windows` record (Avro) decoded as its schema says, the others (JSON)
/// as they are.
pub fn record_json(topic: &str, r: &StoredRecord) -> serde_json::Value {
    let bytes = &r.record.value;
    match topic {
        processor::SILVER_TOPIC => {
            serde_json::to_value(schemas::speed::SilverMessage::decode(bytes).unwrap())
        }
        processor::WINDOWS_TOPIC => {
            serde_json::to_value(schemas::speed::WindowMessage::decode(bytes).unwrap())
        }
        _ => serde_json::from_slice(bytes),
    }
    .unwrap()
}

pub fn header(r: &StoredRecord, name: &str) -> String {
    String::from_utf8_lossy(r.record.header(name).unwrap_or_default()).into_owned()
}

/// The path of one of the workspace's binaries, built first so that running only
/// this package's tests never uses a stale binary (a no-op when it is up to date).
/// Built as `cargo test --workspace` builds it: a `cargo build -p <name>` would
/// resolve the features of fewer packages (the `cc` build dependency's among them)
/// and so compile RocksDB's C++ once more per binary.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let ok = std::process::Command::new(env!("CARGO"))
            .args(["test", "--workspace", "--no-run", "--quiet"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(ok.success(), "cargo test --workspace --no-run");
    });
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join(name);
    // `cargo test` builds a package's binary only for the package's own integration
    // tests: every binary package has a `tests/cli.rs`, or its binary here is stale.
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

/// One of the pipeline's binaries, set up to run on `data` (`PIPELINE_DATA_DIR`) with
/// the embedded defaults, no fsync, quiet logs, from `data`'s parent directory.
pub fn pipeline_command(name: &str, data: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(bin(name));
    c.env("PIPELINE_DATA_DIR", data)
        .env("PIPELINE_LOG_FSYNC", "never")
        .env("RUST_LOG", "warn")
        .current_dir(data.parent().unwrap());
    c
}

/// Runs `command`, and kills it with SIGKILL after `delay` if it is still running;
/// whether it was killed (rather than finished first).
pub fn kill_after(command: std::process::Command, delay: Duration) -> bool {
    kill_after_progress(command, || true, delay)
}

/// Runs `command`, waits until `progressed()` (polled every 5 ms) says it made
/// progress, then kills it with SIGKILL after `delay` if it is still running; whether
/// it was killed. A kill timed from the start alone can land, on a slow or busy
/// machine, before every run's first commit; timed from the first commit, each run
/// leaves something behind and is still killed at a moment of its work that `delay`
/// picks.
pub fn kill_after_progress(
    mut command: std::process::Command,
    progressed: impl Fn() -> bool,
    delay: Duration,
) -> bool {
    let mut child = command.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !progressed() && child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "no progress in 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    if running {
        child.kill().unwrap();
    }
    child.wait().unwrap();
    running
}

/// The `silver.usage_events` records the processor has committed, all partitions.
pub fn committed_silver(log: &impl Log) -> u64 {
    let parts = log
        .partitions(processor::SILVER_TOPIC)
        .unwrap()
        .unwrap_or(0);
    (0..parts)
        .map(|p| {
            log.committed(processor::COMMITTED_OUTPUTS, processor::SILVER_TOPIC, p)
                .unwrap()
                .unwrap_or(0)
        })
        .sum()
}

/// Starts `kills` processor runs made by `run` and kills each with SIGKILL: every
/// fourth a random moment from its start (startup, recovery, the master data), the
/// others a random moment after the run's first commit (once the committed silver
/// in `log` grows); the moments are `delays(kills, seed, lo_ms, hi_ms)`, ×8 for the
/// kills from the start. How many runs were killed rather than finished first.
pub fn kill_processor_runs(
    kills: usize,
    seed: u64,
    (lo_ms, hi_ms): (u64, u64),
    log: &impl Log,
    run: impl Fn() -> std::process::Command,
) -> usize {
    let mut killed = 0;
    for (i, d) in delays(kills, seed, lo_ms, hi_ms).into_iter().enumerate() {
        killed += usize::from(if i % 4 == 3 {
            kill_after(run(), d * 8)
        } else {
            let before = committed_silver(log);
            kill_after_progress(run(), || committed_silver(log) > before, d)
        });
    }
    killed
}

/// A config file of small processor batches, so that a run commits several before
/// a kill; on the log at `log_url` if given. Its path.
pub fn small_batches_config(
    dir: &Path,
    log_url: Option<&str>,
    poll_records: usize,
    commit_records: usize,
) -> PathBuf {
    let path = dir.join("small-batches.toml");
    let log = log_url
        .map(|u| format!("[pipeline]\nlog_url = \"{u}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        &path,
        format!(
            "{log}[processor]\npoll_records = {poll_records}\ncommit_records = {commit_records}\n"
        ),
    )
    .unwrap();
    path
}

/// A cheap deterministic sequence of delays in `[lo_ms, hi_ms)`, so that a failure
/// can be reproduced.
pub fn delays(n: usize, seed: u64, lo_ms: u64, hi_ms: u64) -> Vec<Duration> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Duration::from_millis(lo_ms + (x >> 33) % (hi_ms - lo_ms))
        })
        .collect()
}

pub fn compactor_settings() -> compactor::Settings {
    compactor::Settings::default()
}

/// `compactor --once [--reprocess-all]`, in process, on `<data>/lake`.
pub fn compact(
    log: &EmbeddedLog,
    data: &Path,
    settings: &compactor::Settings,
    reprocess_all: bool,
) -> compactor::RunSummary {
    let lake = compactor::Lake::new(&data.join("lake"));
    compactor::Run::new(log, &lake, settings)
        .run(reprocess_all)
        .unwrap()
}

/// Every file under the lake's `gold/`, by relative path, with its bytes.
pub fn gold_files(lake: &Path) -> BTreeMap<String, Vec<u8>> {
    let gold = lake.join("gold");
    let mut out = BTreeMap::new();
    let mut stack = vec![gold.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(&gold).unwrap().display().to_string();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// The gold marts' files only (not `_accounting.json`, which counts every replay).
pub fn gold_marts(lake: &Path) -> BTreeMap<String, Vec<u8>> {
    gold_files(lake)
        .into_iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .collect()
}

/// A table of the lake read back as rows of JSON values, with its Hive partition
/// columns (dates and timestamps as strings, in the order of the files).
pub fn lake_rows(lake: &Path, table: &str) -> Vec<BTreeMap<String, serde_json::Value>> {
    compactor::table::json_rows(&lake.join(table)).unwrap()
}

/// The Python with DuckDB the lake checks use: `PIPELINE_TEST_PYTHON` (which
/// `.ci/run` sets to the venv it installs), else `python3` if it has DuckDB. `None`
/// outside CI when there is none (the caller says so and skips); in CI, a failure.
pub fn duckdb_python() -> Option<PathBuf> {
    let candidate = std::env::var("PIPELINE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("python3"));
    let ok = std::process::Command::new(&candidate)
        // Not a bare import: from this crate's directory, `tests/duckdb/` would
        // import as an empty namespace package.
        .args(["-c", "import duckdb; duckdb.sql('select 1').fetchall()"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Some(candidate);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have DuckDB for the lake checks: {} cannot import duckdb",
        candidate.display()
    );
    eprintln!(
        "SKIPPED: no Python with DuckDB ({} cannot import duckdb); set PIPELINE_TEST_PYTHON or run bash .ci/run",
        candidate.display()
    );
    None
}

/// Runs `tests/duckdb/check_lake.py` on a lake: DuckDB reads the lake and recomputes
/// the marts from silver with its own SQL.
pub fn duckdb_check(python: &Path, lake: &Path) -> serde_json::Value {
    duckdb_lake(python, lake, &[])
}

/// `tests/duckdb/check_lake.py` on a lake with these arguments after it: the JSON it
/// prints.
pub fn duckdb_lake(python: &Path, lake: &Path, args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("duckdb/check_lake.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(lake)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check_lake.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every lake table except gold, as sorted rows (the files are cut differently),
/// without the append time.
pub fn lake_tables(lake: &Path) -> BTreeMap<String, Vec<String>> {
    lake_tables_without(lake, &[])
}

/// [`lake_tables`] without these columns too.
pub fn lake_tables_without(lake: &Path, columns: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for layer in ["bronze", "silver", "quarantine", "speed"] {
        let Ok(dir) = std::fs::read_dir(lake.join(layer)) else {
            continue;
        };
        for t in dir {
            let name = format!("{layer}/{}", t.unwrap().file_name().to_string_lossy());
            // `ingest_ts` is when the record was appended: the one wall-clock column.
            let mut rows: Vec<String> = lake_rows(lake, &name)
                .into_iter()
                .map(|mut r| {
                    r.remove("ingest_ts");
                    for c in columns {
                        r.remove(*c);
                    }
                    serde_json::to_string(&r).unwrap()
                })
                .collect();
            rows.sort();
            out.insert(name, rows);
        }
    }
    out
}

/// The five queries for every org (and q3, q4 without one), as the store answers.
pub fn answers(data: &Path) -> Vec<String> {
    let store = serving::embedded::EmbeddedStore::open_reader(&data.join("serving")).unwrap();
    let orgs = serving::dashboard::orgs(&store).unwrap();
    assert!(!orgs.is_empty());
    let mut out = vec![
        format!(
            "{:?}",
            serving::query::run(&store, "q3", &serving::query::QueryArgs::default()).unwrap()
        ),
        format!(
            "{:?}",
            serving::query::run(&store, "q4", &serving::query::QueryArgs::default()).unwrap()
        ),
    ];
    for o in orgs {
        let args = serving::query::QueryArgs {
            org: Some(o.org_id.clone()),
            ..Default::default()
        };
        for q in ["q1", "q2", "q4", "q5"] {
            out.push(format!(
                "{q} {}: {:?}",
                o.org_id,
                serving::query::run(&store, q, &args).unwrap()
            ));
        }
    }
    out
}

/// Runs a command that must succeed; its stdout.
pub fn run_ok(mut c: std::process::Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The end offset of every partition of every topic, from `producer topics`.
pub fn end_offsets(data: &Path) -> BTreeMap<(String, u64), u64> {
    let mut c = pipeline_command("producer", data);
    c.args(["topics", "--format", "json"]);
    let out = c.output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                (
                    v["topic"].as_str().unwrap().to_owned(),
                    v["partition"].as_u64().unwrap(),
                ),
                v["end_offset"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A clean batch run: replay in file order, process until idle, compact, publish.
pub fn batch_run(data: &Path, landing: &Path) {
    let mut replay = pipeline_command("producer", data);
    replay.arg("replay").arg(landing).args(["--order", "file"]);
    run_ok(replay);
    catch_up(data);
}

/// The processor until idle, one compaction, one publish.
pub fn catch_up(data: &Path) {
    let mut process = pipeline_command("processor", data);
    process.args(["--until-idle", "--metrics-addr", "127.0.0.1:0"]);
    run_ok(process);
    let mut compact = pipeline_command("compactor", data);
    compact.arg("--once");
    run_ok(compact);
    let mut publish = pipeline_command("serving", data);
    publish.arg("publish");
    run_ok(publish);
}

/// A pipeline's outputs against a clean run's over the same input: every topic
/// record for record (`speed.daily_usage`, whose upserts fall by commit, as the table
/// of its last values), every lake table row for row (less the append time), gold
/// byte for byte, the accounting (equal, and balanced for every source), and the five
/// queries for every org.
pub fn assert_same_outputs(data: &Path, clean: &Path) {
    assert_same_outputs_without(data, clean, &[]);
}

/// [`assert_same_outputs`], the lake tables compared without these columns.
pub fn assert_same_outputs_without(data: &Path, clean: &Path, columns: &[&str]) {
    let clean_offsets = end_offsets(clean);
    assert_eq!(
        end_offsets(data).keys().collect::<Vec<_>>(),
        clean_offsets.keys().collect::<Vec<_>>()
    );
    let (live_log, clean_log) = (open_pipeline_log(data), open_pipeline_log(clean));
    let topics: std::collections::BTreeSet<String> =
        clean_offsets.keys().map(|(t, _)| t.clone()).collect();
    for t in &topics {
        if t == schemas::topics::DAILY_TOPIC {
            let key = ["org_id", "usage_date", "service"];
            assert!(
                table(&live_log, t, &key) == table(&clean_log, t, &key),
                "{t} differs"
            );
        } else {
            assert!(
                flat(&live_log, t) == flat(&clean_log, t),
                "topic {t} differs"
            );
        }
    }
    // The lake, the marts, the accounting, the queries.
    let (live_lake, clean_lake) = (data.join("lake"), clean.join("lake"));
    let (live_tables, clean_tables) = (
        lake_tables_without(&live_lake, columns),
        lake_tables_without(&clean_lake, columns),
    );
    assert_eq!(
        live_tables.keys().collect::<Vec<_>>(),
        clean_tables.keys().collect::<Vec<_>>()
    );
    for (name, rows) in &clean_tables {
        let live = &live_tables[name];
        let only_live: Vec<&String> = live.iter().filter(|r| !rows.contains(r)).take(2).collect();
        let only_clean: Vec<&String> = rows.iter().filter(|r| !live.contains(r)).take(2).collect();
        assert!(
            live == rows,
            "lake table {name}: {} rows live, {} clean; only live: {only_live:?}; only clean: {only_clean:?}",
            live.len(),
            rows.len()
        );
    }
    assert!(
        gold_marts(&live_lake) == gold_marts(&clean_lake),
        "gold differs"
    );
    balanced_accounting(&live_lake);
    assert_eq!(
        gold_files(&live_lake)["_accounting.json"],
        gold_files(&clean_lake)["_accounting.json"]
    );
    assert!(answers(data) == answers(clean), "the query answers differ");
}

/// The lake's `gold/_accounting.json`, checked: for every source, read = silver +
/// quarantine.
pub fn balanced_accounting(lake: &Path) -> serde_json::Value {
    let accounting: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lake.join("gold/_accounting.json")).unwrap())
            .unwrap();
    for (source, a) in accounting.as_object().unwrap() {
        let quarantined: u64 = a["quarantine"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(
            a["read"].as_u64().unwrap(),
            a["silver"].as_u64().unwrap() + quarantined,
            "{source}: read != silver + quarantine: {a}"
        );
    }
    accounting
}
