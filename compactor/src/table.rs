//! Rows to Arrow to Parquet: one small row API shared by every table of the lake, a
//! sink that routes rows to Hive partition directories and writes each directory's
//! rows as one zstd Parquet file, and the readers the gold marts and merges use.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

/// One value of a row, in the column's Arrow type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Str(&'a str),
    F64(f64),
    I64(i64),
    I32(i32),
    Bool(bool),
    /// Days since the epoch.
    Date(i32),
    /// Microseconds since the epoch, UTC.
    Ts(i64),
    Bin(&'a [u8]),
}

impl<'a> From<Option<&'a str>> for Cell<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Cell::Null, Cell::Str)
    }
}

impl From<Option<f64>> for Cell<'_> {
    fn from(v: Option<f64>) -> Self {
        v.map_or(Cell::Null, Cell::F64)
    }
}

impl From<Option<i64>> for Cell<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Cell::Null, Cell::I64)
    }
}

enum Col {
    Str(StringBuilder),
    F64(Float64Builder),
    I64(Int64Builder),
    I32(Int32Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
    Bin(BinaryBuilder),
}

impl Col {
    /// A builder for `rows` values (and `bytes` of text or binary data) that does not
    /// grow until they are exceeded.
    fn with_capacity(dt: &DataType, rows: usize, bytes: usize) -> Result<Col> {
        Ok(match dt {
            DataType::Utf8 => Col::Str(StringBuilder::with_capacity(rows, bytes)),
            DataType::Float64 => Col::F64(Float64Builder::with_capacity(rows)),
            DataType::Int64 => Col::I64(Int64Builder::with_capacity(rows)),
            DataType::Int32 => Col::I32(Int32Builder::with_capacity(rows)),
            DataType::Boolean => Col::Bool(BooleanBuilder::with_capacity(rows)),
            DataType::Date32 => Col::Date(Date32Builder::with_capacity(rows)),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                Col::Ts(TimestampMicrosecondBuilder::with_capacity(rows))
            }
            DataType::Binary => Col::Bin(BinaryBuilder::with_capacity(rows, bytes)),
            other => bail!("no row builder for Arrow type {other}"),
        })
    }

    /// Bytes of text or binary data held (0 for fixed-width columns).
    fn data_bytes(&self) -> usize {
        match self {
            Col::Str(b) => b.values_slice().len(),
            Col::Bin(b) => b.values_slice().len(),
            _ => 0,
        }
    }

    fn push(&mut self, cell: Cell) -> bool {
        match (self, cell) {
            (Col::Str(b), Cell::Str(v)) => b.append_value(v),
            (Col::Str(b), Cell::Null) => b.append_null(),
            (Col::F64(b), Cell::F64(v)) => b.append_value(v),
            (Col::F64(b), Cell::Null) => b.append_null(),
            (Col::I64(b), Cell::I64(v)) => b.append_value(v),
            (Col::I64(b), Cell::Null) => b.append_null(),
            (Col::I32(b), Cell::I32(v)) => b.append_value(v),
            (Col::I32(b), Cell::Null) => b.append_null(),
            (Col::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (Col::Bool(b), Cell::Null) => b.append_null(),
            (Col::Date(b), Cell::Date(v)) => b.append_value(v),
            (Col::Date(b), Cell::Null) => b.append_null(),
            (Col::Ts(b), Cell::Ts(v)) => b.append_value(v),
            (Col::Ts(b), Cell::Null) => b.append_null(),
            (Col::Bin(b), Cell::Bin(v)) => b.append_value(v),
            (Col::Bin(b), Cell::Null) => b.append_null(),
            _ => return false,
        }
        true
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Col::Str(b) => Arc::new(b.finish()),
            Col::F64(b) => Arc::new(b.finish()),
            Col::I64(b) => Arc::new(b.finish()),
            Col::I32(b) => Arc::new(b.finish()),
            Col::Bool(b) => Arc::new(b.finish()),
            Col::Date(b) => Arc::new(b.finish()),
            Col::Ts(b) => Arc::new(b.finish().with_timezone("UTC")),
            Col::Bin(b) => Arc::new(b.finish()),
        }
    }
}

