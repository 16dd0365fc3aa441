//! The speed layer: raw topics in, `silver.usage_events`, `quarantine` and the
//! `speed.*` views out, with its state in RocksDB.
//!
//! This crate owns the processing loop (`on_master`, `on_event`, the watermark and
//! window emission, `commit`), the state layout ([`state`]), and the exactly-once
//! protocol: the state changes, input offsets and output positions of a batch are
//! one synced RocksDB write; outputs appended beyond the committed positions are
//! truncated on restart. It applies the rules of `schemas` and defines none itself.

pub mod engine;
pub mod metrics;
pub mod state;

pub use engine::{FromOffset, Processor, ProcessorConfig, RunReport};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Log(#[from] eventlog::Error),
    #[error("state: {0}")]
    State(String),
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The topics the processor writes, each with the event partition count; quarantine
/// has one more partition, the last, for master-data records.
pub const SILVER_TOPIC: &str = "silver.usage_events";
pub const QUARANTINE_TOPIC: &str = "quarantine";
pub const WINDOWS_TOPIC: &str = "speed.usage_windows";
pub const DAILY_TOPIC: &str = "speed.daily_usage";
pub const LATE_TOPIC: &str = "speed.late_events";

/// Consumer name under which the committed output positions are published in the
/// log, so readers of the outputs never read what a crash may still take back.
pub const COMMITTED_OUTPUTS: &str = "processor.outputs";
