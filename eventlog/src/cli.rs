//! What every binary of the pipeline does the same way around its work: logs with
//! `tracing` to stderr (level from `RUST_LOG`, `info` by default; human text, without
//! colour codes unless stderr is a terminal, or one JSON object per line with
//! `PIPELINE_LOG_FORMAT=json`), one line `error: ...` with a non-zero exit on failure,
//! and a clean stop on SIGTERM or SIGINT.
//!
//! Stopping (SPEC section 10): the first SIGTERM or SIGINT sets [`stop_flag`]. Work
//! that checks it (the processor, a replay, `compactor --every` between runs, the
//! dashboard server) finishes or abandons its unit of work by its exactly-once protocol
//! and returns, and the process exits 0. Work still running [`STOP_GRACE`] after the
//! signal (a compaction or a publish in the middle of its files) is abandoned: the
//! process exits 0 there and then, which leaves what a crash at that moment would, and
//! every binary's restart is safe after a crash. A second signal exits at once.

use std::fmt::Display;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

/// How long work may take to stop after the first signal before it is abandoned.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Set once SIGTERM or SIGINT arrived: long work checks it between its units.
pub fn stop_flag() -> &'static AtomicBool {
    &STOP
}

/// Whether a stop was asked for.
pub fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Sleeps for `d`, or less if a stop is asked for meanwhile; whether it was.
pub fn sleep_unless_stopped(d: Duration) -> bool {
    let until = Instant::now() + d;
    while !stopping() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    true
}

/// A progress bar on long work, on stderr only when it is a terminal (hidden
/// otherwise): a spinner with `message`, the count of records it is given and their
/// rate, and the time so far.
pub fn progress(message: impl Into<std::borrow::Cow<'static, str>>) -> indicatif::ProgressBar {
    bar_with(
        message.into(),
        "{spinner} {msg}: {human_pos} records ({per_sec}), {elapsed}",
    )
}

/// [`progress`] for work without a count: the message and the time so far.
pub fn spinner(message: impl Into<std::borrow::Cow<'static, str>>) -> indicatif::ProgressBar {
    bar_with(message.into(), "{spinner} {msg}, {elapsed}")
}

fn bar_with(message: std::borrow::Cow<'static, str>, template: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new_spinner().with_message(message);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// How log lines are written (`PIPELINE_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human text; coloured only when stderr is a terminal.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the event's fields
    /// (its message as `message`) and the fields of the spans it is in.
    Json,
}

impl LogFormat {
    /// From `PIPELINE_LOG_FORMAT` (`text`, the default, or `json`).
    pub fn from_env(value: Option<&str>) -> Result<LogFormat, String> {
        match value.map(str::trim) {
            None | Some("" | "text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(format!(
                "PIPELINE_LOG_FORMAT={other:?}: expected text or json"
            )),
        }
    }
}

/// Sets up logging, runs `work`, and turns its outcome into the exit code.
pub fn main<E: Display>(work: impl FnOnce() -> Result<(), E>) -> ExitCode {
    use std::io::IsTerminal;
    let format = match LogFormat::from_env(std::env::var("PIPELINE_LOG_FORMAT").ok().as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .init(),
    }
    if let Err(e) = handle_signals() {
        eprintln!("error: cannot handle SIGTERM and SIGINT: {e}");
        return ExitCode::FAILURE;
    }
    match work() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` on anyhow's error prints the chain on one line.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// The first SIGTERM or SIGINT sets the stop flag, a second one exits at once; a
/// watchdog exits once [`STOP_GRACE`] has passed after the first.
fn handle_signals() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for signal in [SIGTERM, SIGINT] {
        // The shutdown goes first: it sees the flag only from the second signal on.
        signal_hook::flag::register_conditional_shutdown(signal, 0, stop_flag())?;
        signal_hook::flag::register(signal, stop_flag())?;
    }
    std::thread::Builder::new()
        .name("stop-watchdog".into())
        .spawn(|| {
            while !stopping() {
                std::thread::sleep(Duration::from_millis(50));
            }
            tracing::info!("stop requested: finishing the current unit of work");
            std::thread::sleep(STOP_GRACE);
            tracing::warn!(
                "stopped after {STOP_GRACE:?}: the work in progress is abandoned, and the next run does it again"
            );
            std::process::exit(0);
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_formats() {
        assert_eq!(LogFormat::from_env(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::from_env(Some("text")), Ok(LogFormat::Text));
        assert_eq!(LogFormat::from_env(Some("json")), Ok(LogFormat::Json));
        assert!(
            LogFormat::from_env(Some("yaml"))
                .unwrap_err()
                .contains("text or json")
        );
    }
}
