//! Avro's binary encoding, the little of it the hot derived records use, and its
//! single-object framing: two marker bytes and the 64-bit Rabin fingerprint of the
//! writer's schema (Parsing Canonical Form) before the datum, so a reader knows the
//! schema of any record it is given, and any Avro library can read it.
//! <https://avro.apache.org/docs/1.11.1/specification/#single-object-encoding>

/// The single-object marker.
const MARKER: [u8; 2] = [0xC3, 0x01];

/// The CRC-64-AVRO (Rabin) fingerprint of a schema's Parsing Canonical Form.
pub const fn fingerprint(canonical: &str) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    let bytes = canonical.as_bytes();
    let mut fp = EMPTY;
    let mut i = 0;
    while i < bytes.len() {
        fp = (fp >> 8) ^ TABLE[((fp ^ bytes[i] as u64) & 0xff) as usize];
        i += 1;
    }
    fp
}

const TABLE: [u64; 256] = {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            j += 1;
        }
        t[i] = fp;
        i += 1;
    }
    t
};

/// The ten bytes a single-object record of the schema starts with.
pub const fn header(canonical: &str) -> [u8; 10] {
    let fp = fingerprint(canonical).to_le_bytes();
    let mut h = [0u8; 10];
    h[0] = MARKER[0];
    h[1] = MARKER[1];
    let mut i = 0;
    while i < 8 {
        h[2 + i] = fp[i];
        i += 1;
    }
    h
}

/// Appends Avro binary values to a buffer.
pub struct AvroWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> AvroWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        AvroWriter { out }
    }

    /// `long` (and `int`): zig-zag, then a base-128 varint.
    #[inline]
    pub fn long(&mut self, v: i64) -> &mut Self {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            self.out.push((z as u8) | 0x80);
            z >>= 7;
        }
        self.out.push(z as u8);
        self
    }

    pub fn double(&mut self, v: f64) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn boolean(&mut self, v: bool) -> &mut Self {
        self.out.push(u8::from(v));
        self
    }

    pub fn string(&mut self, s: &str) -> &mut Self {
        self.long(s.len() as i64);
        self.out.extend_from_slice(s.as_bytes());
        self
    }

    /// A `["null", T]` union: branch 0 for none, 1 and the value for some.
    pub fn optional<T>(&mut self, v: Option<T>, write: impl FnOnce(&mut Self, T)) -> &mut Self {
        match v {
            None => {
                self.long(0);
            }
            Some(v) => {
                self.long(1);
                write(self, v);
            }
        }
        self
    }
}

/// Reads Avro binary values from a datum; `None` when the bytes end early or do not
/// hold what the schema says.
pub struct AvroReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> AvroReader<'a> {
    /// Reads `buf` from its first byte.
    pub fn new(buf: &'a [u8]) -> Self {
        AvroReader { buf, pos: 0 }
    }

    /// The datum after `header`, or `None` if `bytes` does not start with it.
    fn single_object(bytes: &'a [u8], header: &[u8; 10]) -> Option<Self> {
        bytes.strip_prefix(header.as_slice()).map(AvroReader::new)
    }

    /// The datum of a record of `header`'s schema; `Ok(None)` when `bytes` is not
    /// single-object encoded at all; `Err` with the fingerprint of another schema.
    pub fn of_schema(bytes: &'a [u8], header: &[u8; 10]) -> Result<Option<Self>, u64> {
        if let Some(r) = Self::single_object(bytes, header) {
            return Ok(Some(r));
        }
        match bytes {
            [m0, m1, fp @ ..] if [*m0, *m1] == MARKER && fp.len() >= 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&fp[..8]);
                Err(u64::from_le_bytes(b))
            }
            _ => Ok(None),
        }
    }

    pub fn long(&mut self) -> Option<i64> {
        let mut z: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return None;
            }
            z |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
    }

    pub fn int(&mut self) -> Option<i32> {
        self.long()?.try_into().ok()
    }

    pub fn double(&mut self) -> Option<f64> {
        let b = self.buf.get(self.pos..self.pos + 8)?;
        self.pos += 8;
        Some(f64::from_le_bytes(b.try_into().ok()?))
    }

    pub fn boolean(&mut self) -> Option<bool> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        match b {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    pub fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.string_bytes()?).ok()
    }

    /// A string's bytes, not yet checked for UTF-8.
    pub fn string_bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.long()?).ok()?;
        let b = self.buf.get(self.pos..self.pos.checked_add(len)?)?;
        self.pos += len;
        Some(b)
    }

    /// A `["null", T]` union.
    pub fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.long()? {
            0 => Some(None),
            1 => read(self).map(Some),
            _ => None,
        }
    }

    /// `Some` when every byte was read.
    pub fn end(&self) -> Option<()> {
        (self.pos == self.buf.len()).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_the_specs() {
        // Values from the Avro specification's test suite (CRC-64-AVRO).
        assert_eq!(fingerprint(r#""null""#) as i64, 7195948357588979594);
        assert_eq!(fingerprint(r#""boolean""#) as i64, -6970731678124411036);
        assert_eq!(
            fingerprint(r#"{"name":"foo","type":"fixed","size":15}"#) as i64,
            1756455273707447556
        );
    }

    #[test]
    fn longs_round_trip_at_every_width() {
        let mut out = Vec::new();
        let values = [
            0,
            -1,
            1,
            63,
            -64,
            64,
            300,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ];
        for v in values {
            AvroWriter::new(&mut out).long(v);
        }
        // Zig-zag: 0 -> 00, -1 -> 01, 1 -> 02, 63 -> 7e, -64 -> 7f, 64 -> 80 01.
        assert_eq!(&out[..7], &[0x00, 0x01, 0x02, 0x7e, 0x7f, 0x80, 0x01]);
        let mut framed = header("\"long\"").to_vec();
        framed.extend_from_slice(&out);
        let mut r = AvroReader::single_object(&framed, &header("\"long\"")).unwrap_or_else(|| {
            panic!("header");
        });
        for v in values {
            assert_eq!(r.long(), Some(v));
        }
        assert_eq!(r.end(), Some(()));
        assert_eq!(r.long(), None);
        // Eleven continuation bytes are not a long.
        let bad = [header("\"long\"").as_slice(), &[0xff; 11]].concat();
        let mut r = AvroReader::single_object(&bad, &header("\"long\"")).unwrap_or_else(|| {
            panic!("header");
        });
        assert_eq!(r.long(), None);
        assert!(AvroReader::single_object(&bad, &header("\"int\"")).is_none());
    }
}
