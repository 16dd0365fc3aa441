//! The embedded serving store: one RocksDB database. A row lives under
//! `table \0 partition \0 clustering...` (key columns joined with `\x1f`), its value the
//! row's cells in binary ([`crate::row::encode_row`]; stores written before that hold
//! JSON objects, read as well), so a query's partition read with a clustering range is one prefix scan.

use std::path::Path;

use anyhow::{Context, Result};
use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

use crate::row::{BINARY_ROW, decode_row, encode_row, row_to_json};
use crate::{Cell, JsonRow, Row, ServingStore, TableDef};

const META: &str = "_meta";

pub struct EmbeddedStore {
    db: DB,
    /// For a reader: the secondary instance's own directory (its info log), removed
    /// when the store is dropped.
    _secondary: Option<tempfile::TempDir>,
}

fn partition_prefix(table: &str, partition: &[&str]) -> Vec<u8> {
    let mut k = Vec::with_capacity(64);
    k.extend_from_slice(table.as_bytes());
    k.push(0);
    k.extend_from_slice(partition.join("\x1f").as_bytes());
    k.push(0);
    k
}

/// A row's key, into `out`: `table \0 partition \0 clustering` (the key cells as
/// text, the columns of each part joined with `\x1f`), what [`partition_prefix`]
/// builds from a query's partition.
fn row_key(table: &TableDef, row: &[Cell], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(table.name.as_bytes());
    out.push(0);
    let parts = table.partition.len();
    for (i, c) in row[..table.keys.len()].iter().enumerate() {
        if i == parts {
            out.push(0);
        } else if i > 0 {
            out.push(0x1f);
        }
        c.push_key_text(out);
    }
    if parts == table.keys.len() {
        out.push(0);
    }
}

/// A row's key and value, built in reused buffers.
#[derive(Default)]
struct Encoder {
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Encoder {
    fn encode(&mut self, table: &TableDef, row: &[Cell]) -> Result<()> {
        anyhow::ensure!(
            row.len() == table.keys.len() + table.values.len(),
            "{}: a row of {} cells for {} columns",
            table.name,
            row.len(),
            table.keys.len() + table.values.len()
        );
        row_key(table, row, &mut self.key);
        self.value.clear();
        encode_row(row, &mut self.value);
        Ok(())
    }
}

/// A stored row as the JSON map queries read: binary, or JSON as stores written
/// before binary rows hold (a publish rewrites those, as their bytes differ).
fn read_row(table: &TableDef, v: &[u8]) -> Result<JsonRow> {
    if v.first() != Some(&BINARY_ROW) {
        return serde_json::from_slice(v).context("serving store row");
    }
    let row = decode_row(v).with_context(|| format!("serving store row of {}", table.name))?;
    let columns = table.keys.len() + table.values.len();
    if row.len() != columns {
        anyhow::bail!(
            "serving store: a row of {} cells in {} ({columns} columns): publish again",
            row.len(),
            table.name
        );
    }
    Ok(row_to_json(table, &row))
}

impl EmbeddedStore {
    pub fn open(dir: &Path) -> Result<EmbeddedStore> {
        std::fs::create_dir_all(dir).with_context(|| format!("serving store {}", dir.display()))?;
        let mut o = Options::default();
        o.create_if_missing(true);
        let db = DB::open(&o, dir).with_context(|| format!("serving store {}", dir.display()))?;
        Ok(EmbeddedStore {
            db,
            _secondary: None,
        })
    }

    /// Opens the store for reading only, as a RocksDB secondary instance: it takes no
    /// lock, so queries and the dashboard run while `serving publish` writes, and
    /// [`ServingStore::refresh`] catches up with what the writer wrote since.
    pub fn open_reader(dir: &Path) -> Result<EmbeddedStore> {
        if !dir.join("CURRENT").exists() {
            // Nothing published yet: an empty store answers empty queries. (If a
            // writer creates it at this moment, its lock refuses this open; fine.)
            drop(EmbeddedStore::open(dir));
        }
        let secondary = tempfile::Builder::new()
            .prefix("serving-reader-")
            .tempdir()
            .context("serving store reader: a temporary directory")?;
        let mut o = Options::default();
        // A secondary instance keeps every file open (RocksDB requires it).
        o.set_max_open_files(-1);
        let db = DB::open_as_secondary(&o, dir, secondary.path())
            .with_context(|| format!("serving store {} (reader)", dir.display()))?;
        Ok(EmbeddedStore {
            db,
            _secondary: Some(secondary),
        })
    }

