//! The on-disk framing of a record batch. Pure functions over bytes, so that the
//! decoder can be fuzzed and property-tested without files.
//!
//! ```text
//! batch  := base_offset:u64 length:u32 crc:u32 body
//!           (length = bytes after the length field = 4 + body.len();
//!            crc = CRC32C of body)
//! body   := count:u32 record{count}
//! record := timestamp_ms:i64 key_len:i32 (-1 = no key) key value_len:u32 value
//!           header_count:u16 (name_len:u16 name value_len:u32 value){header_count}
//! ```
//! All integers are little-endian.

use std::borrow::Cow;

use bytes::Bytes;

use crate::{HeaderName, Record};

/// Header names the pipeline writes on every record, decoded without allocating.
pub const KNOWN_HEADERS: [&str; 2] = ["source_file", "line_no"];

pub(crate) fn header_name(name: &str) -> HeaderName {
    match known_header(name.as_bytes()) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(name.to_owned()),
    }
}

/// [`header_name`] of a name given as bytes: a known name is found by its bytes, so
/// only another name is checked for UTF-8 (`None` when it is not).
fn header_name_bytes(name: &[u8]) -> Option<HeaderName> {
    match known_header(name) {
        Some(k) => Some(Cow::Borrowed(k)),
        None => std::str::from_utf8(name)
            .ok()
            .map(|s| Cow::Owned(s.to_owned())),
    }
}

fn known_header(name: &[u8]) -> Option<&'static str> {
    KNOWN_HEADERS.iter().copied().find(|k| k.as_bytes() == name)
}

pub const BATCH_HEADER_LEN: usize = 16;
/// Upper bound of one batch, so a corrupt length cannot make a reader allocate wildly.
pub const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;

/// What is known from a batch's first 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: u64,
    /// Total bytes of the batch on disk, header included.
    pub total_len: usize,
    pub crc: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or the length announce: the batch may still be being
    /// written, or the tail was torn.
    Incomplete,
    /// The bytes are all there but do not form a valid batch.
    Corrupt(&'static str),
}

/// The bytes one record takes in a batch.
fn record_len(r: &Record) -> usize {
    18 + r.key.as_ref().map_or(0, |k| k.len())
        + r.value.len()
        + r.headers
            .iter()
            .map(|(n, v)| 6 + n.len() + v.len())
            .sum::<usize>()
}

/// How many of `records`, from the first, make a batch of at most `max_bytes`, and
/// the bytes [`encode_batch`] writes for them: at least one record, however large.
pub fn batch_prefix(records: &[Record], max_bytes: usize) -> (usize, usize) {
    let mut bytes = BATCH_HEADER_LEN + 4;
    let mut n = 0;
    for r in records {
        let len = record_len(r);
        if bytes + len > max_bytes && n > 0 {
            break;
        }
        bytes += len;
        n += 1;
    }
    (n, bytes)
}

/// Appends the batch of `records` to `out`. The caller reserves its size
/// ([`batch_prefix`] gives it) where it matters: growing the buffer record by record
/// copies it again at each doubling.
pub fn encode_batch(base_offset: u64, records: &[Record], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&base_offset.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // length and crc, filled below
    let body_start = out.len();
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        out.extend_from_slice(&r.timestamp_ms.to_le_bytes());
        match &r.key {
            Some(k) => {
                out.extend_from_slice(&(k.len() as i32).to_le_bytes());
                out.extend_from_slice(k);
            }
            None => out.extend_from_slice(&(-1i32).to_le_bytes()),
        }
        out.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.value);
        out.extend_from_slice(&(r.headers.len() as u16).to_le_bytes());
        for (name, value) in &r.headers {
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 8]), &out[body_start..]);
    let length = (out.len() - body_start + 4) as u32;
    out[start + 8..start + 12].copy_from_slice(&length.to_le_bytes());
    out[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
}

pub fn decode_header(bytes: &[u8]) -> Result<BatchHeader, DecodeError> {
    if bytes.len() < BATCH_HEADER_LEN {
        return Err(DecodeError::Incomplete);
    }
    let base_offset = u64::from_le_bytes(arr(&bytes[0..8]));
    let length = u32::from_le_bytes(arr(&bytes[8..12])) as usize;
    let crc = u32::from_le_bytes(arr(&bytes[12..16]));
    if length < 8 {
        return Err(DecodeError::Corrupt("batch length below minimum"));
    }
    if length > MAX_BATCH_BYTES {
        return Err(DecodeError::Corrupt("batch length above maximum"));
    }
    Ok(BatchHeader {
        base_offset,
        total_len: 12 + length,
        crc,
    })
}

/// Checks the CRC and returns the record count, without decoding the records.
pub fn verify_batch(bytes: &[u8]) -> Result<(BatchHeader, u32), DecodeError> {
    let header = decode_header(bytes)?;
    if bytes.len() < header.total_len {
        return Err(DecodeError::Incomplete);
    }
    let body = &bytes[BATCH_HEADER_LEN..header.total_len];
    if crc32c::crc32c_append(crc32c::crc32c(&bytes[0..8]), body) != header.crc {
        return Err(DecodeError::Corrupt("checksum mismatch"));
    }
    let count = u32::from_le_bytes(arr(&body[0..4]));
    Ok((header, count))
}