/// A table of the lake: its full schema, and the columns that are Hive partition keys
/// of the same name (kept out of the files, as Spark and DuckDB expect).
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// Path under the lake root, e.g. `silver/usage_events`.
    pub path: String,
    pub schema: SchemaRef,
    /// Indexes into `schema` of the columns left out of the files.
    pub hive: Vec<usize>,
    /// The schema of the files: `schema` without the `hive` columns.
    pub file_schema: SchemaRef,
    /// Indexes into `schema` of the files' columns, in order.
    kept: Vec<usize>,
    pub order: RowOrder,
}

/// How a table's rows are ordered within a file, which decides whether its text
/// columns get min/max statistics ([`writer_properties`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOrder {
    /// As they came from the log, within a partition directory (bronze, silver,
    /// quarantine, speed): a text column's min and max span nearly its whole domain
    /// in every file, so they prune nothing, while computing them compares every
    /// value. Written without them.
    Log,
    /// Sorted by text keys (the gold marts, by org): a page's min and max org let a
    /// reader skip it. Written with them.
    SortedByText,
}

impl TableSpec {
    pub fn new(path: impl Into<String>, schema: SchemaRef, hive_columns: &[&str]) -> TableSpec {
        let hive: Vec<usize> = hive_columns
            .iter()
            .filter_map(|c| schema.index_of(c).ok())
            .collect();
        let kept: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !hive.contains(i))
            .collect();
        let fields: Vec<_> = kept.iter().map(|&i| schema.field(i).clone()).collect();
        TableSpec {
            path: path.into(),
            file_schema: Arc::new(Schema::new(fields)),
            schema,
            hive,
            kept,
            order: RowOrder::Log,
        }
    }

    /// The same table, its rows sorted by text keys.
    pub fn sorted_by_text(self) -> TableSpec {
        TableSpec {
            order: RowOrder::SortedByText,
            ..self
        }
    }
}

/// Rows of one file, column by column.
pub struct Rows {
    spec: Arc<TableSpec>,
    cols: Vec<Col>,
    len: usize,
}

impl Rows {
    pub fn new(spec: Arc<TableSpec>) -> Result<Rows> {
        Rows::with_capacity(spec, 1024, &[])
    }

    /// Rows whose builders hold `rows` rows without growing, with `bytes[i]` bytes of
    /// data for the file's column `i` (1024 when not given).
    pub fn with_capacity(spec: Arc<TableSpec>, rows: usize, bytes: &[usize]) -> Result<Rows> {
        let cols = spec
            .file_schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                Col::with_capacity(f.data_type(), rows, bytes.get(i).copied().unwrap_or(1024))
            })
            .collect::<Result<_>>()?;
        Ok(Rows { spec, cols, len: 0 })
    }

    /// Bytes of text or binary data per file column (0 for fixed-width ones).
    fn data_bytes(&self) -> Vec<usize> {
        self.cols.iter().map(Col::data_bytes).collect()
    }

    /// Appends one row given in the order of the table's full schema.
    pub fn push(&mut self, cells: &[Cell]) -> Result<()> {
        let schema = &self.spec.schema;
        if cells.len() != schema.fields().len() {
            bail!(
                "{}: a row of {} cells for {} columns",
                self.spec.path,
                cells.len(),
                schema.fields().len()
            );
        }
        for (col, &i) in self.cols.iter_mut().zip(&self.spec.kept) {
            let cell = cells[i];
            if !col.push(cell) {
                bail!(
                    "{}: column {} is {} but got {cell:?}",
                    self.spec.path,
                    schema.field(i).name(),
                    schema.field(i).data_type()
                );
            }
        }
        self.len += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.cols.iter_mut().map(Col::finish).collect();
        self.len = 0;
        RecordBatch::try_new(self.spec.file_schema.clone(), arrays)
            .with_context(|| format!("{}: building a record batch", self.spec.path))
    }
}

/// Columns whose values are (nearly) all distinct: ids, times, measures, positions.
/// A dictionary would hold every value once more, and interning them is a large share
/// of writing; they are written plain, or, for integers and times, as deltas
/// (`DELTA_BINARY_PACKED`: positions and times that mostly rise take a few bits each,
/// leaving zstd far less to compress).
const DISTINCT_COLUMNS: &[&str] = &[
    "event_id",
    "timestamp",
    "event_time",
    "value",
    "cost_usd",
    "carbon_kg",
    "ingest_ts",
    "line_no",
    "offset",
    "raw_offset",
    "record",
];

