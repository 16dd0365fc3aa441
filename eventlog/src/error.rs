use std::path::PathBuf;

/// What went wrong in the log. `Corrupt` and `Locked` are for the operator; `Io`
/// carries the path it happened on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The I/O error is part of the message, not a separate source, so that a
    /// one-line error chain says it once.
    #[error("{op} {path}: {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "partition {topic}/{partition} is already open for writing by another process (lock {lock})"
    )]
    Locked {
        topic: String,
        partition: u32,
        lock: PathBuf,
    },
    #[error(
        "corrupt data in {topic}/{partition} at offsets {from_offset}..{to_offset} (segment {segment}, byte {position}): {detail}"
    )]
    Corrupt {
        topic: String,
        partition: u32,
        from_offset: u64,
        /// The first offset known to be intact after the damage, or the segment's end.
        to_offset: u64,
        segment: PathBuf,
        position: u64,
        detail: &'static str,
    },
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("topic {topic} has no partition {partition} (it has {partitions})")]
    UnknownPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    #[error("invalid topic name {0:?}: use letters, digits, '.', '_' and '-'")]
    InvalidName(String),
    #[error("{0}")]
    Config(String),
    /// A request to the Kafka cluster failed; `detail` names the topic or consumer.
    #[error("kafka {op}: {detail}")]
    Kafka { op: &'static str, detail: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches the operation and path to an I/O error.
pub trait IoContext<T> {
    fn io(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|error| Error::Io {
            op,
            path: path.into(),
            error,
        })
    }
}
