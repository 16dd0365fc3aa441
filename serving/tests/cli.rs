//! The `serving` binary's errors: one line, non-zero exit. (These tests also make
//! `cargo test` build the binary, which the end-to-end tests run.)
#![allow(clippy::unwrap_used)]

#[path = "../../tests/support/cli.rs"]
mod support;

use support::one_line_error;

fn serving(args: &[&str]) -> std::process::Output {
    support::run(env!("CARGO_BIN_EXE_serving"), args, |_| {})
}

#[test]
fn publishing_before_any_compaction_says_what_to_run() {
    let err = one_line_error(&serving(&["publish"]));
    assert!(err.contains("run `compactor --once` first"), "{err}");
}

#[test]
fn an_unknown_query_or_format_is_a_clear_error() {
    let err = one_line_error(&serving(&["query", "q9"]));
    assert!(err.contains("q9"), "{err}");
    let err = one_line_error(&serving(&["query", "q1"]));
    assert!(err.contains("--org"), "{err}");
    let err = one_line_error(&serving(&["query", "q3", "--format", "xml"]));
    assert!(err.contains("xml"), "{err}");
}

#[test]
fn a_query_on_an_empty_store_answers_nothing() {
    let out = serving(&["query", "q3", "--format", "csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.lines().count() <= 1, "{csv}");
}
