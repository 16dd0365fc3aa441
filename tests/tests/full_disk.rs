//! A full disk while the log, the processor's state, the lake and the serving store
//! are written (SPEC section 9): the data directory is a small tmpfs (the state
//! directory another); each step runs out of space, must fail with a one-line error (no panic), and, once the tmpfs is
//! grown again, must resume and finish. The end result must equal a clean run.
//!
//! Needs root (to mount a tmpfs); says SKIPPED otherwise.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::*;

/// A tmpfs mounted on a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        ok.then(|| Tmpfs(dir.to_owned()))
    }

    fn resize(&self, bytes: u64) {
        let mut c = Command::new("mount");
        c.args(["-o", &format!("remount,size={bytes}")])
            .arg(&self.0);
        run_ok(c);
    }

    /// Bytes in use.
    fn used(&self) -> u64 {
        let mut c = Command::new("df");
        c.args(["-B1", "--output=used"]).arg(&self.0);
        run_ok(c).lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

const ROOMY: u64 = 1 << 30;

/// Runs a step with `spare` bytes left on `disk`: it must fail with a one-line
/// error about space, and no panic.
fn fails(disk: &Tmpfs, data: &Path, name: &str, args: &[&str], spare: u64) {
    // (A tmpfs of size 0 would have no limit at all.)
    assert!(spare > 0);
    disk.resize(disk.used() + spare);
    let mut c = pipeline_command(name, data);
    c.args(args);
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{name} {args:?} had room after all: {stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "{name} {args:?} panicked: {stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error") && last.to_lowercase().contains("space"),
        "{name} {args:?}: the last line should say the disk is full: {stderr}"
    );
    eprintln!("{name} {args:?} with {spare} bytes spare: {last}");
}

/// With room again, the same step finishes.
fn resumes(disk: &Tmpfs, data: &Path, name: &str, args: &[&str]) {
    disk.resize(ROOMY);
    let mut again = pipeline_command(name, data);
    again.args(args);
    run_ok(again);
}

fn fails_then_resumes(disk: &Tmpfs, data: &Path, name: &str, args: &[&str], spare: u64) {
    fails(disk, data, name, args, spare);
    resumes(disk, data, name, args);
}

#[test]
fn a_full_disk_fails_clearly_and_resumes_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(disk) = Tmpfs::mount(&data, 2 << 20) else {
        eprintln!("SKIPPED: the full-disk test needs root to mount a tmpfs");
        return;
    };
    let landing = landing().to_string_lossy().into_owned();
    // The log: far from enough for the sample.
    fails_then_resumes(
        &disk,
        &data,
        "producer",
        &["replay", &landing, "--order", "file"],
        512 << 10,
    );
    // The processor: its RocksDB state full (a tmpfs of its own), then its outputs
    // in the log; then with room.
    let process = ["--until-idle", "--metrics-addr", "127.0.0.1:0"];
    let state = Tmpfs::mount(&data.join("state"), 1 << 20).unwrap();
    fails(&state, &data, "processor", &process, 512 << 10);
    state.resize(ROOMY);
    fails(&disk, &data, "processor", &process, 1 << 20);
    resumes(&disk, &data, "processor", &process);
    // The lake and the serving store: each with a little room, not enough.
    fails_then_resumes(&disk, &data, "compactor", &["--once"], 256 << 10);
    fails_then_resumes(&disk, &data, "serving", &["publish"], 64 << 10);

    let clean = dir.path().join("clean/data");
    std::fs::create_dir_all(&clean).unwrap();
    batch_run(&clean, &e2e::landing());
    assert_same_outputs(&data, &clean);
}
