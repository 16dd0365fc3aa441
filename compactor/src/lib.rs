//! The batch path: topics -> the Parquet lake (SPEC section 5) and the gold marts
//! (section 6).
//!
//! A run reads what the processor committed since the last run (its silver and
//! quarantine topics, with the raw records they came from for bronze, and the speed
//! topics), writes it into a new generation of the lake, recomputes gold from the whole
//! silver history, and switches generations atomically ([`lake`]).

pub mod compact;
pub mod cursor;
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
