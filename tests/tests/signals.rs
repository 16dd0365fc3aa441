//! SIGTERM and SIGINT (SPEC section 10): every binary, stopped while it works, exits 0
//! within 5 s, and the pipeline, finished after the stops, ends as a clean batch run
//! over the same landing directory: every topic, every lake table, gold, the
//! accounting and the five queries for every org.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::*;
use eventlog::Log;

/// The longest a stop may take (SPEC section 10: "within a few seconds").
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// Starts `command` with its stderr in `log`.
fn start(mut command: Command, log: &Path) -> Child {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::from(File::create(log).unwrap()))
        .spawn()
        .unwrap()
}

/// Waits until `ready()`, failing the test if `child` exits first or 120 s pass.
fn wait_until(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{what}: it exited before it was working"
        );
        assert!(Instant::now() < deadline, "{what}: not working after 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `signal` to `child` and waits for it to exit: it must exit 0 within
/// [`STOP_WITHIN`], and it must still have been running when the signal was sent.
fn stop(mut child: Child, signal: &str, what: &str, log: &Path) {
    assert!(
        child.try_wait().unwrap().is_none(),
        "{what}: finished before the signal"
    );
    let sent = Instant::now();
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if sent.elapsed() > STOP_WITHIN {
            let _ = child.kill();
            panic!("{what}: still running {STOP_WITHIN:?} after SIG{signal}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        status.success(),
        "{what}: SIG{signal} gave {status}: {stderr}"
    );
    eprintln!(
        "{what}: SIG{signal}, exit 0 after {} ms",
        sent.elapsed().as_millis()
    );
}

fn raw_events(data: &Path) -> u64 {
    let log = open_pipeline_log(data);
    (0..4)
        .map(|p| log.end_offset("raw.usage_events", p).unwrap_or(0))
        .sum()
}

#[test]
fn every_binary_stops_cleanly_while_it_works_and_a_restart_ends_as_a_clean_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let clean = root.join("clean/data");
    std::fs::create_dir_all(&clean).unwrap();
    batch_run(&clean, &landing());

    let data = root.join("live/data");
    std::fs::create_dir_all(&data).unwrap();
    let log = |name: &str| root.join(format!("{name}.log"));

    // producer replay, paced so that it is still replaying when the signal comes.
    let mut replay = pipeline_command("producer", &data);
    replay
        .env("RUST_LOG", "info")
        .arg("replay")
        .arg(landing())
        .args(["--order", "file", "--speedup", "200000"]);
    let mut child = start(replay, &log("replay"));
    wait_until(&mut child, "producer replay", || raw_events(&data) > 0);
    stop(child, "TERM", "producer replay", &log("replay"));
    let stopped_at = raw_events(&data);
    assert!(
        std::fs::read_to_string(log("replay"))
            .unwrap()
            .contains("replay stopped")
    );
    // The second replay resumes the interrupted one (in its order) to the end.
    let mut resume = pipeline_command("producer", &data);
    resume.arg("replay").arg(landing());
    run_ok(resume);
    assert!(raw_events(&data) > stopped_at);

    // The processor, following, stopped once it has committed some silver.
    let mut processor = pipeline_command("processor", &data);
    processor.args(["--metrics-addr", "127.0.0.1:0"]);
    let mut child = start(processor, &log("processor"));
    wait_until(&mut child, "processor", || {
        committed_silver(&open_pipeline_log(&data)) > 0
    });
    stop(child, "TERM", "processor", &log("processor"));
    // SIGINT too, on the one that follows forever.
    let mut processor = pipeline_command("processor", &data);
    processor.args(["--metrics-addr", "127.0.0.1:0"]);
    let mut child = start(processor, &log("processor2"));
    std::thread::sleep(Duration::from_millis(300));
    wait_until(&mut child, "processor", || true);
    stop(child, "INT", "processor (SIGINT)", &log("processor2"));
    let mut catch_up = pipeline_command("processor", &data);
    catch_up.args(["--until-idle", "--metrics-addr", "127.0.0.1:0"]);
    run_ok(catch_up);

    // The compactor: in the middle of a compaction, and waiting between two.
    let mut compactor = pipeline_command("compactor", &data);
    compactor.arg("--once");
    let mut child = start(compactor, &log("compactor"));
    std::thread::sleep(Duration::from_millis(200));
    wait_until(&mut child, "compactor --once", || true);
    stop(
        child,
        "TERM",
        "compactor --once, compacting",
        &log("compactor"),
    );
    let mut compactor = pipeline_command("compactor", &data);
    compactor.args(["--every", "1h"]);
    let mut child = start(compactor, &log("compactor2"));
    wait_until(&mut child, "compactor --every", || {
        data.join("lake/gold/_accounting.json").exists()
    });
    stop(
        child,
        "TERM",
        "compactor --every, waiting",
        &log("compactor2"),
    );

    // serving: a publish in progress, and the dashboard server.
    let mut publish = pipeline_command("serving", &data);
    publish.arg("publish");
    let mut child = start(publish, &log("publish"));
    std::thread::sleep(Duration::from_millis(100));
    wait_until(&mut child, "serving publish", || true);
    stop(child, "TERM", "serving publish", &log("publish"));
    let mut publish = pipeline_command("serving", &data);
    publish.arg("publish");
    run_ok(publish);
    let mut serve = pipeline_command("serving", &data);
    serve.args(["serve", "--addr", "127.0.0.1:0"]);
    let addr_file = root.join("serve.out");
    serve.stdout(Stdio::from(File::create(&addr_file).unwrap()));
    let mut child = serve
        .stderr(Stdio::from(File::create(log("serve")).unwrap()))
        .spawn()
        .unwrap();
    wait_until(&mut child, "serving serve", || {
        std::fs::read_to_string(&addr_file).is_ok_and(|s| s.contains("dashboard: http://"))
    });
    stop(child, "TERM", "serving serve", &log("serve"));

    // Finished after the stops, it is the clean run.
    let mut compact = pipeline_command("compactor", &data);
    compact.arg("--once");
    run_ok(compact);
    let mut publish = pipeline_command("serving", &data);
    publish.arg("publish");
    run_ok(publish);
    assert_same_outputs(&data, &clean);
}