/// How the lake's files are written: zstd; no dictionary for [`DISTINCT_COLUMNS`];
/// min/max statistics for numbers, dates, times and flags, and for text only when
/// the rows are sorted by text ([`RowOrder`]).
pub fn writer_properties(schema: &Schema, order: RowOrder) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(1 << 20));
    for field in schema.fields() {
        let col = || ColumnPath::from(field.name().as_str());
        let text = matches!(field.data_type(), DataType::Utf8 | DataType::Binary);
        if text && order == RowOrder::Log {
            b = b.set_column_statistics_enabled(col(), EnabledStatistics::None);
        }
        if DISTINCT_COLUMNS.contains(&field.name().as_str()) {
            b = b.set_column_dictionary_enabled(col(), false);
            if matches!(field.data_type(), DataType::Int64 | DataType::Timestamp(..)) {
                b = b.set_column_encoding(col(), Encoding::DELTA_BINARY_PACKED);
            }
        }
    }
    b.build()
}

/// Writes batches to `path` atomically: a temporary name in the same directory, then
/// renamed over `path`. Not fsynced here: a generation's new files are synced together
/// before it is switched to ([`crate::lake::Lake::commit`]), which is much cheaper
/// than one sync per file.
pub fn write_parquet(
    path: &Path,
    schema: &SchemaRef,
    order: RowOrder,
    batches: impl IntoIterator<Item = Result<RecordBatch>>,
) -> Result<u64> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let file = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    let mut w = ArrowWriter::try_new(file, schema.clone(), Some(writer_properties(schema, order)))?;
    let mut rows = 0u64;
    for b in batches {
        let b = b?;
        rows += b.num_rows() as u64;
        w.write(&b)
            .with_context(|| format!("write {}", tmp.display()))?;
    }
    w.close()
        .with_context(|| format!("close {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(rows)
}

/// Reads a Parquet file's batches, with only the named columns when `columns` is given
/// (in the file's order).
pub fn read_parquet(path: &Path, columns: Option<&[&str]>) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut b = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("read {}", path.display()))?
        .with_batch_size(64 * 1024);
    if let Some(cols) = columns {
        let schema = b.schema().clone();
        let mut idx = Vec::new();
        for c in cols {
            idx.push(
                schema
                    .index_of(c)
                    .with_context(|| format!("{}: no column {c}", path.display()))?,
            );
        }
        let mask = parquet::arrow::ProjectionMask::roots(b.parquet_schema(), idx);
        b = b.with_projection(mask);
    }
    let reader = b.build()?;
    let mut out = Vec::new();
    for batch in reader {
        out.push(batch.with_context(|| format!("read {}", path.display()))?);
    }
    Ok(out)
}

/// Rows in a Parquet file, from its footer.
pub fn parquet_rows(path: &Path) -> Result<u64> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("read {}", path.display()))?;
    Ok(b.metadata().file_metadata().num_rows().max(0) as u64)
}

/// Rows a directory's builders take before they become one Arrow batch. The next
/// builders are sized from the full ones (text with an eighth more room), so they
/// seldom grow: few reallocation copies, little memory touched twice.
const SUB_BATCH_ROWS: usize = 8192;

/// One directory's rows in a sink: full batches, and the builders filling.
struct DirRows {
    full: Vec<RecordBatch>,
    filling: Rows,
}

impl DirRows {
    fn push(&mut self, spec: &Arc<TableSpec>, cells: &[Cell]) -> Result<()> {
        self.filling.push(cells)?;
        if self.filling.len() >= SUB_BATCH_ROWS {
            let bytes: Vec<usize> = self
                .filling
                .data_bytes()
                .into_iter()
                .map(|b| b + b / 8 + 64)
                .collect();
            let next = Rows::with_capacity(spec.clone(), SUB_BATCH_ROWS, &bytes)?;
            let mut full = std::mem::replace(&mut self.filling, next);
            self.full.push(full.finish()?);
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.full.is_empty() && self.filling.is_empty()
    }
}

/// Rows routed to partition directories, written out as one file per directory per
/// flush. File names are given by the caller (topic, partition, offset range), so
/// writing the same input again writes the same files.
pub struct PartitionedSink {
    spec: Arc<TableSpec>,
    dirs: foldhash::HashMap<String, DirRows>,
    rows: usize,
}

impl PartitionedSink {
    pub fn new(spec: TableSpec) -> PartitionedSink {
        PartitionedSink {
            spec: Arc::new(spec),
            dirs: Default::default(),
            rows: 0,
        }
    }

