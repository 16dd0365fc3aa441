//! How fast can this machine write the lake's event tables at all?
//!
//! Reads every file of `bronze/usage_events`, `silver/usage_events` and
//! `quarantine/usage_events` of one lake generation into memory, then writes the
//! same batches again, in the same files and the compactor's batches of 8,192 rows,
//! with the compactor's writer properties ([`writer_properties`]), to a sink that
//! discards the bytes: Arrow -> Parquet encoding and zstd only, no decoding of topics,
//! no rows built, no file system. The files are shared between `threads` threads by
//! size. What it prints is a ceiling on `compactor --once` for these events: the
//! compactor does all of this and more. `--uncompressed` writes without zstd, to show
//! what the compression costs; `--tables` writes only some of the tables.
//! The tables are held in memory: about 6 GB of RSS for 10 million events.
//!
//! ```text
//! cargo run --release -p compactor --example parquet_ceiling -- <lake>/lake.gen/<n> --threads 2 --runs 3
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow_array::RecordBatch;
use clap::Parser;
use compactor::table::{RowOrder, parquet_files, parquet_rows, read_parquet, writer_properties};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;

#[derive(Parser)]
struct Args {
    /// A generation of a compacted lake (`<data>/lake.gen/<n>`, or `<data>/lake`).
    generation: PathBuf,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Write without compression instead of zstd.
    #[arg(long)]
    uncompressed: bool,
    /// The tables whose files are written again.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "bronze/usage_events,silver/usage_events,quarantine/usage_events"
    )]
    tables: Vec<String>,
}
const BATCH_ROWS: usize = 8192;

/// The compactor binary's allocator, so the comparison is like for like.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Loaded {
    path: PathBuf,
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
}

fn load(generation: &Path, tables: &[String]) -> Result<Vec<Loaded>> {
    let mut out = Vec::new();
    for table in tables {
        for path in parquet_files(&generation.join(table))? {
            let mut batches = Vec::new();
            for b in read_parquet(&path, None)? {
                let mut at = 0;
                while at < b.num_rows() {
                    let n = BATCH_ROWS.min(b.num_rows() - at);
                    batches.push(b.slice(at, n));
                    at += n;
                }
            }
            let rows = batches.iter().map(|b| b.num_rows()).sum();
            let bytes = std::fs::metadata(&path)?.len() as usize;
            out.push(Loaded {
                path,
                batches,
                rows,
                bytes,
            });
        }
    }
    Ok(out)
}

fn write_all(files: &[&Loaded], uncompressed: bool) -> Result<usize> {
    let mut written = 0;
    for f in files {
        let Some(first) = f.batches.first() else {
            continue;
        };
        let schema = first.schema();
        let mut props = writer_properties(&schema, RowOrder::Log);
        if uncompressed {
            props = props
                .into_builder()
                .set_compression(Compression::UNCOMPRESSED)
                .build();
        }
        let mut w = ArrowWriter::try_new(std::io::sink(), schema, Some(props))
            .with_context(|| f.path.display().to_string())?;
        for b in &f.batches {
            w.write(b)?;
        }
        w.close()?;
        written += f.rows;
    }
    Ok(written)
}

fn main() -> std::process::ExitCode {
    eventlog::cli::main(|| run(Args::parse()))
}

fn run(args: Args) -> Result<()> {
    let generation = args
        .generation
        .canonicalize()
        .with_context(|| format!("lake generation {}", args.generation.display()))?;
    let files = load(&generation, &args.tables)?;
    if files.is_empty() {
        bail!(
            "no Parquet files under {} for {:?}",
            generation.display(),
            args.tables
        );
    }
    // The run's events are silver's, whichever tables are written.
    let mut events = 0u64;
    for path in parquet_files(&generation.join("silver/usage_events"))? {
        events += parquet_rows(&path)?;
    }
    let rows: usize = files.iter().map(|f| f.rows).sum();
    // Largest first onto the least loaded thread.
    let mut order: Vec<&Loaded> = files.iter().collect();
    order.sort_by_key(|f| std::cmp::Reverse(f.bytes));
    let mut shares: Vec<(usize, Vec<&Loaded>)> =
        (0..args.threads.max(1)).map(|_| (0, vec![])).collect();
    for f in order {
        if let Some(s) = shares.iter_mut().min_by_key(|s| s.0) {
            s.0 += f.bytes;
            s.1.push(f);
        }
    }
    println!(
        "{} files, {rows} rows ({events} silver events), {} threads",
        files.len(),
        shares.len()
    );
    let uncompressed = args.uncompressed;
    for run in 1..=args.runs {
        let start = Instant::now();
        let written = std::thread::scope(|s| {
            let handles: Vec<_> = shares
                .iter()
                .map(|(_, share)| s.spawn(move || write_all(share, uncompressed)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().map_err(|_| anyhow::anyhow!("a writer panicked"))?)
                .sum::<Result<usize>>()
        })?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "run {run}: {written} rows in {secs:.2} s, {:.0} silver events/s",
            events as f64 / secs
        );
    }
    Ok(())
}
