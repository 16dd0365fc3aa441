//! Generations of the lake, switched atomically.
//!
//! `<lake>` is a symbolic link to `<lake>.gen/<n>`, a complete lake. A run builds
//! generation n+1 beside it (hard links to every file of n that it keeps, new files for
//! what it adds, merges or rewrites), writes `_manifest.json` last, then renames a new
//! link over `<lake>`. A reader resolves `<lake>` once and sees generation n or n+1,
//! never a mix; a crash at any moment leaves the link on the last complete generation,
//! and the next run deletes the unfinished one. Generation n is kept after the switch,
//! so a reader that listed its files just before can still open them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub const MANIFEST: &str = "_manifest.json";

/// What a generation holds: how far each input topic partition was compacted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub generation: u64,
    /// topic -> partition -> next offset to compact.
    pub positions: BTreeMap<String, BTreeMap<u32, u64>>,
    /// `cost_spike` threshold per service the silver files were written with.
    pub spike_thresholds: BTreeMap<String, f64>,
    /// Every Parquet file of the generation (path relative to it) and its size, so
    /// that a file deleted or cut short later is noticed (empty in a manifest written
    /// before this existed: nothing to check).
    #[serde(default)]
    pub files: BTreeMap<String, u64>,
}

impl Manifest {
    pub fn position(&self, topic: &str, p: u32) -> u64 {
        self.positions
            .get(topic)
            .and_then(|m| m.get(&p))
            .copied()
            .unwrap_or(0)
    }

    pub fn set_position(&mut self, topic: &str, p: u32, offset: u64) {
        self.positions
            .entry(topic.to_owned())
            .or_default()
            .insert(p, offset);
    }
}

pub struct Lake {
    link: PathBuf,
    gens: PathBuf,
}

/// A generation being built.
pub struct NewGeneration {
    pub number: u64,
    pub dir: PathBuf,
}

impl Lake {
    pub fn new(link: &Path) -> Lake {
        let mut gens = link.as_os_str().to_owned();
        gens.push(".gen");
        Lake {
            link: link.to_owned(),
            gens: PathBuf::from(gens),
        }
    }

    pub fn link(&self) -> &Path {
        &self.link
    }

