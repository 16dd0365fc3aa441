//! Shared by the binary packages' `tests/cli.rs` (included with `#[path]`): run a
//! binary on a fresh data directory and read the one-line error it fails with.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `exe` with `args`, `PIPELINE_DATA_DIR` a fresh directory that `setup`
/// prepares first, logs off, from the directory's parent.
pub fn run(exe: &str, args: &[&str], setup: impl FnOnce(&Path)) -> Output {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("the data directory");
    setup(&data);
    Command::new(exe)
        .env("PIPELINE_DATA_DIR", &data)
        .env("RUST_LOG", "off")
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("the binary runs")
}

/// What a failed run printed, after checking that it failed and printed one line.
pub fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "it succeeded");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    err
}
