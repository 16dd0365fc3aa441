//! Reading JSON records the way the pipeline writes them (serde_json, compact, fields
//! in the order of their struct), field by field and without serde's machinery: the
//! hot JSON record `speed.daily_usage` is read this way by serving, and anything
//! else falls back to serde.

/// Reads a JSON object written the way the processor writes it (serde_json,
/// compact, fields in a known order), field by field. Anything else (an escape in a
/// string, another order, a number serde would not write) makes a read `None`, and
/// the caller falls back to serde.
pub struct Written<'a> {
    json: &'a [u8],
    at: usize,
}

impl<'a> Written<'a> {
    pub fn new(json: &'a [u8]) -> Self {
        Written { json, at: 0 }
    }

    /// Where the reader is: the length read so far.
    pub fn position(&self) -> usize {
        self.at
    }

    pub fn expect(&mut self, bytes: &[u8]) -> Option<()> {
        self.json.get(self.at..)?.starts_with(bytes).then_some(())?;
        self.at += bytes.len();
        Some(())
    }

    /// `{"name":` for the record's first field, `,"name":` for the others.
    pub fn field(&mut self, name: &str) -> Option<()> {
        self.expect(if self.at == 0 { b"{\"" } else { b",\"" })?;
        self.expect(name.as_bytes())?;
        self.expect(b"\":")
    }

    /// A string with nothing escaped in it, as its bytes.
    pub fn raw_text(&mut self) -> Option<&'a [u8]> {
        self.expect(b"\"")?;
        let start = self.at;
        let end = plain_text_end(self.json, start)?;
        (self.json[end] == b'"').then_some(())?;
        self.at = end + 1;
        Some(&self.json[start..end])
    }

    /// A string, its escapes (if any) read by serde.
    pub fn any_text(&mut self) -> Option<std::borrow::Cow<'a, str>> {
        let start = self.at;
        if let Some(t) = self.raw_text() {
            return std::str::from_utf8(t).ok().map(Into::into);
        }
        self.at = start;
        let rest = self.json.get(start..)?.strip_prefix(b"\"")?;
        let mut i = 0;
        while *rest.get(i)? != b'"' {
            i += if rest[i] == b'\\' { 2 } else { 1 };
        }
        let quoted = &self.json[start..start + i + 2];
        self.at = start + i + 2;
        serde_json::from_slice::<String>(quoted)
            .ok()
            .map(Into::into)
    }

    /// A number's text, up to the next `,` or `}`, if it is what JSON allows
    /// ([`number_end`]); `integer` allows no fraction, no exponent and no `-0` (serde
    /// reads those as floats).
    pub fn number(&mut self, integer: bool) -> Option<&'a [u8]> {
        let (end, float) = number_end(self.json, self.at)?;
        let tok = &self.json[self.at..end];
        if integer && (float || tok == b"-0") {
            return None;
        }
        matches!(self.json.get(end), Some(b',' | b'}')).then_some(())?;
        self.at = end;
        Some(tok)
    }

    /// An integer (see [`Written::number`]), if it fits an i64.
    pub fn integer(&mut self) -> Option<i64> {
        decimal_i64(self.number(true)?)
    }

    /// A double (see [`Written::number`]), read by Rust's own parser, correctly
    /// rounded as serde's (`float_roundtrip`) is, so the two give the same bits. Out
    /// of range is `None` (serde's error), not an infinity.
    pub fn double(&mut self) -> Option<f64> {
        finite_f64(self.number(false)?)
    }

    /// The end of the record: its last `}`, and nothing after it.
    pub fn end(&mut self) -> Option<()> {
        (self.json.get(self.at..)? == b"}").then_some(())
    }
}

/// A decimal integer's ASCII bytes (an optional sign, then digits), as `str::parse`
/// reads them, without a UTF-8 check first: a JSON integer token, a log header's
/// line number.
pub(crate) fn decimal_i64(b: &[u8]) -> Option<i64> {
    let (negative, digits) = match b {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, b),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        v = v.checked_mul(10)?;
        v = if negative {
            v.checked_sub(d)?
        } else {
            v.checked_add(d)?
        };
    }
    Some(v)
}

/// A JSON number token's value as `str::parse::<f64>` reads it (correctly rounded),
/// if finite. A short decimal (`-12.3456`: at most 15 digits, no exponent, the
/// common case) is read directly: its digits as an integer, exactly a double below
/// 2^53, divided by an exact power of ten, one correctly rounded operation, so the
/// same bits as the full parser (Clinger's fast path, which the full parser also
/// takes). Anything else goes to `str::parse`.
pub(crate) fn finite_f64(tok: &[u8]) -> Option<f64> {
    if let Some(v) = short_decimal(tok) {
        return Some(v);
    }
    let v: f64 = std::str::from_utf8(tok).ok()?.parse().ok()?;
    v.is_finite().then_some(v)
}

