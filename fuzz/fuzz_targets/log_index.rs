//! A segment's index file, and lookups in what it decodes to.
#![no_main]

use eventlog::index::{decode_index, lookup};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let entries = decode_index(bytes);
    for probe in [0u32, 1, u32::MAX / 2, u32::MAX] {
        let _ = lookup(&entries, probe);
    }
    if let Some(e) = entries.first() {
        let _ = lookup(&entries, e.relative_offset);
    }
});
