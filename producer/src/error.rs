#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log, or a file (with the operation and path).
    #[error(transparent)]
    Log(#[from] eventlog::Error),
    #[error("{0}")]
    Usage(String),
    /// A stop was asked for (SIGTERM, SIGINT): what was appended stays, and the next
    /// replay of the directory resumes after it.
    #[error("stopped")]
    Stopped,
    #[error("replay state {path} is unreadable: {detail}")]
    State {
        path: std::path::PathBuf,
        detail: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches the operation and path to an I/O error, as the log does.
pub(crate) trait IoContext<T> {
    fn io(self, op: &'static str, path: impl Into<std::path::PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io(self, op: &'static str, path: impl Into<std::path::PathBuf>) -> Result<T> {
        Ok(eventlog::IoContext::io(self, op, path)?)
    }
}