fn short_decimal(tok: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (negative, body) = match tok {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, tok),
    };
    if body.is_empty() || body.len() > 16 {
        return None;
    }
    let (mut m, mut digits, mut fraction) = (0u64, 0usize, None::<usize>);
    for (i, &c) in body.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                m = m * 10 + u64::from(c - b'0');
                digits += 1;
            }
            b'.' if fraction.is_none() && i > 0 => fraction = Some(i + 1),
            _ => return None,
        }
    }
    // At most 15 digits: m < 10^15 < 2^53, exact as a double.
    let scale = fraction.map_or(0, |f| body.len() - f);
    if digits == 0 || digits > 15 || fraction == Some(body.len()) {
        return None;
    }
    let v = m as f64 / POW10[scale];
    Some(if negative { -v } else { v })
}

/// The index of the first `"`, `\\` or control character in `b` from `i` on (where a
/// JSON string without escapes ends, or is found to have one), eight bytes at a time.
pub fn plain_text_end(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `w` below `n` (exact for the lowest such byte, the
    // one wanted; bytes of 0x80 and above never count).
    let below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGH;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        let hits = below(w, 0x20) | below(w ^ (ONES * 0x22), 1) | below(w ^ (ONES * 0x5c), 1);
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|k| i + k)
}

/// Where the JSON number starting at `b[i]` ends, if it is what JSON allows
/// (`-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`, and no digit right after), and
/// whether it has a fraction or an exponent.
pub fn number_end(b: &[u8], i: usize) -> Option<(usize, bool)> {
    let digits = |mut j: usize| {
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        j
    };
    let mut j = i + usize::from(b.get(i) == Some(&b'-'));
    match *b.get(j)? {
        b'0' => j += 1,
        b'1'..=b'9' => j = digits(j),
        _ => return None,
    }
    let mut float = false;
    if b.get(j) == Some(&b'.') {
        let k = digits(j + 1);
        if k == j + 1 {
            return None;
        }
        (j, float) = (k, true);
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        j += 1 + usize::from(matches!(b.get(j + 1), Some(b'+' | b'-')));
        let k = digits(j);
        if k == j {
            return None;
        }
        (j, float) = (k, true);
    }
    (!b.get(j).is_some_and(u8::is_ascii_digit)).then_some((j, float))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn same_double(tok: &str) {
        let std = tok.parse::<f64>().ok().filter(|v| v.is_finite());
        let ours = finite_f64(tok.as_bytes());
        assert_eq!(ours.map(f64::to_bits), std.map(f64::to_bits), "{tok}");
    }

    #[test]
    fn doubles_are_read_as_str_parse_reads_them() {
        for tok in [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "0.9561",
            "5.6521",
            "-12.25",
            "1",
            "00.5",
            "1.",
            ".5",
            "-",
            "",
            "1e3",
            "1.5E-3",
            "-2e308",
            "1e309",
            "123456789012345",
            "1234567890123456",
            "0.000000000000001",
            "0.1234567890123456",
            "999999999999999.9",
            "9007199254740993",
            "1.7976931348623157e308",
            "1..2",
            "1.2.3",
            "-.5",
            "--1",
            "+1",
            "0x10",
            "inf",
            "NaN",
        ] {
            same_double(tok);
        }
    }

    proptest! {
        #[test]
        fn short_decimals_are_read_as_str_parse_reads_them(
            negative in any::<bool>(), int in 0u64..10_000_000_000, frac in 0u64..1_000_000_000,
            frac_digits in 0usize..10,
        ) {
            let sign = if negative { "-" } else { "" };
            let tok = if frac_digits == 0 {
                format!("{sign}{int}")
            } else {
                format!("{sign}{int}.{:0width$}", frac % 10u64.pow(frac_digits as u32), width = frac_digits)
            };
            same_double(&tok);
        }

        #[test]
        fn any_number_text_is_read_as_str_parse_reads_it(tok in "-?[0-9]{0,17}(\\.[0-9]{0,17})?") {
            same_double(&tok);
        }
    }

    #[test]
    fn line_numbers_are_read_as_str_parse_reads_them() {
        let same = |b: &[u8]| {
            let std = std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse::<i64>().ok());
            assert_eq!(decimal_i64(b), std, "{:?}", String::from_utf8_lossy(b));
        };
        for s in [
            "",
            "-",
            "+",
            "0",
            "-0",
            "+5",
            "-5",
            "123",
            "007",
            "1a",
            " 1",
            "1 ",
            "--1",
            "+-1",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
            "\u{661}",
        ] {
            same(s.as_bytes());
        }
        same(b"\xff1");
        proptest::proptest!(|(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24),
                              n in proptest::prelude::any::<i64>())| {
            same(&b);
            same(n.to_string().as_bytes());
        });
    }

    proptest! {
        /// The eight-bytes-at-a-time scan finds what a byte-by-byte one finds.
        #[test]
        fn plain_text_ends_where_one_by_one_finds(
            bytes in proptest::collection::vec(
                prop_oneof![4 => 0x20u8..0x7f, 1 => any::<u8>(), 1 => Just(b'"')],
                0..40,
            ),
            from in 0usize..12,
        ) {
            let naive = bytes
                .get(from..)
                .and_then(|t| t.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20))
                .map(|k| from + k);
            prop_assert_eq!(plain_text_end(&bytes, from), naive);
        }
    }
}
