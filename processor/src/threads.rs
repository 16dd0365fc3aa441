//! Several processing threads in one process, as Kafka Streams' `num.stream.threads`:
//! each thread is a processor of its own (its own event partitions, RocksDB state,
//! outputs and commits), exactly as `--instance I/N` splits the work between
//! processes. Instance `I` of `N` running `T` threads is the `T` sub-instances
//! `I + N·t` of `N·T`: partition `p` belongs to sub-instance `p % (N·T)`, which is
//! one of instance `I`'s threads exactly when `p % N == I`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use eventlog::Log;

use crate::metrics::Metrics;
use crate::state::State;
use crate::{Error, Processor, ProcessorConfig, Result, RunReport};

/// The state directory of sub-instance `instance` of `instances` under `root`
/// (`<data_dir>/state`): `processor` alone, `processor-I-of-N` when shared.
pub fn state_dir(root: &Path, instance: u32, instances: u32) -> PathBuf {
    if instances > 1 {
        root.join(format!("processor-{instance}-of-{instances}"))
    } else {
        root.join("processor")
    }
}

/// How many threads instance `cfg.instance` of `cfg.instances` runs for `threads`
/// asked: no more than the event partitions it owns (a thread without a partition
/// would only repeat the master data), and at least one.
pub fn effective_threads(cfg: &ProcessorConfig, threads: u32) -> u32 {
    let owned = (0..cfg.event_partitions).filter(|p| cfg.owns(*p)).count() as u32;
    threads.min(owned).max(1)
}

/// Runs `cfg` (instance `cfg.instance` of `cfg.instances`) on `threads` threads, each
/// with its state under `state_root`, until idle (with `cfg.until_idle`) or until one
/// of them fails or `stop` is set; the others then commit what they processed and
/// stop. Returns the records and commits of all threads together, or the first error.
pub fn run_threads<L: Log>(
    log: &L,
    state_root: &Path,
    cfg: &ProcessorConfig,
    threads: u32,
    metrics: &Metrics,
    stop: &AtomicBool,
) -> Result<RunReport> {
    let threads = effective_threads(cfg, threads);
    let total = cfg.instances.max(1) * threads;
    let subs: Vec<ProcessorConfig> = (0..threads)
        .map(|t| ProcessorConfig {
            instance: cfg.instance + cfg.instances.max(1) * t,
            instances: total,
            ..cfg.clone()
        })
        .collect();
    remove_other_layouts(state_root, total)?;
    let run_one = |sub: &ProcessorConfig| -> Result<RunReport> {
        let state = State::open_shared(
            &state_dir(state_root, sub.instance, sub.instances),
            threads as usize,
        )?;
        let started = std::time::Instant::now();
        let mut p = Processor::open(log, state, sub.clone(), metrics.clone())?;
        let report = p.run_until(stop)?;
        tracing::info!(
            instance = sub.instance,
            instances = sub.instances,
            records = report.records_in,
            seconds = started.elapsed().as_secs_f64(),
            "processing thread done"
        );
        Ok(report)
    };
    if subs.len() == 1 {
        return run_one(&subs[0]);
    }
    let results: Vec<Result<RunReport>> = std::thread::scope(|s| {
        let handles: Vec<_> = subs
            .iter()
            .map(|sub| {
                let run_one = &run_one;
                std::thread::Builder::new()
                    .name(format!("processor-{}-of-{}", sub.instance, sub.instances))
                    .spawn_scoped(s, move || {
                        let r = run_one(sub);
                        if let Err(e) = &r {
                            tracing::error!(
                                instance = sub.instance,
                                "processing thread failed: {e}"
                            );
                            stop.store(true, Ordering::Relaxed);
                        }
                        r
                    })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|_| {
                    stop.store(true, Ordering::Relaxed);
                    Err(Error::State("a processing thread panicked".into()))
                }),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    Err(Error::Config(format!(
                        "cannot start a processing thread: {e}"
                    )))
                }
            })
            .collect()
    });
    let mut total_report = RunReport::default();
    for r in results {
        let r = r?;
        total_report.records_in += r.records_in;
        total_report.commits += r.commits;
    }
    Ok(total_report)
}

/// Removes the states of another split of the partitions (another number of threads
/// or instances): their committed positions describe outputs that the current split
/// rebuilds from offset 0, each thread starting from an empty state.
fn remove_other_layouts(state_root: &Path, total: u32) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(state_root) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let of = if name == "processor" {
            Some(1)
        } else {
            name.strip_prefix("processor-")
                .and_then(|rest| rest.split_once("-of-"))
                .and_then(|(_, n)| n.parse::<u32>().ok())
        };
        if of.is_some_and(|of| of != total) {
            tracing::warn!(
                state = name,
                "the partitions are now split {total} ways: removing this state of another split; its partitions are rebuilt from offset 0"
            );
            std::fs::remove_dir_all(entry.path()).map_err(|e| {
                Error::State(format!("cannot remove {}: {e}", entry.path().display()))
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn instance(i: u32, n: u32) -> ProcessorConfig {
        ProcessorConfig {
            instance: i,
            instances: n,
            ..Default::default()
        }
    }

    #[test]
    fn a_new_split_removes_the_states_of_another_split_only() {
        let root = tempfile::tempdir().unwrap();
        for d in [
            "processor",
            "processor-0-of-2",
            "processor-1-of-2",
            "processor-3-of-4",
            "other",
        ] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        remove_other_layouts(root.path(), 2).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["other", "processor-0-of-2", "processor-1-of-2"]);
        remove_other_layouts(&root.path().join("missing"), 1).unwrap();
    }

    #[test]
    fn threads_split_an_instances_partitions_and_no_other() {
        // 4 partitions, one instance, two threads: {0, 2} and {1, 3}.
        let cfg = instance(0, 1);
        assert_eq!(effective_threads(&cfg, 2), 2);
        // Two instances of two threads each: instance 1 owns {1, 3}, its threads
        // (sub-instances 1 and 3 of 4) one each.
        let cfg = instance(1, 2);
        assert_eq!(effective_threads(&cfg, 2), 2);
        for (t, owned) in [(0u32, vec![1u32]), (1, vec![3])] {
            let sub = instance(1 + 2 * t, 4);
            let got: Vec<u32> = (0..4).filter(|p| sub.owns(*p)).collect();
            assert_eq!(got, owned);
        }
        // More threads than partitions owned: one per partition; never zero.
        assert_eq!(effective_threads(&instance(0, 1), 16), 4);
        assert_eq!(effective_threads(&instance(1, 3), 2), 1);
        assert_eq!(effective_threads(&instance(0, 1), 0), 1);
        assert_eq!(state_dir(Path::new("s"), 0, 1), Path::new("s/processor"));
        assert_eq!(
            state_dir(Path::new("s"), 1, 2),
            Path::new("s/processor-1-of-2")
        );
    }
}
