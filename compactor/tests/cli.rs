//! The `compactor` binary's errors: one line, non-zero exit. (These tests also make
//! `cargo test` build the binary, which the end-to-end tests run.)
#![allow(clippy::unwrap_used)]

#[path = "../../tests/support/cli.rs"]
mod support;

use support::one_line_error;

fn compactor(args: &[&str], setup: impl FnOnce(&std::path::Path)) -> std::process::Output {
    support::run(env!("CARGO_BIN_EXE_compactor"), args, setup)
}

#[test]
fn a_bad_interval_is_a_clear_error() {
    let out = compactor(&["--every", "often"], |_| {});
    let err = one_line_error(&out);
    assert!(err.contains("--every \"often\""), "{err}");
}

#[test]
fn an_unusable_lake_is_a_clear_error() {
    // A file where the lake directory should be.
    let out = compactor(&["--once"], |data| {
        std::fs::write(data.join("lake"), b"not a directory").unwrap();
    });
    let err = one_line_error(&out);
    assert!(err.starts_with("error: "), "{err}");
}

#[test]
fn once_and_every_do_not_go_together() {
    let out = compactor(&["--once", "--every", "5s"], |_| {});
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--every"), "{err}");
}
