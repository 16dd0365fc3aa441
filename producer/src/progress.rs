//! A progress bar on long work, only when stderr is a terminal (the binaries' shared
//! one, `eventlog::cli::progress`).

pub fn bar(message: &'static str) -> indicatif::ProgressBar {
    eventlog::cli::progress(message)
}