    pub fn spec(&self) -> &TableSpec {
        &self.spec
    }

    /// Appends a row to the directory `dir` (`""` for an unpartitioned table).
    pub fn push(&mut self, dir: &str, cells: &[Cell]) -> Result<()> {
        match self.dirs.get_mut(dir) {
            Some(d) => d.push(&self.spec, cells)?,
            None => {
                let mut d = DirRows {
                    full: Vec::new(),
                    filling: Rows::new(self.spec.clone())?,
                };
                d.push(&self.spec, cells)?;
                self.dirs.insert(dir.to_owned(), d);
            }
        }
        self.rows += 1;
        Ok(())
    }

    pub fn buffered(&self) -> usize {
        self.rows
    }

    /// Writes every directory's rows as `<root>/<table>/<dir>/<file_name>` and returns
    /// the files written.
    pub fn flush(&mut self, root: &Path, file_name: &str) -> Result<Vec<PathBuf>> {
        self.flush_patched(root, file_name, &|_, b| Ok(b))
    }

    /// [`Self::flush`], with each of a directory's batches passed through `patch`
    /// (given the directory) before it is written.
    pub fn flush_patched(
        &mut self,
        root: &Path,
        file_name: &str,
        patch: &dyn Fn(&str, RecordBatch) -> Result<RecordBatch>,
    ) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        let mut dirs: Vec<_> = std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by(|a, b| a.0.cmp(&b.0));
        for (dir, mut d) in dirs {
            if d.is_empty() {
                continue;
            }
            let path = table_dir(root, &self.spec.path, &dir).join(file_name);
            let last = (!d.filling.is_empty()).then(|| d.filling.finish());
            let batches = d
                .full
                .into_iter()
                .map(Ok)
                .chain(last)
                .map(|b| b.and_then(|b| patch(&dir, b)));
            write_parquet(&path, &self.spec.file_schema, self.spec.order, batches)?;
            written.push(path);
        }
        self.rows = 0;
        Ok(written)
    }
}

pub fn table_dir(root: &Path, table: &str, dir: &str) -> PathBuf {
    let mut p = root.join(table);
    if !dir.is_empty() {
        p.push(dir);
    }
    p
}

/// Every Parquet file under `dir`, sorted by path (so reads are in a stable order).
pub fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("list {}", d.display()))? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if name.ends_with(".parquet") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The value of Hive key `key` in a file's path (`.../service=genai/part.parquet`).
pub fn hive_value<'p>(path: &'p Path, key: &str) -> Option<&'p str> {
    path.components().rev().find_map(|c| {
        let s = c.as_os_str().to_str()?;
        s.strip_prefix(key)?.strip_prefix('=')
    })
}

/// One row of a table as JSON values by column name.
pub type JsonRow = std::collections::BTreeMap<String, serde_json::Value>;

