//! A batch of the embedded log's segment files. The first byte picks the mode: 0
//! decodes the bytes as they are (the checksum then stops almost everything); any
//! other value first rewrites the length and CRC32C fields to match the bytes, so
//! that the record decoder behind the checksum meets arbitrary bodies. Whatever
//! decodes re-encodes to a batch that decodes to the same records.
#![no_main]

use eventlog::codec::{BATCH_HEADER_LEN, decode_batch, decode_header, encode_batch, verify_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let mut bytes = bytes.to_vec();
    if mode != 0 && bytes.len() >= BATCH_HEADER_LEN {
        let length = (bytes.len() - 12) as u32;
        bytes[8..12].copy_from_slice(&length.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[0..8]), &bytes[BATCH_HEADER_LEN..]);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    }
    let _ = decode_header(&bytes);
    let _ = verify_batch(&bytes);
    if let Ok((header, records)) = decode_batch(&bytes) {
        let records: Vec<_> = records.into_iter().map(|(_, r)| r).collect();
        let mut again = Vec::new();
        encode_batch(header.base_offset, &records, &mut again);
        let (_, decoded) = decode_batch(&again).expect("a re-encoded batch decodes");
        let decoded: Vec<_> = decoded.into_iter().map(|(_, r)| r).collect();
        assert_eq!(decoded, records);
    }
});