    /// Writes a batch; `sync` also fsyncs the write-ahead log, and with it every
    /// batch written before (RocksDB recovers a prefix of its log, so a synced mark
    /// is never found without the rows written before it).
    fn write(&self, b: WriteBatch, sync: bool) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(b, &wo).context("serving store write")
    }
}

impl ServingStore for EmbeddedStore {
    /// Writes only the rows that changed and deletes those that are gone, in one
    /// batch: publishing unchanged marts writes nothing.
    fn replace_table(&self, table: &TableDef, rows: &[Row]) -> Result<()> {
        let mut prefix = table.name.as_bytes().to_vec();
        prefix.push(0);
        let mut old: std::collections::HashMap<Box<[u8]>, Box<[u8]>> = Default::default();
        for item in self
            .db
            .iterator(IteratorMode::From(&prefix, Direction::Forward))
        {
            let (k, v) = item.context("serving store read")?;
            if !k.starts_with(&prefix) {
                break;
            }
            old.insert(k, v);
        }
        let mut b = WriteBatch::default();
        let mut e = Encoder::default();
        for row in rows {
            e.encode(table, row)?;
            match old.remove(e.key.as_slice()) {
                Some(was) if *was == *e.value => {}
                _ => b.put(&e.key, &e.value),
            }
        }
        for gone in old.keys() {
            b.delete(gone);
        }
        if b.is_empty() {
            return Ok(());
        }
        // Durable with the publish's marks (`put_metas`), written last and synced.
        self.write(b, false)
    }

    fn upsert(&self, table: &TableDef, rows: &[Row]) -> Result<()> {
        let mut b = WriteBatch::default();
        let mut e = Encoder::default();
        for row in rows {
            e.encode(table, row)?;
            b.put(&e.key, &e.value);
        }
        self.write(b, false)
    }

