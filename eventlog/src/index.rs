//! The sparse offset index of a segment: one entry per few KiB of log, each the
//! offset of a batch (relative to the segment's base) and its byte position. It is a
//! hint, never the truth: a reader checks what it finds at the position, and the
//! writer rebuilds the active segment's index on open.

pub const ENTRY_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub relative_offset: u32,
    pub position: u64,
}

pub fn encode_entry(e: IndexEntry) -> [u8; ENTRY_LEN] {
    let mut out = [0u8; ENTRY_LEN];
    out[0..4].copy_from_slice(&e.relative_offset.to_le_bytes());
    out[4..12].copy_from_slice(&e.position.to_le_bytes());
    out
}

/// Decodes an index file's bytes, keeping only the leading entries that increase in
/// both offset and position (anything after a torn or garbled entry is dropped).
pub fn decode_index(bytes: &[u8]) -> Vec<IndexEntry> {
    let mut out: Vec<IndexEntry> = Vec::with_capacity(bytes.len() / ENTRY_LEN);
    for chunk in bytes.chunks_exact(ENTRY_LEN) {
        let mut o = [0u8; 4];
        o.copy_from_slice(&chunk[0..4]);
        let mut p = [0u8; 8];
        p.copy_from_slice(&chunk[4..12]);
        let e = IndexEntry {
            relative_offset: u32::from_le_bytes(o),
            position: u64::from_le_bytes(p),
        };
        if let Some(last) = out.last()
            && (e.relative_offset <= last.relative_offset || e.position <= last.position)
        {
            break;
        }
        out.push(e);
    }
    out
}

/// The last entry at or before `relative_offset`.
pub fn lookup(entries: &[IndexEntry], relative_offset: u32) -> Option<IndexEntry> {
    let i = entries.partition_point(|e| e.relative_offset <= relative_offset);
    i.checked_sub(1).map(|i| entries[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lookup() {
        let entries = [
            IndexEntry {
                relative_offset: 0,
                position: 0,
            },
            IndexEntry {
                relative_offset: 10,
                position: 4100,
            },
            IndexEntry {
                relative_offset: 25,
                position: 8300,
            },
        ];
        let bytes: Vec<u8> = entries.iter().flat_map(|e| encode_entry(*e)).collect();
        assert_eq!(decode_index(&bytes), entries);
        assert_eq!(lookup(&entries, 9).unwrap().position, 0);
        assert_eq!(lookup(&entries, 10).unwrap().position, 4100);
        assert_eq!(lookup(&entries, 1000).unwrap().position, 8300);
        // A torn last entry is ignored; a garbled one ends the index.
        assert_eq!(decode_index(&bytes[..bytes.len() - 3]).len(), 2);
        let mut garbled = bytes.clone();
        garbled[12..16].copy_from_slice(&[0, 0, 0, 0]);
        assert_eq!(decode_index(&garbled).len(), 1);
    }
}