/// Every row of the Parquet files under `dir`, with the Hive partition columns of
/// their paths (dates `YYYY-MM-DD` and timestamps RFC 3339 as strings), in the order
/// of the files.
pub fn json_rows(dir: &Path) -> Result<Vec<JsonRow>> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{
        Date32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    };
    use serde_json::Value;
    let mut out = Vec::new();
    for path in parquet_files(dir)? {
        let hive: Vec<(String, String)> = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .components()
            .filter_map(|c| {
                let s = c.as_os_str().to_str()?;
                let (k, v) = s.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect();
        for b in read_parquet(&path, None)? {
            for i in 0..b.num_rows() {
                let mut row = JsonRow::new();
                for (f, a) in b.schema().fields().iter().zip(b.columns()) {
                    let v = if a.is_null(i) {
                        Value::Null
                    } else {
                        match f.data_type() {
                            DataType::Utf8 => Value::from(a.as_string::<i32>().value(i)),
                            DataType::Float64 => {
                                Value::from(a.as_primitive::<Float64Type>().value(i))
                            }
                            DataType::Int64 => Value::from(a.as_primitive::<Int64Type>().value(i)),
                            DataType::Int32 => Value::from(a.as_primitive::<Int32Type>().value(i)),
                            DataType::Boolean => Value::from(a.as_boolean().value(i)),
                            DataType::Date32 => Value::from(
                                schemas::time::days_to_date(
                                    a.as_primitive::<Date32Type>().value(i),
                                )
                                .map(|d| d.to_string())
                                .unwrap_or_default(),
                            ),
                            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                                Value::from(schemas::time::format_micros(
                                    a.as_primitive::<TimestampMicrosecondType>().value(i),
                                ))
                            }
                            DataType::Binary => Value::from(
                                String::from_utf8_lossy(a.as_binary::<i32>().value(i)).into_owned(),
                            ),
                            other => bail!("{}: no JSON for type {other}", path.display()),
                        }
                    };
                    row.insert(f.name().clone(), v);
                }
                for (k, v) in &hive {
                    row.insert(k.clone(), Value::from(v.as_str()));
                }
                out.push(row);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use arrow_schema::Field;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn columns_are_encoded_by_kind_and_text_has_statistics_only_when_sorted() {
        let spec = Arc::new(TableSpec::new(
            "t",
            Arc::new(Schema::new(vec![
                Field::new("event_id", DataType::Utf8, false),
                Field::new("org_id", DataType::Utf8, false),
                Field::new("offset", DataType::Int64, false),
            ])),
            &[],
        ));
        let mut rows = Rows::new(spec.clone()).unwrap();
        let ids: Vec<String> = (0..1000).map(|i| format!("evt_{i:08}")).collect();
        for (i, id) in ids.iter().enumerate() {
            let org = if i % 2 == 0 { "org_a" } else { "org_b" };
            rows.push(&[Cell::Str(id), Cell::Str(org), Cell::I64(i as i64)])
                .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        let batch = rows.finish().unwrap();
        write_parquet(&path, &spec.file_schema, RowOrder::Log, [Ok(batch.clone())]).unwrap();
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let rg = reader.metadata().row_group(0);
        let dictionary = |name: &str| {
            let c = rg
                .columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap();
            c.dictionary_page_offset().is_some()
        };
        assert!(!dictionary("event_id"));
        assert!(!dictionary("offset"));
        assert!(dictionary("org_id"));
        let column = |name: &str| {
            rg.columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap()
        };
        // Positions as deltas; ids plain (no dictionary) as written.
        assert!(
            column("offset")
                .encodings()
                .any(|e| e == parquet::basic::Encoding::DELTA_BINARY_PACKED)
        );
        assert!(
            column("event_id")
                .encodings()
                .any(|e| e == parquet::basic::Encoding::PLAIN)
        );
        // Min/max for numbers, none for text.
        let stats = column("offset").statistics().unwrap();
        assert_eq!(stats.min_bytes_opt(), Some(&0i64.to_le_bytes()[..]));
        assert_eq!(stats.max_bytes_opt(), Some(&999i64.to_le_bytes()[..]));
        assert!(column("org_id").statistics().is_none());
        assert!(column("event_id").statistics().is_none());
        // Rows sorted by text (the gold marts) keep their text statistics.
        let sorted = dir.path().join("sorted.parquet");
        write_parquet(
            &sorted,
            &spec.file_schema,
            RowOrder::SortedByText,
            [Ok(batch)],
        )
        .unwrap();
        let reader = SerializedFileReader::new(File::open(&sorted).unwrap()).unwrap();
        let rg = reader.metadata().row_group(0);
        let org = rg
            .columns()
            .iter()
            .find(|c| c.column_path().string() == "org_id")
            .unwrap();
        let stats = org.statistics().unwrap();
        assert_eq!(stats.min_bytes_opt(), Some(&b"org_a"[..]));
        assert_eq!(stats.max_bytes_opt(), Some(&b"org_b"[..]));
        // And the values read back.
        let back = read_parquet(&path, None).unwrap();
        assert_eq!(back.iter().map(|b| b.num_rows()).sum::<usize>(), 1000);
    }
}
