//! The batch path: topics -> the Parquet lake (SPEC section 5) and the gold marts
//! (section 6).
//!
//! A run reads what the processor committed since the last run (its silver and
//! quarantine topics, with the raw records they came from for bronze, and the speed
//! topics), writes it into a new generation of the lake, recomputes gold from the whole
//! silver history, and switches generations atomically ([`lake`]).

pub mod compact;
pub mod gold;
pub mod lake;
pub mod rows;
pub mod select;
pub mod table;

pub use compact::{Run, RunSummary};
pub use lake::{Lake, Manifest};

/// What a run needs from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub event_partitions: u32,
    pub flush_rows: usize,
    pub max_files_per_partition: usize,
    pub spike_factor: f64,
    pub z_threshold: f64,
    pub mad_threshold: f64,
    pub pctl_factor: f64,
}

impl Settings {
    pub fn from_config(config: &eventlog::PipelineConfig) -> Settings {
        let c = &config.compactor;
        Settings {
            event_partitions: config.log.event_partitions,
            flush_rows: c.flush_rows.max(1),
            max_files_per_partition: c.max_files_per_partition.max(1),
            spike_factor: c.spike_factor,
            z_threshold: c.z_threshold,
            mad_threshold: c.mad_threshold,
            pctl_factor: c.pctl_factor,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_config(&eventlog::PipelineConfig::default())
    }
}

/// Parses `--every` durations: `500ms`, `30s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> anyhow::Result<std::time::Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| anyhow::anyhow!("duration {s:?}: expected a number and ms, s, m or h"))?;
    let ms = match unit {
        "ms" => n,
        "s" | "" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => anyhow::bail!("duration {s:?}: expected a number and ms, s, m or h"),
    };
    if ms == 0 {
        anyhow::bail!("duration {s:?} must be positive");
    }
    Ok(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
        assert_eq!(parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