    /// The current generation's number and directory, if the lake exists.
    pub fn current(&self) -> Result<Option<(u64, PathBuf)>> {
        match std::fs::symlink_metadata(&self.link) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("stat {}", self.link.display())),
            Ok(m) if !m.file_type().is_symlink() => bail!(
                "{} exists and is not a link to a lake generation; move it away",
                self.link.display()
            ),
            Ok(_) => {}
        }
        let target = std::fs::read_link(&self.link)
            .with_context(|| format!("read link {}", self.link.display()))?;
        let n: u64 = target
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .with_context(|| {
                format!(
                    "{} points to {}, not a lake generation",
                    self.link.display(),
                    target.display()
                )
            })?;
        Ok(Some((n, self.gens.join(gen_name(n)))))
    }

    pub fn manifest(&self) -> Result<Manifest> {
        match self.current()? {
            None => Ok(Manifest::default()),
            Some((_, dir)) => read_manifest(&dir),
        }
    }

    /// Starts generation n+1: deletes what a crashed run left, then links every file
    /// of the current generation into the new one unless `empty`.
    pub fn begin(&self, empty: bool) -> Result<NewGeneration> {
        let current = self.current()?;
        let n = current.as_ref().map_or(0, |(n, _)| *n);
        std::fs::create_dir_all(&self.gens)
            .with_context(|| format!("create {}", self.gens.display()))?;
        // Unfinished generations (above the current one) are garbage; older ones
        // than the previous are no longer needed by readers.
        self.remove_generations(|g| g > n || g + 1 < n)?;
        let number = n + 1;
        let dir = self.gens.join(gen_name(number));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        if let (Some((_, cur)), false) = (current, empty) {
            link_tree(&cur, &dir)?;
        }
        Ok(NewGeneration { number, dir })
    }

    /// The current generation's Parquet files (as its `manifest` lists them) that are
    /// missing, of another size than the manifest says, or without Parquet's closing magic bytes: the lake was
    /// damaged outside the compactor.
    pub fn damaged(&self, manifest: &Manifest) -> Result<Vec<String>> {
        let Some((_, dir)) = self.current()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (rel, &size) in &manifest.files {
            let path = dir.join(rel);
            let problem = match std::fs::File::open(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("missing".to_owned()),
                Err(e) => Some(e.to_string()),
                Ok(f) => {
                    use std::os::unix::fs::FileExt;
                    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                    let mut tail = [0u8; 4];
                    if len != size {
                        Some(format!("{len} bytes, {size} expected"))
                    } else if len < 4
                        || f.read_exact_at(&mut tail, len - 4).is_err()
                        || &tail != b"PAR1"
                    {
                        Some("no Parquet footer".to_owned())
                    } else {
                        None
                    }
                }
            };
            if let Some(p) = problem {
                out.push(format!("{rel} ({p})"));
            }
        }
        Ok(out)
    }

    /// Writes the manifest and switches the link to the new generation.
    pub fn commit(&self, generation: &NewGeneration, manifest: &Manifest) -> Result<()> {
        let mut m = manifest.clone();
        m.generation = generation.number;
        m.files = parquet_files(&generation.dir)?;
        // Everything the generation holds is on disk before the link points to it.
        sync_tree(&generation.dir)?;
        let bytes = serde_json::to_vec_pretty(&m)?;
        write_file_atomic(&generation.dir.join(MANIFEST), &bytes)?;
        sync_dir(&generation.dir)?;
        let tmp = self.link.with_extension("link.tmp");
        let _ = std::fs::remove_file(&tmp);
        let target = PathBuf::from(
            self.gens
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default(),
        )
        .join(gen_name(generation.number));
        std::os::unix::fs::symlink(&target, &tmp)
            .with_context(|| format!("create link {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.link)
            .with_context(|| format!("switch {}", self.link.display()))?;
        if let Some(parent) = self.link.parent() {
            sync_dir(parent)?;
        }
        // Keep the previous generation for readers that listed it just before.
        self.remove_generations(|g| g + 1 < generation.number)
    }

    fn remove_generations(&self, doomed: impl Fn(u64) -> bool) -> Result<()> {
        for entry in std::fs::read_dir(&self.gens)? {
            let entry = entry?;
            let Some(g) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            if doomed(g) {
                remove_dir(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Holds the lake for one writer: a second compactor fails fast instead of
    /// deleting the generation the first is building.
    pub fn lock(&self) -> Result<std::fs::File> {
        std::fs::create_dir_all(&self.gens)
            .with_context(|| format!("create {}", self.gens.display()))?;
        let path = self.gens.join(".lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        let locked = eventlog::try_lock_with_grace(&f)
            .with_context(|| format!("lock {}", path.display()))?;
        if !locked {
            bail!(
                "another compactor is writing {} (lock {} is held)",
                self.link.display(),
                path.display()
            );
        }
        Ok(f)
    }

    /// Drops an unfinished generation (nothing changed).
    pub fn abandon(&self, generation: NewGeneration) -> Result<()> {
        remove_dir(&generation.dir)
    }
}

fn gen_name(n: u64) -> String {
    format!("{n:06}")
}

pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parse {}", path.display()))
}

fn remove_dir(p: &Path) -> Result<()> {
    match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("remove {}", p.display()))
        }
        _ => Ok(()),
    }
}

/// Hard-links every file under `from` into the same place under `to`.
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("list {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        // Temporary files a crash left (`.x.tmp`, `x.tmp.<pid>`) are not carried over.
        if text.starts_with('.') || text.contains(".tmp") || name == MANIFEST {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&dst)?;
            link_tree(&src, &dst)?;
        } else {
            std::fs::hard_link(&src, &dst)
                .with_context(|| format!("link {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

/// Writes a small file atomically (creating its directory): the log's
/// [`eventlog::write_atomic`].
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    Ok(eventlog::write_atomic(path, bytes)?)
}

/// Fsyncs the files written into `dir`'s tree (files also linked from an older
/// generation were synced when that one was committed) and every directory.
fn sync_tree(dir: &Path) -> Result<()> {
    sync_tree_where(dir, false)
}

/// Sends the files written so far into `dir`'s tree on their way to disk while the
/// run goes on (gold is computed meanwhile), so that [`Lake::commit`]'s sync, which
/// still syncs the whole tree, finds little left to write. Entries removed meanwhile
/// (temporary files, a rewritten mart) are skipped; any other error is returned.
pub fn sync_early(dir: &Path) -> Result<()> {
    sync_tree_where(dir, true)
}

fn sync_tree_where(dir: &Path, missing_ok: bool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let skip = |e: &std::io::Error| missing_ok && e.kind() == std::io::ErrorKind::NotFound;
    let entries = match std::fs::read_dir(dir) {
        Err(e) if skip(&e) => return Ok(()),
        r => r.with_context(|| format!("list {}", dir.display()))?,
    };
    for entry in entries {
        let entry = entry?;
        let meta = match entry.metadata() {
            Err(e) if skip(&e) => continue,
            r => r?,
        };
        if meta.is_dir() {
            sync_tree_where(&entry.path(), missing_ok)?;
        } else if meta.nlink() == 1 {
            match fsync(&entry.path()) {
                Err(e) if skip(&e) => {}
                r => r.with_context(|| format!("fsync {}", entry.path().display()))?,
            }
        }
    }
    match fsync(dir) {
        Err(e) if skip(&e) => Ok(()),
        r => r.with_context(|| format!("fsync {}", dir.display())),
    }
}

/// Every `.parquet` file under `root`, by path relative to it, with its size.
fn parquet_files(root: &Path) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("list {}", dir.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let path = entry.path();
            if meta.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet")
                && let Ok(rel) = path.strip_prefix(root)
            {
                out.insert(rel.to_string_lossy().into_owned(), meta.len());
            }
        }
    }
    Ok(out)
}

/// Fsyncs a file or a directory.
fn fsync(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path).and_then(|f| f.sync_all())
}

fn sync_dir(dir: &Path) -> Result<()> {
    fsync(dir).with_context(|| format!("fsync {}", dir.display()))
}

/// Removes directories left empty under `root` (after merges deleted their files).
pub fn prune_empty_dirs(root: &Path) -> Result<bool> {
    let mut empty = true;
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            if prune_empty_dirs(&entry.path())? {
                std::fs::remove_dir(entry.path())?;
            } else {
                empty = false;
            }
        } else {
            empty = false;
        }
    }
    Ok(empty)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generations_switch_atomically_and_crashed_ones_are_dropped() {
        let t = tempfile::tempdir().unwrap();
        let lake = Lake::new(&t.path().join("lake"));
        assert!(lake.current().unwrap().is_none());
        let g1 = lake.begin(false).unwrap();
        std::fs::create_dir_all(g1.dir.join("silver/x")).unwrap();
        std::fs::write(g1.dir.join("silver/x/a.parquet"), b"one").unwrap();
        let mut m = Manifest::default();
        m.set_position("t", 0, 5);
        lake.commit(&g1, &m).unwrap();
        assert_eq!(lake.manifest().unwrap().position("t", 0), 5);
        assert_eq!(
            std::fs::read(t.path().join("lake/silver/x/a.parquet")).unwrap(),
            b"one"
        );
        // A run that crashes before its commit changes nothing readers see.
        let g2 = lake.begin(false).unwrap();
        std::fs::write(g2.dir.join("silver/x/b.parquet"), b"two").unwrap();
        assert!(!t.path().join("lake/silver/x/b.parquet").exists());
        // The next run starts over from generation 1, with its files linked.
        let g2 = lake.begin(false).unwrap();
        assert!(!g2.dir.join("silver/x/b.parquet").exists());
        assert!(g2.dir.join("silver/x/a.parquet").exists());
        // Rewriting a linked file in the new generation leaves the old one intact.
        write_file_atomic(&g2.dir.join("silver/x/a.parquet"), b"changed").unwrap();
        assert_eq!(
            std::fs::read(t.path().join("lake/silver/x/a.parquet")).unwrap(),
            b"one"
        );
        lake.commit(&g2, &m).unwrap();
        assert_eq!(lake.current().unwrap().unwrap().0, 2);
        // One writer at a time.
        let held = lake.lock().unwrap();
        assert!(
            lake.lock()
                .unwrap_err()
                .to_string()
                .contains("another compactor")
        );
        drop(held);
        lake.lock().unwrap();
        assert_eq!(
            std::fs::read(t.path().join("lake/silver/x/a.parquet")).unwrap(),
            b"changed"
        );
    }

    #[test]
    fn the_early_sync_skips_what_vanished_and_the_commit_sync_does_not() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("gen");
        std::fs::create_dir_all(tree.join("silver/x")).unwrap();
        std::fs::write(tree.join("silver/x/a.parquet"), b"one").unwrap();
        sync_early(&tree).unwrap();
        sync_tree(&tree).unwrap();
        // What a concurrent rewrite removed between listing and syncing.
        let gone = tree.join("gold");
        sync_early(&gone).unwrap();
        assert!(sync_tree(&gone).is_err());
        // Other errors are not skipped: a file where a directory is expected.
        let file = tree.join("silver/x/a.parquet");
        assert!(sync_early(&file).is_err());
    }

    #[test]
    fn a_plain_directory_in_the_way_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("lake")).unwrap();
        let err = Lake::new(&t.path().join("lake")).current().unwrap_err();
        assert!(err.to_string().contains("not a link"), "{err}");
    }
}
