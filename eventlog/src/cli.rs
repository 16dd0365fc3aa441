//! What every binary of the pipeline does the same way around its work: logs with
//! `tracing` to stderr (level from `RUST_LOG`, `info` by default), and one line
//! `error: ...` with a non-zero exit on failure.

use std::fmt::Display;
use std::process::ExitCode;

/// Sets up logging, runs `work`, and turns its outcome into the exit code.
pub fn main<E: Display>(work: impl FnOnce() -> Result<(), E>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match work() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` on anyhow's error prints the chain on one line.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
