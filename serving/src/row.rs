//! Typed rows of the serving tables: one [`Cell`] per column, in the table's column
//! order ([`TableDef::columns`]). A publish builds them straight from the marts'
//! Arrow columns and from the real-time records, and each backend writes them as it
//! stores them: the embedded store as a key and binary cells ([`encode_row`]),
//! Cassandra as bound values of a prepared statement. Queries read rows back as JSON
//! maps.

use std::path::Path;

use anyhow::{Context, Result, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde_json::Value;

use crate::{Cql, JsonRow, TableDef};

/// One value, typed as its column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    /// Days since 1970-01-01.
    Date(i32),
    Double(f64),
    Bigint(i64),
    Int(i32),
    Boolean(bool),
}

/// A row of one serving table: a cell per column, in [`TableDef::columns`] order
/// (the keys first: the partition columns, then the clustering columns).
pub type Row = Vec<Cell>;

impl Cell {
    /// A JSON value as a column's type (`null` is [`Cell::Null`]).
    pub fn from_json(ty: Cql, v: &Value) -> Result<Cell> {
        let bad = || anyhow::anyhow!("{v} is not a {}", ty.name());
        Ok(match (ty, v) {
            (_, Value::Null) => Cell::Null,
            (Cql::Text, Value::String(s)) => Cell::Text(s.clone()),
            (Cql::Date, Value::String(s)) => Cell::Date(
                schemas::time::parse_date(s)
                    .map(schemas::time::date_to_days)
                    .ok_or_else(bad)?,
            ),
            (Cql::Double, Value::Number(n)) => Cell::Double(n.as_f64().ok_or_else(bad)?),
            (Cql::Bigint, Value::Number(n)) => Cell::Bigint(n.as_i64().ok_or_else(bad)?),
            (Cql::Int, Value::Number(n)) => Cell::Int(
                n.as_i64()
                    .and_then(|i| i32::try_from(i).ok())
                    .ok_or_else(bad)?,
            ),
            (Cql::Boolean, Value::Bool(b)) => Cell::Boolean(*b),
            _ => return Err(bad()),
        })
    }

    /// A value given as text (a Hive partition's, a key a query names) as a
    /// column's type.
    pub fn from_text(ty: Cql, s: &str) -> Result<Cell> {
        let bad = || anyhow::anyhow!("{s:?} is not a {}", ty.name());
        Ok(match ty {
            Cql::Text => Cell::Text(s.to_owned()),
            Cql::Date => Cell::Date(
                schemas::time::parse_date(s)
                    .map(schemas::time::date_to_days)
                    .ok_or_else(bad)?,
            ),
            Cql::Double => Cell::Double(s.parse().map_err(|_| bad())?),
            Cql::Bigint => Cell::Bigint(s.parse().map_err(|_| bad())?),
            Cql::Int => Cell::Int(s.parse().map_err(|_| bad())?),
            Cql::Boolean => Cell::Boolean(s.parse().map_err(|_| bad())?),
        })
    }

