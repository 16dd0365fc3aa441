use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use eventlog::PipelineConfig;
use processor::metrics::Metrics;
use processor::{FromOffset, ProcessorConfig};

/// Raw topics -> silver.usage_events, quarantine and the speed views.
#[derive(Parser)]
#[command(name = "processor", version)]
struct Cli {
    /// The pipeline config file (default config/pipeline.toml, if present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// earliest | latest | committed | <offset>
    #[arg(long, default_value = "committed")]
    from_offset: String,
    /// Stop once caught up (flushing the open windows) instead of following.
    #[arg(long)]
    until_idle: bool,
    /// Prometheus text endpoint, e.g. 127.0.0.1:9101 (default from the config).
    #[arg(long)]
    metrics_addr: Option<String>,
    /// I/N: this is processor I (from 0) of N sharing the event partitions (event
    /// partition p belongs to instance p % N). Needs the Kafka backend when N > 1.
    #[arg(long, env = "PIPELINE_PROCESSOR_INSTANCE", default_value = "0/1", value_parser = processor::parse_instance)]
    instance: (u32, u32),
    /// Processing threads of this process, each owning a share of its event
    /// partitions (default from the config: `[processor] threads`).
    #[arg(long, env = "PIPELINE_PROCESSOR_THREADS")]
    threads: Option<u32>,
}

fn main() -> ExitCode {
    eventlog::cli::main(|| run(Cli::parse()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = PipelineConfig::load(cli.config.as_deref())?;
    let from: FromOffset = cli.from_offset.parse()?;
    let pc = &config.processor;
    let cfg = ProcessorConfig {
        event_partitions: config.log.event_partitions,
        lateness_micros: pc.lateness_seconds as i64 * 1_000_000,
        dedup_horizon_micros: pc.dedup_horizon_days as i64 * schemas::time::MICROS_PER_DAY,
        poll_records: pc.poll_records.max(1),
        commit_records: pc.commit_records.max(1),
        commit_interval: Duration::from_millis(pc.commit_interval_ms),
        commit_interval_behind: Duration::from_millis(pc.commit_interval_behind_ms),
        from,
        until_idle: cli.until_idle,
        instance: cli.instance.0,
        instances: cli.instance.1,
    };
    let metrics = Metrics::default();
    let addr = cli.metrics_addr.unwrap_or_else(|| pc.metrics_addr.clone());
    let bound = metrics
        .serve(&addr)
        .map_err(|e| anyhow::anyhow!("metrics endpoint {addr}: {e}"))?;
    tracing::info!(%bound, "metrics at http://{bound}/metrics");
    let log = config.open_processor_log()?;
    eventlog::check_retention(&log, &schemas::source::Source::raw_topics());
    let (instance, instances) = cli.instance;
    if instances > 1 && matches!(log, eventlog::AnyLog::Embedded(_)) {
        anyhow::bail!(
            "--instance {instance}/{instances}: several processors need the Kafka backend (PIPELINE_LOG_URL=kafka://...); the embedded log has one writer"
        );
    }
    let threads = cli.threads.unwrap_or(pc.threads);
    let state_root = config.data_dir().join("state");
    let started = std::time::Instant::now();
    let stop = eventlog::cli::stop_flag();
    let report = if cli.until_idle {
        // A progress bar on a terminal: the records read and what is left to read.
        let bar = eventlog::cli::progress("processing");
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let snap = metrics.snapshot();
                    bar.set_position(snap.records_in.values().sum());
                    let lag: u64 = snap.lag_records.values().sum();
                    bar.set_message(format!("processing, {lag} behind"));
                    std::thread::sleep(Duration::from_millis(200));
                }
                bar.finish_and_clear();
            });
            let report = processor::run_threads(&log, &state_root, &cfg, threads, &metrics, stop);
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            report
        })?
    } else {
        processor::run_threads(&log, &state_root, &cfg, threads, &metrics, stop)?
    };
    tracing::info!(
        records = report.records_in,
        commits = report.commits,
        seconds = started.elapsed().as_secs_f64(),
        "{}",
        if eventlog::cli::stopping() {
            "stopped, with what was read committed"
        } else {
            "caught up"
        }
    );
    Ok(())
}

/// mimalloc: the per-record work allocates many small strings across threads, where
/// it is measurably faster than glibc's allocator (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
