//! On a terminal, the long commands show a progress bar (`processor --until-idle`,
//! `compactor`, `serving publish`, as `producer replay` does); off one (a pipe, a
//! file, a container's log), they print none, and no colour codes.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use e2e::*;

/// `command` run on a pseudo-terminal (`script`), everything it wrote to it.
fn on_a_terminal(data: &Path, bin: &str, args: &str) -> String {
    let line = format!("{} {args}", e2e::bin(bin).display());
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("PIPELINE_DATA_DIR", data)
        .env("PIPELINE_LOG_FSYNC", "never")
        .env("RUST_LOG", "warn")
        .current_dir(data.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn long_commands_show_progress_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let (tty, piped) = (dir.path().join("tty/data"), dir.path().join("piped/data"));
    for data in [&tty, &piped] {
        std::fs::create_dir_all(data).unwrap();
        let mut replay = pipeline_command("producer", data);
        replay.arg("replay").arg(landing());
        run_ok(replay);
    }
    let shown = on_a_terminal(&tty, "processor", "--until-idle --metrics-addr 127.0.0.1:0");
    assert!(
        shown.contains("processing") && shown.contains("records"),
        "{shown:?}"
    );
    let shown = on_a_terminal(&tty, "compactor", "--once");
    assert!(shown.contains("compacting"), "{shown:?}");
    let shown = on_a_terminal(&tty, "serving", "publish");
    assert!(shown.contains("publishing"), "{shown:?}");

    for (bin, args) in [
        (
            "processor",
            &["--until-idle", "--metrics-addr", "127.0.0.1:0"][..],
        ),
        ("compactor", &["--once"][..]),
        ("serving", &["publish"][..]),
    ] {
        let out = pipeline_command(bin, &piped)
            .env("RUST_LOG", "info")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        for bar in ["processing,", "compacting,", "publishing,"] {
            assert!(
                !err.contains(bar),
                "{bin}: a progress bar off a terminal: {err}"
            );
        }
        assert!(!err.contains('\x1b'), "{bin}: colour codes off a terminal");
    }
}