    /// The value as the JSON the queries work with (dates as `YYYY-MM-DD`; a
    /// non-finite double is null, as in JSON).
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Text(s) => Value::from(s.as_str()),
            Cell::Date(d) => Value::from(date_text(*d)),
            Cell::Double(v) => Value::from(*v),
            Cell::Bigint(v) => Value::from(*v),
            Cell::Int(v) => Value::from(*v),
            Cell::Boolean(v) => Value::from(*v),
        }
    }

    /// Appends the value as a key's text: what [`crate::key_text`] gives for its JSON
    /// (dates `YYYY-MM-DD`, which sort as dates do; null empty).
    pub fn push_key_text(&self, out: &mut Vec<u8>) {
        match self {
            Cell::Text(s) => out.extend_from_slice(s.as_bytes()),
            Cell::Date(d) => schemas::time::push_date(*d, out),
            // A number or a boolean as JSON writes it (a non-finite double: null,
            // empty).
            other => match other.to_json() {
                Value::Null => {}
                v => out.extend_from_slice(v.to_string().as_bytes()),
            },
        }
    }

    /// The value as a key's text.
    pub fn key_text(&self) -> String {
        let mut out = Vec::new();
        self.push_key_text(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// A day number as `YYYY-MM-DD` (empty if it is no date).
pub fn date_text(days: i32) -> String {
    schemas::time::date_text(days)
}

impl TableDef {
    /// The position of a column in [`TableDef::columns`].
    pub fn index(&self, column: &str) -> Option<usize> {
        self.columns().position(|(c, _)| *c == column)
    }
}

/// A JSON row as the table's typed row. A key column must be present and not null;
/// a missing other column is null.
pub fn row_from_json(t: &TableDef, row: &JsonRow) -> Result<Row> {
    t.columns()
        .enumerate()
        .map(|(i, (c, ty))| {
            let v = row.get(*c).unwrap_or(&Value::Null);
            if v.is_null() && i < t.keys.len() {
                bail!("{}: key column {c} is null", t.name);
            }
            Cell::from_json(*ty, v).with_context(|| format!("{}.{c}", t.name))
        })
        .collect()
}

/// A typed row as the JSON map the queries read.
pub fn row_to_json(t: &TableDef, row: &[Cell]) -> JsonRow {
    t.columns()
        .zip(row)
        .map(|((c, _), v)| ((*c).to_owned(), v.to_json()))
        .collect()
}

/// The first byte of a row in [`encode_row`]'s form (a JSON object starts with `{`).
pub const BINARY_ROW: u8 = 1;

/// Appends a row in the embedded store's binary form: [`BINARY_ROW`], the number of
/// cells (u16), then each cell as a tag byte and its value in little-endian (text
/// as a u32 length and its bytes). Exact (a double keeps every bit) and several
/// times cheaper to write and read than JSON.
pub fn encode_row(row: &[Cell], out: &mut Vec<u8>) {
    out.push(BINARY_ROW);
    out.extend_from_slice(&(row.len() as u16).to_le_bytes());
    for c in row {
        match c {
            Cell::Null => out.push(0),
            Cell::Text(s) => {
                out.push(1);
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Cell::Date(d) => {
                out.push(2);
                out.extend_from_slice(&d.to_le_bytes());
            }
            Cell::Double(v) => {
                out.push(3);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Cell::Bigint(v) => {
                out.push(4);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Cell::Int(v) => {
                out.push(5);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Cell::Boolean(v) => out.push(6 + u8::from(*v)),
        }
    }
}

/// Reads a row [`encode_row`] wrote; an error (never a panic) for anything else.
pub fn decode_row(bytes: &[u8]) -> Result<Row> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
        if b.len() < n {
            bail!("a row cut short");
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    fn fixed<const N: usize>(b: &mut &[u8]) -> Result<[u8; N]> {
        let mut a = [0; N];
        a.copy_from_slice(take(b, N)?);
        Ok(a)
    }
    let mut b = bytes;
    if fixed::<1>(&mut b)? != [BINARY_ROW] {
        bail!("not a binary row");
    }
    let n = u16::from_le_bytes(fixed(&mut b)?);
    let mut row = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        row.push(match fixed::<1>(&mut b)?[0] {
            0 => Cell::Null,
            1 => {
                let len = u32::from_le_bytes(fixed(&mut b)?) as usize;
                let text = std::str::from_utf8(take(&mut b, len)?).context("a row's text")?;
                Cell::Text(text.to_owned())
            }
            2 => Cell::Date(i32::from_le_bytes(fixed(&mut b)?)),
            3 => Cell::Double(f64::from_le_bytes(fixed(&mut b)?)),
            4 => Cell::Bigint(i64::from_le_bytes(fixed(&mut b)?)),
            5 => Cell::Int(i32::from_le_bytes(fixed(&mut b)?)),
            6 => Cell::Boolean(false),
            7 => Cell::Boolean(true),
            tag => bail!("a row's cell of unknown kind {tag}"),
        });
    }
    if !b.is_empty() {
        bail!("{} bytes after a row's last cell", b.len());
    }
    Ok(row)
}

/// The rows of one table from every Parquet file under `dir` (a mart's directory,
/// with Hive partition directories `name=value` giving columns the files lack),
/// column by column. A column the table has and the files lack is null, unless it
/// is a key.
pub fn rows_from_parquet(t: &TableDef, dir: &Path) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for path in compactor::table::parquet_files(dir)? {
        let hive: Vec<(&str, &str)> = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .components()
            .filter_map(|c| c.as_os_str().to_str()?.split_once('='))
            .collect();
        for b in compactor::table::read_parquet(&path, None)? {
            rows_from_batch(t, &b, &hive, &mut out)
                .with_context(|| format!("{}", path.display()))?;
        }
    }
    Ok(out)
}

/// Appends the rows of one record batch.
pub fn rows_from_batch(
    t: &TableDef,
    b: &RecordBatch,
    hive: &[(&str, &str)],
    out: &mut Vec<Row>,
) -> Result<()> {
    let n = b.num_rows();
    let start = out.len();
    out.extend((0..n).map(|_| Vec::with_capacity(t.keys.len() + t.values.len())));
    let rows = &mut out[start..];
    for (i, (c, ty)) in t.columns().enumerate() {
        let is_key = i < t.keys.len();
        let Some(a) = b.column_by_name(c) else {
            let cell = match hive.iter().find(|(k, _)| k == c) {
                Some((_, v)) => Cell::from_text(*ty, v).with_context(|| format!("column {c}"))?,
                None if is_key => bail!("no key column {c} for {}", t.name),
                None => Cell::Null,
            };
            rows.iter_mut().for_each(|r| r.push(cell.clone()));
            continue;
        };
        if is_key && a.null_count() > 0 {
            bail!("key column {c} of {} has nulls", t.name);
        }
        let cell_at: Box<dyn Fn(usize) -> Cell + '_> = match (ty, a.data_type()) {
            (Cql::Text, DataType::Utf8) => {
                let a = a.as_string::<i32>();
                Box::new(move |i| Cell::Text(a.value(i).to_owned()))
            }
            (Cql::Date, DataType::Date32) => {
                let a = a.as_primitive::<Date32Type>();
                Box::new(move |i| Cell::Date(a.value(i)))
            }
            (Cql::Double, DataType::Float64) => {
                let a = a.as_primitive::<Float64Type>();
                Box::new(move |i| Cell::Double(a.value(i)))
            }
            (Cql::Bigint, DataType::Int64) => {
                let a = a.as_primitive::<Int64Type>();
                Box::new(move |i| Cell::Bigint(a.value(i)))
            }
            (Cql::Bigint, DataType::Int32) => {
                let a = a.as_primitive::<Int32Type>();
                Box::new(move |i| Cell::Bigint(a.value(i).into()))
            }
            (Cql::Int, DataType::Int32) => {
                let a = a.as_primitive::<Int32Type>();
                Box::new(move |i| Cell::Int(a.value(i)))
            }
            (Cql::Boolean, DataType::Boolean) => {
                let a = a.as_boolean();
                Box::new(move |i| Cell::Boolean(a.value(i)))
            }
            (ty, other) => bail!("column {c}: {other} does not fit a CQL {}", ty.name()),
        };
        for (j, r) in rows.iter_mut().enumerate() {
            r.push(if a.is_null(j) { Cell::Null } else { cell_at(j) });
        }
    }
    Ok(())
}

/// A row of `tickets_by_severity_date` as JSON, for tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn ticket_json() -> JsonRow {
    serde_json::from_value(serde_json::json!({
        "severity": "critical", "created_date": "2025-07-02", "tickets": 5,
        "open_tickets": 2, "sla_breached": 1, "sla_breach_rate": 0.2,
        "csat_avg": null, "csat_responses": 0
    }))
    .unwrap()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{DAILY, REVENUE_ALL, TICKETS};
    use serde_json::json;

    #[test]
    fn key_text_is_the_text_of_the_json_value() {
        let cells = [
            Cell::Null,
            Cell::Text("plain".into()),
            Cell::Text("a \"quoted\"\\ \n name, ünïcode".into()),
            Cell::Date(0),
            Cell::Date(20_271),
            Cell::Date(-800_000),
            Cell::Double(0.1),
            Cell::Double(-3.0e-12),
            Cell::Double(f64::NAN),
            Cell::Double(f64::INFINITY),
            Cell::Bigint(i64::MIN),
            Cell::Int(-7),
            Cell::Boolean(true),
        ];
        for c in cells {
            let mut key = Vec::new();
            c.push_key_text(&mut key);
            assert_eq!(
                String::from_utf8(key).unwrap(),
                crate::key_text(Some(&c.to_json())),
                "{c:?}"
            );
        }
        assert_eq!(date_text(20_271), "2025-07-02");
        assert_eq!(date_text(-719_529), "-0001-12-31");
        assert_eq!(date_text(i32::MAX), "");
    }

    #[test]
    fn json_rows_and_typed_rows_round_trip() {
        let row = ticket_json();
        let v = row_from_json(&TICKETS, &row).unwrap();
        assert_eq!(v[0], Cell::Text("critical".into()));
        assert_eq!(v[1], Cell::Date(20_271));
        assert_eq!(v[2], Cell::Bigint(5));
        assert_eq!(v[5], Cell::Double(0.2));
        assert_eq!(v[6], Cell::Null);
        assert_eq!(row_to_json(&TICKETS, &v), row);
        let mut bad = row.clone();
        bad.insert("tickets".into(), json!("five"));
        assert!(row_from_json(&TICKETS, &bad).is_err());
        let mut no_key = row;
        no_key.remove("severity");
        assert!(row_from_json(&TICKETS, &no_key).is_err());
        assert_eq!(Cell::from_text(Cql::Int, "2025").unwrap(), Cell::Int(2025));
        assert!(Cell::from_text(Cql::Date, "2025-13-01").is_err());
        assert_eq!(REVENUE_ALL.index("org_id"), Some(2));
        assert_eq!(DAILY.index("nope"), None);
    }

    #[test]
    fn binary_rows_round_trip_and_refuse_anything_else() {
        let row = vec![
            Cell::Null,
            Cell::Text("ünïcode \"text\"".into()),
            Cell::Text(String::new()),
            Cell::Date(-3),
            Cell::Double(-0.0),
            Cell::Double(f64::NAN),
            Cell::Double(0.1 + 0.2),
            Cell::Bigint(i64::MIN),
            Cell::Int(i32::MAX),
            Cell::Boolean(false),
            Cell::Boolean(true),
        ];
        let mut b = Vec::new();
        encode_row(&row, &mut b);
        let back = decode_row(&b).unwrap();
        // Bit for bit (NaN included), not just equal.
        assert_eq!(format!("{back:?}"), format!("{row:?}"));
        assert_eq!(back[6], Cell::Double(0.1 + 0.2));
        // Every cut, a bad tag, trailing bytes, JSON: errors, not panics.
        for n in 0..b.len() {
            assert!(decode_row(&b[..n]).is_err(), "cut at {n}");
        }
        let mut bad = b.clone();
        bad[3] = 9;
        assert!(decode_row(&bad).is_err());
        let mut long = b.clone();
        long.push(0);
        assert!(decode_row(&long).is_err());
        assert!(decode_row(b"{\"a\":1}").is_err());
        let mut not_utf8 = Vec::new();
        encode_row(&[Cell::Text("ab".into())], &mut not_utf8);
        *not_utf8.last_mut().unwrap() = 0xff;
        assert!(decode_row(&not_utf8).is_err());
    }

    #[test]
    fn parquet_rows_agree_with_the_json_reader() {
        use arrow_array::{Date32Array, Float64Array, Int64Array, StringArray};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("usage_date=2025-07-02");
        std::fs::create_dir_all(&part).unwrap();
        let schema = Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("org_id", DataType::Utf8, false),
            arrow_schema::Field::new("service", DataType::Utf8, false),
            arrow_schema::Field::new("events", DataType::Int64, false),
            arrow_schema::Field::new("cost_usd", DataType::Float64, true),
            arrow_schema::Field::new("other", DataType::Date32, false),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["o1", "o\"2"])),
                Arc::new(StringArray::from(vec!["compute", "storage"])),
                Arc::new(Int64Array::from(vec![3, 4])),
                Arc::new(Float64Array::from(vec![Some(1.5), None])),
                Arc::new(Date32Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        let schema = b.schema();
        compactor::table::write_parquet(
            &part.join("a.parquet"),
            &schema,
            compactor::table::RowOrder::SortedByText,
            [Ok(b)],
        )
        .unwrap();
        let rows = rows_from_parquet(&DAILY, dir.path()).unwrap();
        let json = compactor::table::json_rows(dir.path()).unwrap();
        assert_eq!(rows.len(), 2);
        for (r, j) in rows.iter().zip(&json) {
            // The JSON reader keeps every column; the typed rows the table's, with
            // the ones the files lack as null.
            let expect = row_from_json(&DAILY, j).unwrap();
            assert_eq!(expect[DAILY.index("org_name").unwrap()], Cell::Null);
            assert_eq!(r, &expect);
        }
        assert_eq!(rows[0][1], Cell::Date(20_271));
        // A key the files and the directories both lack is an error.
        assert!(rows_from_parquet(&TICKETS, dir.path()).is_err());
    }
}
