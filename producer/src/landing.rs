//! What a landing directory holds: CSV extracts of the seven master sources and JSONL
//! files of usage events, found by name. Paths never leave the directory: links are
//! not followed and names are kept relative.

use std::path::{Path, PathBuf};

use schemas::Source;

use crate::error::{IoContext, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandingFile {
    /// Path relative to the landing directory, `/`-separated: the `source_file` header.
    pub rel: String,
    pub path: PathBuf,
    pub source: Source,
}

/// The CSV source a file name feeds: `users.csv`, or `users_2025-09.csv` and the like
/// (the source name, then `_`, `-` or `.`, then anything).
pub fn csv_source(file_name: &str) -> Option<Source> {
    let stem = file_name.strip_suffix(".csv")?;
    Source::MASTER.into_iter().find(|s| {
        stem == s.name()
            || stem
                .strip_prefix(s.name())
                .is_some_and(|rest| rest.starts_with(['_', '-', '.']))
    })
}

/// Files still being written are expected under a hidden or temporary name and
/// renamed into place when complete.
fn is_in_flight(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part")
}

/// Every landing file below `dir`, sorted by relative path. Other files are returned
/// separately so the caller can say what it ignored.
pub fn scan(dir: &Path) -> Result<(Vec<LandingFile>, Vec<String>)> {
    let mut files = Vec::new();
    let mut ignored = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&d).io("list", &d)? {
            let entry = entry.io("list", &d)?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                ignored.push(format!("{prefix}{}", entry.file_name().to_string_lossy()));
                continue;
            };
            if is_in_flight(&name) {
                continue;
            }
            let rel = format!("{prefix}{name}");
            let kind = entry.file_type().io("stat", entry.path())?;
            if kind.is_dir() {
                stack.push((entry.path(), format!("{rel}/")));
            } else if !kind.is_file() {
                ignored.push(rel); // symlinks and devices are not followed
            } else if name.ends_with(".jsonl") {
                files.push(LandingFile {
                    rel,
                    path: entry.path(),
                    source: Source::UsageEvents,
                });
            } else if let Some(source) = csv_source(&name) {
                files.push(LandingFile {
                    rel,
                    path: entry.path(),
                    source,
                });
            } else {
                ignored.push(rel);
            }
        }
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    ignored.sort();
    Ok((files, ignored))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Paths from the landing directory never lead out of it: links to files and
    /// directories elsewhere are listed as ignored, not read.
    #[test]
    fn links_out_of_the_landing_directory_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let (landing, outside) = (t.path().join("landing"), t.path().join("outside"));
        std::fs::create_dir_all(landing.join("usage_events_stream")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(landing.join("users.csv"), "user_id\n").unwrap();
        std::fs::write(outside.join("customers_orgs.csv"), "org_id\n").unwrap();
        std::fs::write(outside.join("secret.jsonl"), "{}\n").unwrap();
        std::os::unix::fs::symlink(&outside, landing.join("more")).unwrap();
        std::os::unix::fs::symlink(
            outside.join("secret.jsonl"),
            landing.join("usage_events_stream/e.jsonl"),
        )
        .unwrap();
        let (files, ignored) = scan(&landing).unwrap();
        let rels: Vec<&str> = files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["users.csv"]);
        assert_eq!(ignored, ["more", "usage_events_stream/e.jsonl"]);
        assert!(files.iter().all(|f| f.path.starts_with(&landing)));
    }

    #[test]
    fn csv_names() {
        assert_eq!(csv_source("users.csv"), Some(Source::Users));
        assert_eq!(csv_source("users_2025-09.csv"), Some(Source::Users));
        assert_eq!(
            csv_source("support_tickets-2.csv"),
            Some(Source::SupportTickets)
        );
        assert_eq!(csv_source("usersx.csv"), None);
        assert_eq!(csv_source("usage_events.csv"), None);
        assert_eq!(csv_source("users.txt"), None);
    }
}
