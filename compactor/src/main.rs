use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use compactor::{Lake, Run, Settings};
use eventlog::PipelineConfig;

/// Topics -> the Parquet lake (bronze, silver, quarantine, speed) and the gold marts.
#[derive(Parser)]
#[command(name = "compactor", version)]
struct Cli {
    /// The pipeline config file (default config/pipeline.toml, if present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Compact once and exit.
    #[arg(long, conflicts_with = "every")]
    once: bool,
    /// Compact, then again every interval (e.g. 30s, 5m); default from the config.
    #[arg(long)]
    every: Option<String>,
    /// Rebuild bronze, silver, quarantine and gold from offset 0 of the raw topics
    /// into a new generation, switched to atomically.
    #[arg(long)]
    reprocess_all: bool,
}

fn main() -> ExitCode {
    eventlog::cli::main(|| run(Cli::parse()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = PipelineConfig::load(cli.config.as_deref())?;
    let settings = Settings::from_config(&config);
    let every_text = cli.every.as_deref().unwrap_or(&config.compactor.every);
    let every = eventlog::parse_duration(every_text).ok_or_else(|| {
        anyhow::anyhow!("--every {every_text:?}: expected a number and ms, s, m, h or d, e.g. 30s")
    })?;
    let log = config.open_log()?;
    let finite = eventlog::check_retention(&log, &schemas::source::Source::raw_topics());
    if cli.reprocess_all
        && let Some((topic, gap)) = finite.first()
    {
        anyhow::bail!(
            "--reprocess-all: topic {topic} may have deleted records ({gap}), so the \
             lake would be rebuilt from part of the history; keep its records forever \
             first (retention.ms=-1, retention.bytes=-1, cleanup.policy=delete)"
        );
    }
    let lake = Lake::new(&config.lake_dir());
    // Fail fast if another compactor holds the lake (each run takes the lock again).
    drop(lake.lock()?);
    let run = Run::new(&log, &lake, &settings);
    let mut reprocess = cli.reprocess_all;
    loop {
        let bar = eventlog::cli::spinner(if reprocess {
            "reprocessing the whole log"
        } else {
            "compacting"
        });
        let ran = run.run(reprocess);
        bar.finish_and_clear();
        let s = match ran {
            Ok(s) => s,
            Err(e) if cli.once => return Err(e),
            // A long-running compactor outlives a bad moment (the processor rebuilding
            // its outputs, a full disk): the lake keeps its last generation, and the
            // next interval tries again.
            Err(e) => {
                tracing::error!("compaction failed, retrying in {every:?}: {e:#}");
                if eventlog::cli::sleep_unless_stopped(every) {
                    return Ok(());
                }
                continue;
            }
        };
        reprocess = false;
        match s.generation {
            Some(g) => tracing::info!(
                generation = g,
                events = s.events_in,
                files = s.files_written,
                merged = s.files_merged,
                spike_rewrites = s.spike_rewrites,
                compact_seconds = s.compact_seconds,
                gold_seconds = s.gold_seconds,
                lake = %lake.link().display(),
                "lake generation written"
            ),
            None => tracing::info!("lake up to date"),
        }
        if cli.once || eventlog::cli::sleep_unless_stopped(every) {
            return Ok(());
        }
    }
}

/// mimalloc: the per-record work allocates many small strings across threads, where
/// it is measurably faster than glibc's allocator (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