    fn scan(
        &self,
        table: &TableDef,
        partition: &[&str],
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<JsonRow>> {
        let prefix = partition_prefix(table.name, partition);
        let mut seek = prefix.clone();
        if let Some(f) = from {
            seek.extend_from_slice(f.as_bytes());
        }
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&seek, Direction::Forward))
        {
            let (k, v) = item.context("serving store read")?;
            let Some(rest) = k.strip_prefix(prefix.as_slice()) else {
                break;
            };
            if let Some(to) = to {
                // The first clustering column: up to the first separator.
                let first = rest.split(|b| *b == 0x1f).next().unwrap_or(rest);
                if first > to.as_bytes() {
                    break;
                }
            }
            out.push(read_row(table, &v)?);
        }
        Ok(out)
    }

    fn put_meta(&self, name: &str, value: &str) -> Result<()> {
        let mut b = WriteBatch::default();
        b.put(partition_prefix(META, &[name]), value.as_bytes());
        self.write(b, true)
    }

    fn put_metas(&self, metas: &[(&str, String)]) -> Result<()> {
        let mut b = WriteBatch::default();
        for (name, value) in metas {
            b.put(partition_prefix(META, &[name]), value.as_bytes());
        }
        self.write(b, true)
    }

    fn meta(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .db
            .get(partition_prefix(META, &[name]))
            .context("serving store read")?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn version(&self) -> Result<Option<String>> {
        Ok(Some(self.db.latest_sequence_number().to_string()))
    }

    fn refresh(&self) -> Result<()> {
        if self._secondary.is_some() {
            self.db
                .try_catch_up_with_primary()
                .context("serving store: catching up with the writer")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn row(org: &str, date: &str, service: &str, cost: f64) -> Row {
        let v = json!({"org_id": org, "usage_date": date, "service": service, "cost_usd": cost});
        crate::row::row_from_json(&crate::DAILY, &serde_json::from_value(v).unwrap()).unwrap()
    }

    fn json(rows: &[Row]) -> Vec<JsonRow> {
        let to_json = |r: &Row| crate::row::row_to_json(&crate::DAILY, r);
        rows.iter().map(to_json).collect()
    }

    #[test]
    fn partitions_and_clustering_ranges() {
        let t = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(t.path()).unwrap();
        let rows = vec![
            row("a", "2025-07-01", "compute", 1.0),
            row("a", "2025-07-02", "compute", 2.0),
            row("a", "2025-07-02", "storage", 3.0),
            row("a", "2025-07-03", "compute", 4.0),
            row("ab", "2025-07-02", "compute", 9.0),
        ];
        s.replace_table(&crate::DAILY, &rows).unwrap();
        let got = s
            .scan(
                &crate::DAILY,
                &["a"],
                Some("2025-07-02"),
                Some("2025-07-02"),
            )
            .unwrap();
        assert_eq!(got, json(&rows[1..3]));
        // The key of a row is the prefix its partition and clustering range seek.
        let mut k = Vec::new();
        row_key(&crate::DAILY, &rows[1], &mut k);
        assert_eq!(k, b"daily_usage_by_org\x00a\x002025-07-02\x1fcompute");
        assert!(k.starts_with(&partition_prefix(crate::DAILY.name, &["a"])));
        row_key(
            &crate::TICKETS,
            &[Cell::Text("high".into()), Cell::Date(0)],
            &mut k,
        );
        assert_eq!(k, b"tickets_by_severity_date\x00high\x001970-01-01");
        // A row that does not fit the table is refused.
        assert!(s.replace_table(&crate::DAILY, &[vec![Cell::Null]]).is_err());
        // A partition is not a prefix of another's ("a" vs "ab").
        assert_eq!(s.scan(&crate::DAILY, &["a"], None, None).unwrap().len(), 4);
        // The same rows again write nothing; replacing drops rows that are gone.
        let seq = s.db.latest_sequence_number();
        s.replace_table(&crate::DAILY, &rows).unwrap();
        assert_eq!(s.db.latest_sequence_number(), seq);
        s.replace_table(&crate::DAILY, &rows[..1]).unwrap();
        assert_eq!(s.scan(&crate::DAILY, &["a"], None, None).unwrap().len(), 1);
        assert_eq!(s.scan(&crate::DAILY, &["ab"], None, None).unwrap().len(), 0);
        s.put_meta("x", "1").unwrap();
        assert_eq!(s.meta("x").unwrap().as_deref(), Some("1"));
        assert_eq!(s.meta("y").unwrap(), None);
        // A store written with JSON rows still reads, and a publish rewrites them.
        let old = serde_json::to_vec(&json(&rows[..1])[0]).unwrap();
        let mut key = Vec::new();
        row_key(&crate::DAILY, &rows[0], &mut key);
        s.db.put(&key, &old).unwrap();
        assert_eq!(
            s.scan(&crate::DAILY, &["a"], None, None).unwrap(),
            json(&rows[..1])
        );
        let seq = s.db.latest_sequence_number();
        s.replace_table(&crate::DAILY, &rows[..1]).unwrap();
        assert!(s.db.latest_sequence_number() > seq);
        assert_ne!(s.db.get(&key).unwrap().unwrap(), old);
        assert_eq!(
            s.scan(&crate::DAILY, &["a"], None, None).unwrap(),
            json(&rows[..1])
        );
        // A binary row of another shape is an error, not a wrong answer.
        let mut short = Vec::new();
        encode_row(&rows[0][..3], &mut short);
        s.db.put(&key, &short).unwrap();
        assert!(s.scan(&crate::DAILY, &["a"], None, None).is_err());
    }

    #[test]
    fn a_reader_runs_beside_the_writer_and_catches_up() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("serving");
        // Before anything was published: an empty store, no error.
        let early = EmbeddedStore::open_reader(&dir).unwrap();
        assert_eq!(early.meta("x").unwrap(), None);
        let w = EmbeddedStore::open(&dir).unwrap();
        w.put_meta("x", "1").unwrap();
        let r = EmbeddedStore::open_reader(&dir).unwrap();
        assert_eq!(r.meta("x").unwrap().as_deref(), Some("1"));
        w.replace_table(&crate::DAILY, &[row("a", "2025-07-01", "compute", 1.0)])
            .unwrap();
        w.put_meta("x", "2").unwrap();
        // A reader sees what it opened on until it refreshes.
        assert_eq!(r.meta("x").unwrap().as_deref(), Some("1"));
        r.refresh().unwrap();
        early.refresh().unwrap();
        for reader in [&r, &early] {
            assert_eq!(reader.meta("x").unwrap().as_deref(), Some("2"));
            assert_eq!(
                reader
                    .scan(&crate::DAILY, &["a"], None, None)
                    .unwrap()
                    .len(),
                1
            );
        }
        // The writer's lock is not the reader's: a second reader opens while the
        // writer holds the store.
        EmbeddedStore::open_reader(&dir).unwrap();
    }
}
