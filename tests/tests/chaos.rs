//! The whole pipeline live under SIGKILL (SPEC section 9): `producer replay --follow`
//! with landing files dropped in while it runs, `processor` following, `compactor
//! --every 1s`, and `serving publish` in a loop, each killed with SIGKILL at random
//! moments and restarted. When the files are all in and the kills are done, the
//! pipeline is caught up (the replay finished, the processor idle, one more
//! compaction and publish) and compared with a clean batch run over the same files:
//! the raw and derived topics, every lake table, the gold marts byte for byte, the
//! accounting, and the five queries for every org.
//!
//! `CHAOS_KILLS` sets the number of kills (16 by default; the long form is 60 or
//! more), `CHAOS_SEED` the random sequence (printed, so a failure can be repeated).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use e2e::*;

/// A small deterministic random sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// One of the pipeline's processes, restarted whenever it is not running.
struct Component {
    name: &'static str,
    args: Vec<String>,
    /// Runs to completion and is started again (`serving publish`); the others run
    /// until killed.
    repeats: bool,
    child: Option<Child>,
    /// Exits nobody asked for: (exit status, the tail of its log).
    unexpected: Vec<String>,
    completed: usize,
    log: PathBuf,
}

impl Component {
    fn start(&mut self, data: &Path) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let bin = match self.name {
            "publish" => "serving",
            other => other,
        };
        let mut c = pipeline_command(bin, data);
        c.args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        self.child = Some(c.spawn().unwrap());
    }

    /// Restarts what exited; an exit of a long-running process, or a failed
    /// publish, is noted.
    fn supervise(&mut self, data: &Path) {
        if let Some(child) = &mut self.child
            && let Some(status) = child.try_wait().unwrap()
        {
            self.child = None;
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let last = log.lines().last().unwrap_or_default();
            if status.success() && self.repeats {
                self.completed += 1;
            } else if self.repeats && last.contains("no gold marts") {
                // A publish before the first compaction: nothing to publish yet.
            } else {
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                self.unexpected
                    .push(format!("{status}: {}", tail.join(" / ")));
            }
        }
        if self.child.is_none() {
            self.start(data);
        }
    }

    fn kill(&mut self) -> bool {
        match self.child.take() {
            Some(mut c) => {
                let _ = c.kill(); // SIGKILL
                let _ = c.wait();
                true
            }
            None => false,
        }
    }
}

#[test]
fn the_whole_pipeline_under_sigkill_equals_a_clean_batch_run() {
    let kills: usize = std::env::var("CHAOS_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261127);
    eprintln!("chaos: {kills} kills, seed {seed} (CHAOS_KILLS, CHAOS_SEED)");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    // The clean run, over the sample as it is.
    let clean = root.join("clean/data");
    std::fs::create_dir_all(&clean).unwrap();
    batch_run(&clean, &landing());
    let clean_offsets = end_offsets(&clean);

    // The live run's landing directory: the CSV files now, the event files later.
    let live_landing = root.join("landing");
    std::fs::create_dir_all(live_landing.join("usage_events_stream")).unwrap();
    let mut event_files = Vec::new();
    for entry in std::fs::read_dir(landing()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, live_landing.join(p.file_name().unwrap())).unwrap();
        }
    }
    for entry in std::fs::read_dir(landing().join("usage_events_stream")).unwrap() {
        event_files.push(entry.unwrap().path());
    }
    event_files.sort();

    let data = root.join("live/data");
    std::fs::create_dir_all(&data).unwrap();
    let logs = root.join("live/logs");
    std::fs::create_dir_all(&logs).unwrap();
    let landing_arg = live_landing.to_string_lossy().into_owned();
    let component = |name: &'static str, args: &[&str], repeats: bool| Component {
        name,
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        repeats,
        child: None,
        unexpected: Vec::new(),
        completed: 0,
        log: logs.join(format!("{name}.log")),
    };
    let mut parts = vec![
        component(
            "producer",
            &["replay", &landing_arg, "--order", "file", "--follow"],
            false,
        ),
        component("processor", &["--metrics-addr", "127.0.0.1:0"], false),
        component("compactor", &["--every", "1s"], false),
        component("publish", &["publish"], true),
    ];

    // The master data first, all of it, before the processor starts: a processor
    // that met an event before its org's row would (rightly) quarantine it, which a
    // batch run never does.
    parts[0].start(&data);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let live = end_offsets(&data);
        let masters_done = clean_offsets
            .iter()
            .filter(|((t, _), _)| t.starts_with("raw.") && t != "raw.usage_events")
            .all(|(k, v)| live.get(k) == Some(v));
        if masters_done {
            break;
        }
        assert!(Instant::now() < deadline, "the master data never arrived");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Files dropped in name order, each under a temporary name and renamed into
    // place, paced to last about as long as the kills.
    let pace = Duration::from_millis((kills as u64 * 850 / event_files.len() as u64).max(20));
    let dropper = {
        let target = live_landing.join("usage_events_stream");
        std::thread::spawn(move || {
            for f in event_files {
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                let tmp = target.join(format!(".{name}.tmp"));
                std::fs::copy(&f, &tmp).unwrap();
                File::open(&tmp).unwrap().sync_all().unwrap();
                std::fs::rename(&tmp, target.join(&name)).unwrap();
                std::thread::sleep(pace);
            }
        })
    };

    let mut rng = Rng(seed);
    let mut killed: BTreeMap<&str, usize> = BTreeMap::new();
    let waits = delays(kills, seed, 150, 1550);
    for wait in waits {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            for p in &mut parts {
                p.supervise(&data);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let p = &mut parts[rng.next(4) as usize];
        if p.kill() {
            *killed.entry(p.name).or_default() += 1;
        }
        p.start(&data);
    }
    dropper.join().unwrap();
    // Let everything run a little with every file in, then stop it all.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        for p in &mut parts {
            p.supervise(&data);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    for p in &mut parts {
        p.kill();
    }
    let total: usize = killed.values().sum();
    eprintln!(
        "chaos: {total} kills {killed:?}; publishes completed: {}",
        parts[3].completed
    );
    assert!(total >= kills * 3 / 4, "too few kills landed: {killed:?}");
    for p in &parts {
        assert!(
            p.unexpected.is_empty(),
            "{} exited on its own: {:?}",
            p.name,
            p.unexpected
        );
    }
    // A compactor killed at any moment leaves its current generation whole: the
    // next one never finds it damaged (which would rebuild the lake from the log).
    let compactor_log = std::fs::read_to_string(&parts[2].log).unwrap_or_default();
    assert!(
        !compactor_log.contains("missing or damaged"),
        "a killed compactor left a damaged generation: {}",
        compactor_log
            .lines()
            .filter(|l| l.contains("damaged"))
            .collect::<Vec<_>>()
            .join(" / ")
    );

    // Caught up: the interrupted replay finishes, then the batch steps.
    let mut replay = pipeline_command("producer", &data);
    replay
        .arg("replay")
        .arg(&live_landing)
        .args(["--order", "file"]);
    run_ok(replay);
    catch_up(&data);

    assert_same_outputs(&data, &clean);
}
