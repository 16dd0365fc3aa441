//! Reading JSON records the way the pipeline writes them (serde_json, compact, fields
//! in the order of their struct), field by field and without serde's machinery: the
//! hot JSON records (`speed.daily_usage` for serving, and `silver.usage_events` as
//! processors before the Avro records wrote them, for the compactor) are read this
//! way, and anything else falls back to serde.

/// Reads a JSON object written the way the processor writes it (serde_json,
/// compact, fields in a known order), field by field. Anything else (an escape in a
/// string, another order, a number serde would not write) makes a read `None`, and
/// the caller falls back to serde.
pub struct Written<'a> {
    json: &'a [u8],
    at: usize,
    /// Just inside an object entered with [`Written::object`]: its first field comes
    /// without a comma.
    first: bool,
}

impl<'a> Written<'a> {
    pub fn new(json: &'a [u8]) -> Self {
        Written {
            json,
            at: 0,
            first: false,
        }
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

    /// `{"name":` for the record's first field, `"name":` for the first field of an
    /// object entered with [`Written::object`], `,"name":` for the others.
    pub fn field(&mut self, name: &str) -> Option<()> {
        let sep: &[u8] = match (self.at, self.first) {
            (0, _) => b"{\"",
            (_, true) => b"\"",
            _ => b",\"",
        };
        self.first = false;
        self.expect(sep)?;
        self.expect(name.as_bytes())?;
        self.expect(b"\":")
    }

    /// A field whose value is an object, entered: its fields come next, then
    /// [`Written::close`].
    pub fn object(&mut self, name: &str) -> Option<()> {
        self.field(name)?;
        self.expect(b"{")?;
        self.first = true;
        Some(())
    }

    /// The end of an object entered with [`Written::object`].
    pub fn close(&mut self) -> Option<()> {
        self.first = false;
        self.expect(b"}")
    }

    /// `null` (consumed) or not (nothing consumed).
    fn null(&mut self) -> bool {
        self.expect(b"null").is_some()
    }

    pub fn boolean(&mut self) -> Option<bool> {
        if self.expect(b"true").is_some() {
            Some(true)
        } else {
            self.expect(b"false").map(|()| false)
        }
    }

    /// A string or null.
    pub fn opt_text(&mut self) -> Option<Option<std::borrow::Cow<'a, str>>> {
        if self.null() {
            return Some(None);
        }
        self.any_text().map(Some)
    }

    /// An integer or null.
    pub fn opt_integer(&mut self) -> Option<Option<i64>> {
        if self.null() {
            return Some(None);
        }
        self.integer().map(Some)
    }

    /// A double or null.
    pub fn opt_double(&mut self) -> Option<Option<f64>> {
        if self.null() {
            return Some(None);
        }
        self.double().map(Some)
    }

    /// A string with nothing escaped in it, as its bytes.
    pub fn raw_text(&mut self) -> Option<&'a [u8]> {
        self.expect(b"\"")?;
        let rest = &self.json[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        (rest[end] == b'"').then_some(())?;
        self.at += end + 1;
        Some(&rest[..end])
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

    /// A number's text, up to the next `,` or `}`, if it is what JSON allows:
    /// `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`; `integer` allows no fraction,
    /// no exponent and no `-0` (serde reads those as floats).
    pub fn number(&mut self, integer: bool) -> Option<&'a [u8]> {
        let rest = &self.json[self.at..];
        let digits = |mut i: usize| {
            while rest.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let start = usize::from(rest.first() == Some(&b'-'));
        let mut i = digits(start);
        let int = i - start;
        if int == 0 || (int > 1 && rest[start] == b'0') {
            return None;
        }
        if integer {
            if start == 1 && rest[1] == b'0' {
                return None;
            }
        } else {
            if rest.get(i) == Some(&b'.') {
                let end = digits(i + 1);
                (end > i + 1).then_some(())?;
                i = end;
            }
            if matches!(rest.get(i), Some(b'e' | b'E')) {
                i += 1 + usize::from(matches!(rest.get(i + 1), Some(b'+' | b'-')));
                let end = digits(i);
                (end > i).then_some(())?;
                i = end;
            }
        }
        matches!(rest.get(i), Some(b',' | b'}')).then_some(())?;
        self.at += i;
        Some(&rest[..i])
    }

    /// An integer (see [`Written::number`]), if it fits an i64.
    pub fn integer(&mut self) -> Option<i64> {
        let tok = self.number(true)?;
        let (neg, digits) = match tok.strip_prefix(b"-") {
            Some(d) => (true, d),
            None => (false, tok),
        };
        // Summed negative, so that i64::MIN fits.
        let mut v: i64 = 0;
        for &d in digits {
            v = v.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
        }
        if neg { Some(v) } else { v.checked_neg() }
    }

    /// A double (see [`Written::number`]), read by Rust's own parser, correctly
    /// rounded as serde's (`float_roundtrip`) is, so the two give the same bits. Out
    /// of range is `None` (serde's error), not an infinity.
    pub fn double(&mut self) -> Option<f64> {
        let v: f64 = std::str::from_utf8(self.number(false)?)
            .ok()?
            .parse()
            .ok()?;
        v.is_finite().then_some(v)
    }

    /// The end of the record: its last `}`, and nothing after it.
    pub fn end(&mut self) -> Option<()> {
        (self.json.get(self.at..)? == b"}").then_some(())
    }
}
