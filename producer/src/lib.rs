//! Landing files into the raw topics, and landing files out of nothing.
//!
//! This crate owns `producer replay` (every landing record to its raw topic, bytes
//! unchanged, with `source_file`/`line_no` headers, resumable), `producer generate`
//! (a deterministic landing directory of any size, with every defect class of SPEC
//! section 4) and `producer topics`. It applies no quality rule: records enter the log
//! as they are, and the rules in `schemas` judge them downstream.

pub mod error;
pub mod generate;
pub mod landing;
pub mod progress;
pub mod replay;
pub mod sort;
pub mod topics;

pub use error::{Error, Result};
