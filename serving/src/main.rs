use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use eventlog::PipelineConfig;
use serving::query::{self, QueryArgs};

/// Gold marts and the real-time view -> the serving store; the five dashboard queries.
#[derive(Parser)]
#[command(name = "serving", version)]
struct Cli {
    /// The pipeline config file (default config/pipeline.toml, if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upserts every gold mart of the current lake and the real-time view
    /// (speed.daily_usage) into the serving store.
    Publish,
    /// Answers one of the dashboard queries (q1..q6).
    Query {
        /// q1 daily cost and requests | q2 top services | q3 critical tickets |
        /// q4 monthly revenue | q5 GenAI tokens and cost | q6 cost anomalies |
        /// tickets: one org's support tickets per day and severity
        query: String,
        #[arg(long)]
        org: Option<String>,
        /// First day (YYYY-MM-DD), inclusive.
        #[arg(long)]
        from: Option<NaiveDate>,
        /// Last day (YYYY-MM-DD), inclusive.
        #[arg(long)]
        to: Option<NaiveDate>,
        /// The window of q2 (default 14) and q3 (default 30), in days.
        #[arg(long)]
        days: Option<i64>,
        /// How many services q2 returns (default 3).
        #[arg(long)]
        top: Option<usize>,
        /// table | csv | json (JSON Lines with the mart's column names)
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Serves the dashboard and a JSON API of the five queries over HTTP, read-only.
    Serve {
        /// Where to listen (loopback unless you say otherwise; port 0 picks one).
        /// Anywhere else needs a token (PIPELINE_DASHBOARD_TOKEN or [serving]
        /// dashboard_token), which every route but /healthz then requires.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// Threads answering requests.
        #[arg(long, default_value_t = 8)]
        workers: usize,
        /// Answers kept until the next publish, at most this many MiB (0: none).
        #[arg(long, default_value_t = 64)]
        cache_mib: usize,
    },
}

fn main() -> ExitCode {
    eventlog::cli::main(|| run(Cli::parse()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = PipelineConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Publish => {
            let store = serving::open_configured(&config)?;
            let log = config.open_log()?;
            let webhook = serving::alerts::Webhook::from_config(&config.alerts)?;
            let bar = eventlog::cli::spinner("publishing");
            let report = serving::publish::publish_and_announce(
                &store,
                &config.lake_dir(),
                &log,
                webhook.as_ref(),
            );
            bar.finish_and_clear();
            let report = report?;
            tracing::info!(rows = ?report.rows, "published");
            let a = &report.alerts;
            if a.announced > 0 || a.pending > 0 {
                tracing::info!(
                    announced = a.announced,
                    by_method = ?a.by_method,
                    delivered = a.delivered,
                    pending = a.pending,
                    "cost anomalies announced"
                );
            }
        }
        Command::Query {
            query,
            org,
            from,
            to,
            days,
            top,
            format,
        } => {
            let args = QueryArgs {
                org,
                from,
                to,
                days,
                top,
            };
            let store = serving::open_configured_reader(&config)?;
            let answer = query::run(&store, &query, &args)?;
            print!("{}", query::render(&answer, &format)?);
        }
        Command::Serve {
            addr,
            workers,
            cache_mib,
        } => {
            let store = serving::open_configured_reader(&config)?;
            let server = serving::http::Server::bind(
                store,
                serving::http::ServeOptions {
                    addr,
                    token: config.serving.dashboard_token.clone(),
                    workers,
                    refresh_every: std::time::Duration::from_secs(1),
                    cache_bytes: cache_mib << 20,
                },
            )?;
            if let Some(a) = server.local_addr() {
                // The first line of stdout: scripts and tests read the address here.
                println!("dashboard: http://{a}/");
                std::io::Write::flush(&mut std::io::stdout())?;
                tracing::info!(addr = %a, "serving the dashboard and the JSON API");
            }
            server.run_until(eventlog::cli::stop_flag())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn serve_listens_on_loopback_unless_told_otherwise() {
        let cli = Cli::try_parse_from(["serving", "serve"]).unwrap();
        let Command::Serve { addr, workers, .. } = cli.command else {
            panic!("not serve")
        };
        assert_eq!(addr, "127.0.0.1:8080");
        assert!(workers > 0);
    }
}
