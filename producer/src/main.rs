use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use eventlog::PipelineConfig;
use producer::replay::{Order, ReplayOptions};

/// Landing files into the raw topics of the log; a generator of landing data.
#[derive(Parser)]
#[command(name = "producer", version)]
struct Cli {
    /// The pipeline config file (default config/pipeline.toml, if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Append every landing record to its raw topic (resumes an interrupted replay).
    Replay {
        landing_dir: PathBuf,
        #[arg(long, value_enum, default_value_t = OrderArg::EventTime)]
        order: OrderArg,
        /// Pace events at X times event time (default: as fast as possible).
        #[arg(long)]
        speedup: Option<f64>,
        /// Keep watching the directory for new files.
        #[arg(long)]
        follow: bool,
        /// Start over even if the last replay of this directory was interrupted.
        #[arg(long)]
        new_run: bool,
    },
    /// Write a landing directory of generated data.
    Generate {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 80)]
        orgs: u32,
        #[arg(long, default_value_t = 60)]
        days: u32,
        #[arg(long, default_value_t = 720)]
        events_per_day: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// List every topic with its partitions' end offsets.
    Topics {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OrderArg {
    EventTime,
    File,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn main() -> ExitCode {
    eventlog::cli::main(|| run(Cli::parse()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = PipelineConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Replay {
            landing_dir,
            order,
            speedup,
            follow,
            new_run,
        } => {
            let log = config.open_log()?;
            eventlog::check_retention(&log, &schemas::source::Source::raw_topics());
            let opts = ReplayOptions {
                landing: landing_dir,
                order: match order {
                    OrderArg::EventTime => Order::EventTime,
                    OrderArg::File => Order::File,
                },
                speedup,
                follow,
                new_run,
                state_dir: config.data_dir().join("producer"),
                event_partitions: config.log.event_partitions,
                batch_records: config.producer.batch_records,
                sort_chunk_entries: config.producer.sort_chunk_entries,
                follow_poll: std::time::Duration::from_millis(config.producer.follow_poll_ms),
            };
            let started = std::time::Instant::now();
            let report = producer::replay::replay(&log, &opts, eventlog::cli::stop_flag())?;
            if report.stopped {
                tracing::info!("replay stopped; the next replay of this directory resumes it");
            }
            let total: u64 = report.appended.values().sum();
            tracing::info!(
                records = total,
                resumed_past = report.resumed_past,
                rounds = report.rounds,
                seconds = started.elapsed().as_secs_f64(),
                "replay done"
            );
            for (topic, n) in &report.appended {
                println!("{topic}\t{n}");
            }
        }
        Command::Generate {
            out,
            orgs,
            days,
            events_per_day,
            seed,
        } => {
            let spec = producer::generate::GenSpec {
                orgs,
                days,
                events_per_day,
                seed,
            };
            let summary = producer::generate::generate(&out, &spec)
                .with_context(|| format!("generating into {}", out.display()))?;
            println!(
                "wrote {} events in {} files and {} master rows to {}",
                summary.events,
                summary.event_files,
                summary.master_rows,
                out.display()
            );
        }
        Command::Topics { format } => {
            let log = config.open_log()?;
            let rows = producer::topics::list(&log)?;
            let mut out = std::io::stdout().lock();
            match format {
                Format::Json => producer::topics::write_json(&rows, &mut out)?,
                Format::Table => producer::topics::write_table(&rows, &mut out)?,
            }
        }
    }
    Ok(())
}
