//! Event-time order for any number of events in bounded memory: an external merge
//! sort of small fixed-size entries (time, file, position), never of the lines
//! themselves. Sorted runs spill to disk past a configured size and are merged.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// Where one event line is, and when it happened. Orders by time, then file, then
/// position, so the order is the same on every run (a resume depends on it). Lines
/// without a readable time sort first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub ts_micros: i64,
    pub file: u32,
    pub offset: u64,
    pub len: u32,
    pub line_no: u64,
}

const ENTRY_BYTES: usize = 32;

impl Entry {
    fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        b[0..8].copy_from_slice(&self.ts_micros.to_le_bytes());
        b[8..12].copy_from_slice(&self.file.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b[16..24].copy_from_slice(&self.offset.to_le_bytes());
        b[24..32].copy_from_slice(&self.line_no.to_le_bytes());
        b
    }

    fn decode(b: &[u8; ENTRY_BYTES]) -> Entry {
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            a
        };
        let u32_at = |i: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[i..i + 4]);
            a
        };
        Entry {
            ts_micros: i64::from_le_bytes(u64_at(0)),
            file: u32::from_le_bytes(u32_at(8)),
            len: u32::from_le_bytes(u32_at(12)),
            offset: u64::from_le_bytes(u64_at(16)),
            line_no: u64::from_le_bytes(u64_at(24)),
        }
    }
}

/// Collects entries; spills a sorted run to `dir` whenever `chunk` entries are held.
pub struct ExternalSorter {
    dir: PathBuf,
    chunk: usize,
    buf: Vec<Entry>,
    runs: Vec<PathBuf>,
}

impl ExternalSorter {
    pub fn new(dir: &Path, chunk: usize) -> ExternalSorter {
        ExternalSorter {
            dir: dir.to_owned(),
            chunk: chunk.max(1),
            buf: Vec::new(),
            runs: Vec::new(),
        }
    }

    pub fn push(&mut self, e: Entry) -> Result<()> {
        self.buf.push(e);
        if self.buf.len() >= self.chunk {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        self.buf.sort_unstable();
        std::fs::create_dir_all(&self.dir).io("create directory", &self.dir)?;
        let path = self.dir.join(format!("run-{:05}.bin", self.runs.len()));
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path).io("create", &path)?);
        for e in &self.buf {
            w.write_all(&e.encode()).io("write", &path)?;
        }
        w.flush().io("write", &path)?;
        self.buf.clear();
        self.runs.push(path);
        Ok(())
    }

    /// All entries, in order.
    pub fn finish(mut self) -> Result<Sorted> {
        if self.runs.is_empty() {
            self.buf.sort_unstable();
            return Ok(Sorted::Memory(std::mem::take(&mut self.buf).into_iter()));
        }
        if !self.buf.is_empty() {
            self.spill()?;
        }
        let mut readers = Vec::with_capacity(self.runs.len());
        let mut heap = BinaryHeap::new();
        for (i, path) in self.runs.iter().enumerate() {
            let mut r = BufReader::with_capacity(256 * 1024, File::open(path).io("open", path)?);
            if let Some(e) = read_entry(&mut r, path)? {
                heap.push(Reverse((e, i)));
            }
            readers.push((r, path.clone()));
        }
        Ok(Sorted::Merge { readers, heap })
    }
}

fn read_entry(r: &mut impl Read, path: &Path) -> Result<Option<Entry>> {
    let mut b = [0u8; ENTRY_BYTES];
    match r.read_exact(&mut b) {
        Ok(()) => Ok(Some(Entry::decode(&b))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e).io("read", path),
    }
}

pub enum Sorted {
    Memory(std::vec::IntoIter<Entry>),
    Merge {
        readers: Vec<(BufReader<File>, PathBuf)>,
        heap: BinaryHeap<Reverse<(Entry, usize)>>,
    },
}

impl Sorted {
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        match self {
            Sorted::Memory(it) => Ok(it.next()),
            Sorted::Merge { readers, heap } => {
                let Some(Reverse((e, i))) = heap.pop() else {
                    return Ok(None);
                };
                let (r, path) = &mut readers[i];
                if let Some(next) = read_entry(r, path)? {
                    heap.push(Reverse((next, i)));
                }
                Ok(Some(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: u64) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry {
                ts_micros: ((i * 7919) % 101) as i64 - 5,
                file: (i % 3) as u32,
                offset: i * 10,
                len: 9,
                line_no: i + 1,
            })
            .collect()
    }

    #[test]
    fn spilled_and_in_memory_sorts_agree() {
        let dir = tempfile::tempdir().unwrap();
        let mut want = entries(1000);
        for chunk in [1, 7, 100, 5000] {
            let mut s = ExternalSorter::new(&dir.path().join(chunk.to_string()), chunk);
            for e in &want {
                s.push(*e).unwrap();
            }
            let mut sorted = s.finish().unwrap();
            let mut got = Vec::new();
            while let Some(e) = sorted.next_entry().unwrap() {
                got.push(e);
            }
            want.sort();
            assert_eq!(got, want, "chunk {chunk}");
        }
    }
}
