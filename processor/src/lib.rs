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
pub mod threads;

pub use engine::{FromOffset, Processor, ProcessorConfig, RunReport, parse_instance};
pub use threads::run_threads;

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

pub use schemas::topics::{
    COMMITTED_OUTPUTS, DAILY_TOPIC, LATE_TOPIC, QUARANTINE_TOPIC, SILVER_TOPIC, WINDOWS_TOPIC,
};