/// Decodes one whole batch (CRC checked) into `(offset, record)` pairs.
pub fn decode_batch(bytes: &[u8]) -> Result<(BatchHeader, Vec<(u64, Record)>), DecodeError> {
    let (header, count) = verify_batch(bytes)?;
    decode_records(
        Bytes::copy_from_slice(&bytes[..header.total_len]),
        header,
        count,
    )
}

/// Decodes the records of a batch already verified by [`verify_batch`]; the records'
/// bytes are slices of `batch`, not copies.
pub fn decode_records(
    batch: Bytes,
    header: BatchHeader,
    count: u32,
) -> Result<(BatchHeader, Vec<(u64, Record)>), DecodeError> {
    if batch.len() < header.total_len {
        return Err(DecodeError::Incomplete);
    }
    let mut cur = Cursor {
        buf: &batch[BATCH_HEADER_LEN + 4..header.total_len],
        pos: BATCH_HEADER_LEN + 4,
    };
    let slice = |r: std::ops::Range<usize>| batch.slice(r);
    // Every record takes at least 18 bytes: a count beyond that is a lie.
    if count as usize > cur.buf.len() / 18 + 1 {
        return Err(DecodeError::Corrupt("record count exceeds batch size"));
    }
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..u64::from(count) {
        let timestamp_ms = i64::from_le_bytes(arr(cur.take(8)?));
        let key_len = i32::from_le_bytes(arr(cur.take(4)?));
        let key = match key_len {
            -1 => None,
            n if n >= 0 => Some(slice(cur.take_range(n as usize)?)),
            _ => return Err(DecodeError::Corrupt("negative key length")),
        };
        let value_len = u32::from_le_bytes(arr(cur.take(4)?)) as usize;
        let value = slice(cur.take_range(value_len)?);
        let header_count = u16::from_le_bytes(arr(cur.take(2)?));
        let mut headers = Vec::with_capacity(usize::from(header_count).min(64));
        for _ in 0..header_count {
            let name_len = u16::from_le_bytes(arr(cur.take(2)?)) as usize;
            let name = header_name_bytes(cur.take(name_len)?)
                .ok_or(DecodeError::Corrupt("header name is not UTF-8"))?;
            let vlen = u32::from_le_bytes(arr(cur.take(4)?)) as usize;
            headers.push((name, slice(cur.take_range(vlen)?)));
        }
        let offset = header
            .base_offset
            .checked_add(i)
            .ok_or(DecodeError::Corrupt("offset overflow"))?;
        out.push((
            offset,
            Record {
                key,
                value,
                headers,
                timestamp_ms,
            },
        ));
    }
    if !cur.buf.is_empty() {
        return Err(DecodeError::Corrupt("trailing bytes after the last record"));
    }
    Ok((header, out))
}

struct Cursor<'a> {
    buf: &'a [u8],
    /// Position of `buf[0]` in the whole batch.
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Corrupt("field runs past the end of the batch"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        self.pos += n;
        Ok(head)
    }

    fn take_range(&mut self, n: usize) -> Result<std::ops::Range<usize>, DecodeError> {
        let start = self.pos;
        self.take(n)?;
        Ok(start..start + n)
    }
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_matched_on_their_bytes() {
        for k in KNOWN_HEADERS {
            assert!(matches!(header_name_bytes(k.as_bytes()), Some(Cow::Borrowed(b)) if b == k));
            assert!(matches!(header_name(k), Cow::Borrowed(b) if b == k));
        }
        assert_eq!(
            header_name_bytes("trace_é".as_bytes()),
            Some(Cow::Owned("trace_é".to_owned()))
        );
        assert_eq!(header_name_bytes(b"\xc3("), None);
    }

    fn rec(v: &str) -> Record {
        Record {
            key: Some(Bytes::from_static(b"k")),
            value: Bytes::copy_from_slice(v.as_bytes()),
            headers: vec![("source_file".into(), Bytes::from_static(b"a.jsonl"))],
            timestamp_ms: 42,
        }
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        let records = vec![rec("a"), Record::new(None::<Bytes>, b"b".to_vec())];
        encode_batch(7, &records, &mut buf);
        let (h, out) = decode_batch(&buf).unwrap();
        assert_eq!(h.base_offset, 7);
        assert_eq!(h.total_len, buf.len());
        assert_eq!(out[0], (7, records[0].clone()));
        assert_eq!(out[1], (8, records[1].clone()));
        assert_eq!(
            batch_prefix(&records, usize::MAX),
            (records.len(), buf.len()),
            "the reservation is exact"
        );
    }

    #[test]
    fn every_prefix_is_incomplete_and_every_flip_is_detected() {
        let mut buf = Vec::new();
        encode_batch(0, &[rec("hello"), rec("world")], &mut buf);
        for n in 0..buf.len() {
            assert!(decode_batch(&buf[..n]).is_err(), "prefix {n}");
        }
        for i in 0..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x01;
            assert!(decode_batch(&b).is_err(), "flip at {i} undetected");
        }
    }
}
