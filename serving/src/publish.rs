//! `serving publish`: the gold marts of the current lake generation and the
//! real-time view (`speed.daily_usage`, read up to the processor's committed
//! positions) into the serving tables.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use compactor::cursor::Cursor;
use eventlog::{Bytes, Log, PartitionReader, StoredRecord};
use rustc_hash::FxHashMap;
use schemas::speed::DailyMessage;
use schemas::topics::{COMMITTED_OUTPUTS, DAILY_TOPIC};
use schemas::written::Written;

use crate::row::{Cell, Row, rows_from_parquet};
use crate::{
    ANOMALY_ALL, ANOMALY_ORG, Cql, DAILY, GENAI, META_ANOMALY_PARTITIONS, META_BATCH_HIGH_WATER,
    META_ORGS, META_PUBLISHED, META_REVENUE_PARTITIONS, META_SPEED_ORGS, META_SPEED_POSITIONS,
    META_TICKETS_LATEST, OrgRange, REVENUE_ALL, REVENUE_ORG, SPEED_DAILY, ServingStore, TICKETS,
    TICKETS_ORG, TableDef, daily_org_ranges, extend_org_ranges,
};

/// Rows published per table.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PublishReport {
    pub rows: BTreeMap<&'static str, usize>,
    /// The real-time view was read from where the last publish stopped.
    pub speed_incremental: bool,
    /// The cost anomalies announced, delivered and pending.
    pub alerts: crate::alerts::AlertReport,
}

/// The latest date of a date column, as text.
fn max_date(t: &TableDef, rows: &[Row], col: &str) -> Option<String> {
    let i = t.index(col)?;
    rows.iter()
        .filter_map(|r| match r.get(i) {
            Some(Cell::Date(d)) => Some(*d),
            _ => None,
        })
        .max()
        .map(crate::row::date_text)
}

/// A `speed.daily_usage` record, undecoded: most are overwritten by a later one of
/// the same key, so only the key is read from each, and only the last per key is
/// decoded in full.
fn undecoded(r: StoredRecord) -> Result<(u64, Bytes)> {
    Ok((r.offset, r.record.value))
}

/// The key fields of a `speed.daily_usage` record, borrowed where the JSON allows.
#[derive(Debug, PartialEq, serde::Deserialize)]
struct DailyKey<'a> {
    #[serde(borrow)]
    org_id: std::borrow::Cow<'a, str>,
    usage_date: i32,
    #[serde(borrow)]
    service: std::borrow::Cow<'a, str>,
}

/// The length of a record's key text as the processor writes it: the prefix
/// `{"org_id":"…","usage_date":N,"service":"…"` (the `DailyMessage` field order),
/// when nothing in it is escaped and the day is written as serde writes it; `None`
/// for anything else, whose key [`daily_key`] then writes in that form.
fn fast_key_len(json: &[u8]) -> Option<usize> {
    let mut w = Written::new(json);
    w.field("org_id")?;
    w.raw_text()?;
    w.field("usage_date")?;
    i32::try_from(w.integer()?).ok()?;
    w.field("service")?;
    w.raw_text()?;
    Some(w.position())
}

/// A record in the processor's form (its fields in [`SPEED_DAILY`]'s column order,
/// as `DailyMessage` writes them) read straight into a row (a string's escapes by
/// serde); `None` for anything else.
fn written_daily_row(json: &[u8]) -> Option<Row> {
    let mut w = Written::new(json);
    let mut row = Vec::with_capacity(SPEED_DAILY.keys.len() + SPEED_DAILY.values.len());
    for (name, ty) in SPEED_DAILY.columns() {
        w.field(name)?;
        row.push(match ty {
            Cql::Text => Cell::Text(w.any_text()?.into_owned()),
            Cql::Date => Cell::Date(w.integer()?.try_into().ok()?),
            Cql::Bigint => Cell::Bigint(w.integer()?),
            Cql::Int => Cell::Int(w.integer()?.try_into().ok()?),
            Cql::Double => Cell::Double(w.double()?),
            Cql::Boolean => return None,
        });
    }
    w.end()?;
    Some(row)
}

/// A `speed.daily_usage` record as a row of [`SPEED_DAILY`].
fn daily_record_row(json: &[u8]) -> Result<Row> {
    if let Some(row) = written_daily_row(json) {
        return Ok(row);
    }
    Ok(daily_row(serde_json::from_slice(json)?))
}

/// A record's key: the bytes of the record that [`fast_key_len`] finds, or the
/// same text written from the record's fields.
fn daily_key(value: &Bytes) -> Result<Bytes> {
    if let Some(n) = fast_key_len(value) {
        return Ok(value.slice(..n));
    }
    let k: DailyKey = serde_json::from_slice(value)?;
    let mut out = b"{\"org_id\":".to_vec();
    serde_json::to_writer(&mut out, &k.org_id)?;
    out.extend_from_slice(b",\"usage_date\":");
    serde_json::to_writer(&mut out, &k.usage_date)?;
    out.extend_from_slice(b",\"service\":");
    serde_json::to_writer(&mut out, &k.service)?;
    Ok(Bytes::from(out))
}

/// A daily row's key, `(org_id, usage_date, service)`, to sort by.
fn daily_key_cells(r: &[Cell]) -> (&str, i32, &str) {
    fn text(c: Option<&Cell>) -> &str {
        match c {
            Some(Cell::Text(s)) => s.as_str(),
            _ => "",
        }
    }
    let day = match r.get(1) {
        Some(Cell::Date(d)) => *d,
        _ => i32::MIN,
    };
    (text(r.first()), day, text(r.get(2)))
}

/// A `speed.daily_usage` record as a row of [`SPEED_DAILY`] (its columns are
/// [`DAILY`]'s).
fn daily_row(m: DailyMessage) -> Row {
    let t = m.totals;
    vec![
        Cell::Text(m.org_id),
        Cell::Date(m.usage_date),
        Cell::Text(m.service),
        Cell::Text(m.org_name),
        Cell::Text(m.industry),
        Cell::Text(m.plan_tier),
        Cell::Bigint(t.events),
        Cell::Double(t.requests),
        Cell::Double(t.cpu_hours),
        Cell::Double(t.storage_gb_hours),
        Cell::Double(t.cost_usd),
        Cell::Bigint(t.negative_cost_events),
        Cell::Bigint(t.genai_tokens),
        Cell::Double(t.carbon_kg),
    ]
}

/// The last record per key of one partition's range, decoded, and the last record
/// read.
struct LatestPerKey {
    /// A key is the record's own key text, sharing the record's bytes.
    latest: Vec<(Bytes, Row)>,
    last: Option<Bytes>,
}

fn latest_per_key(log: &impl Log, p: u32, from: u64, end: u64) -> Result<LatestPerKey> {
    let mut latest: FxHashMap<Bytes, (u64, Bytes)> = FxHashMap::default();
    let mut last = None;
    let mut cur = Cursor::new(log, DAILY_TOPIC, p, from, end, undecoded)?;
    while let Some((offset, value)) = cur.next()? {
        let key =
            daily_key(&value).with_context(|| format!("{DAILY_TOPIC}/{p} offset {offset}"))?;
        latest.insert(key, (offset, value.clone()));
        last = Some(value);
    }
    // Only the last record of each key is decoded in full.
    let latest = latest
        .into_iter()
        .map(|(k, (offset, v))| {
            let row = daily_record_row(&v)
                .with_context(|| format!("{DAILY_TOPIC}/{p} offset {offset}"))?;
            Ok((k, row))
        })
        .collect::<Result<_>>()?;
    Ok(LatestPerKey { latest, last })
}

/// Where a publish of `speed.daily_usage` stopped, per partition: the next offset and
/// the CRC32C of the record before it (so a topic the processor rebuilt differently
/// is noticed, and read again from the start).
type SpeedPositions = BTreeMap<u32, (u64, u32)>;

/// The real-time view: the last value per `(org_id, usage_date, service)` of
/// `speed.daily_usage`, up to what the processor committed, read from `since` when
/// that still matches the topic (`incremental` is then true), else from the start.
pub fn speed_rows(
    log: &impl Log,
    since: Option<&SpeedPositions>,
) -> Result<(Vec<Row>, SpeedPositions, bool)> {
    let parts = log.partitions(DAILY_TOPIC)?.unwrap_or(0);
    let mut ends = Vec::new();
    for p in 0..parts {
        ends.push(
            log.committed(COMMITTED_OUTPUTS, DAILY_TOPIC, p)?
                .unwrap_or(0),
        );
    }
    // Incremental only if every partition still holds, at the same place, the record
    // the last publish ended on.
    let mut incremental = since.is_some();
    if let Some(since) = since {
        for (p, &end) in ends.iter().enumerate() {
            let (from, crc) = since.get(&(p as u32)).copied().unwrap_or((0, 0));
            if from > end {
                incremental = false;
            } else if from > 0 {
                let mut r = log.reader(DAILY_TOPIC, p as u32, from - 1)?;
                let rec = r.poll(1)?;
                if rec.first().map(|r| crc32c::crc32c(&r.record.value)) != Some(crc) {
                    incremental = false;
                }
            }
        }
    }
    // Each partition read on its own thread (a key lives in one partition: the
    // processor writes it to its org's input partition), merged in partition order.
    let ranges: Vec<(u32, u64, u64)> = ends
        .iter()
        .enumerate()
        .map(|(p, &end)| {
            let p = p as u32;
            let from = match (incremental, since) {
                (true, Some(s)) => s.get(&p).map_or(0, |x| x.0),
                _ => 0,
            };
            (p, from, end)
        })
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(ranges.len())
        .max(1);
    let mut read: BTreeMap<u32, Result<LatestPerKey>> = std::thread::scope(|s| {
        let ranges = &ranges;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    ranges
                        .iter()
                        .skip(t)
                        .step_by(threads)
                        .map(|&(p, from, end)| (p, latest_per_key(log, p, from, end)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = BTreeMap::new();
        for h in handles {
            match h.join() {
                Ok(v) => out.extend(v),
                Err(_) => anyhow::bail!("reading the real-time view panicked"),
            }
        }
        Ok(out)
    })?;
    let mut latest: FxHashMap<Bytes, Row> = FxHashMap::default();
    let mut positions = SpeedPositions::new();
    for &(p, _, end) in &ranges {
        let part = read.remove(&p).context("a partition not read")??;
        latest.extend(part.latest);
        let last_crc = match part.last {
            Some(v) => crc32c::crc32c(&v),
            None => since.and_then(|s| s.get(&p)).map_or(0, |x| x.1),
        };
        positions.insert(p, (end, if end == 0 { 0 } else { last_crc }));
    }
    // In key order, so that a publish writes in a stable order.
    let mut rows: Vec<Row> = latest.into_values().collect();
    rows.sort_by(|a, b| daily_key_cells(a).cmp(&daily_key_cells(b)));
    Ok((rows, positions, incremental))
}

/// The marts a publish reads from the lake's gold directory.
struct Marts {
    daily: Vec<Row>,
    tickets: Vec<Row>,
    revenue: Vec<Row>,
    genai: Vec<Row>,
    anomalies: Vec<Row>,
    tickets_org: Vec<Row>,
}

fn read_marts(gold: &Path) -> Result<Marts> {
    use compactor::gold as g;
    Ok(Marts {
        daily: rows_from_parquet(&DAILY, &gold.join(g::DAILY))?,
        tickets: rows_from_parquet(&TICKETS, &gold.join(g::TICKETS_SEVERITY))?,
        revenue: rows_from_parquet(&REVENUE_ORG, &gold.join(g::REVENUE))?,
        genai: rows_from_parquet(&GENAI, &gold.join(g::GENAI))?,
        anomalies: rows_from_parquet(&ANOMALY_ORG, &gold.join(g::ANOMALY))?,
        tickets_org: rows_from_parquet(&TICKETS_ORG, &gold.join(g::TICKETS_ORG))?,
    })
}

/// The rows of a `..._by_month_bucket` table (`to`: month, bucket, then the rest)
/// from those of its by-org table `from`: the same columns, `month` being the first
/// day of the month of column `date`, and `bucket` the org's among as many buckets
/// as the orgs of `rows` need ([`crate::org_buckets`]).
fn by_month_bucket(from: &TableDef, to: &TableDef, rows: &[Row], date: &str) -> Result<Vec<Row>> {
    use chrono::Datelike;
    let org = from.index("org_id").context("no org_id")?;
    let day = from.index(date).with_context(|| format!("no {date}"))?;
    let orgs: BTreeSet<String> = rows
        .iter()
        .filter_map(|r| r.get(org))
        .map(Cell::key_text)
        .collect();
    let buckets = crate::org_buckets(orgs.len());
    let month_of = |c: Option<&Cell>| match c {
        Some(Cell::Date(d)) => schemas::time::days_to_date(*d)
            .and_then(|d| d.with_day(1))
            .map(|d| Cell::Date(schemas::time::date_to_days(d)))
            .with_context(|| format!("{}: a {date} out of range", from.name)),
        _ => anyhow::bail!("{}: {date} is not a date", from.name),
    };
    rows.iter()
        .map(|r| {
            to.columns()
                .map(|(c, _)| match *c {
                    "bucket" => Ok(Cell::Int(crate::org_bucket(
                        &r.get(org).map(Cell::key_text).unwrap_or_default(),
                        buckets,
                    ))),
                    "month" if from.index("month").is_none() => month_of(r.get(day)),
                    c => from
                        .index(c)
                        .and_then(|i| r.get(i).cloned())
                        .with_context(|| format!("{}: no column {c}", from.name)),
                })
                .collect()
        })
        .collect()
}

/// `month/bucket` of every partition of a `..._by_month_bucket` table the rows fill,
/// in month order.
fn month_bucket_partitions(rows: &[Row]) -> String {
    let partitions: BTreeSet<String> = rows
        .iter()
        .map(|r| format!("{}/{}", r[0].key_text(), r[1].key_text()))
        .collect();
    partitions.into_iter().collect::<Vec<_>>().join(",")
}

/// Publishes every serving table from the lake at `lake` and the log.
pub fn publish(
    store: &(impl ServingStore + Sync),
    lake: &Path,
    log: &impl Log,
) -> Result<PublishReport> {
    publish_and_announce(store, lake, log, None)
}

/// [`publish`], and the cost anomalies it finds new announced (see [`crate::alerts`]):
/// counted, and POSTed to `webhook` when there is one.
pub fn publish_and_announce(
    store: &(impl ServingStore + Sync),
    lake: &Path,
    log: &impl Log,
    webhook: Option<&crate::alerts::Webhook>,
) -> Result<PublishReport> {
    let gold = lake.join("gold");
    if !gold.exists() {
        anyhow::bail!(
            "no gold marts at {}: run `compactor --once` first",
            gold.display()
        );
    }
    let mut report = PublishReport::default();
    // The real-time view: only what the processor upserted since the last publish.
    let since: Option<SpeedPositions> = store
        .meta(META_SPEED_POSITIONS)?
        .and_then(|s| serde_json::from_str(&s).ok());
    // The real-time view and the marts are read, and written, side by side: one
    // reads the log, the other Parquet files. (The marks, written last, wait for
    // both.)
    let (speed, marts) = std::thread::scope(|s| {
        let speed = s.spawn(|| -> Result<_> {
            let (speed, positions, incremental) = speed_rows(log, since.as_ref())?;
            if incremental {
                store.upsert(&SPEED_DAILY, &speed)?;
            } else {
                store.replace_table(&SPEED_DAILY, &speed)?;
            }
            Ok((speed, positions, incremental))
        });
        let marts = (|| -> Result<_> {
            let marts = read_marts(&gold)?;
            let revenue_all = by_month_bucket(&REVENUE_ORG, &REVENUE_ALL, &marts.revenue, "month")?;
            let anomaly_all =
                by_month_bucket(&ANOMALY_ORG, &ANOMALY_ALL, &marts.anomalies, "usage_date")?;
            for (table, rows) in [
                (&DAILY, &marts.daily),
                (&TICKETS, &marts.tickets),
                (&REVENUE_ORG, &marts.revenue),
                (&REVENUE_ALL, &revenue_all),
                (&GENAI, &marts.genai),
                (&ANOMALY_ORG, &marts.anomalies),
                (&ANOMALY_ALL, &anomaly_all),
                (&TICKETS_ORG, &marts.tickets_org),
            ] {
                store.replace_table(table, rows)?;
            }
            Ok((marts, revenue_all, anomaly_all))
        })();
        let speed = speed
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("reading the real-time view panicked")));
        (speed, marts)
    });
    let (speed, positions, incremental) = speed?;
    let (marts, revenue_all, anomaly_all) = marts?;
    let Marts {
        daily,
        tickets,
        revenue,
        genai,
        anomalies,
        tickets_org,
    } = marts;
    for (table, rows) in [
        (&DAILY, &daily),
        (&TICKETS, &tickets),
        (&REVENUE_ORG, &revenue),
        (&REVENUE_ALL, &revenue_all),
        (&GENAI, &genai),
        (&ANOMALY_ORG, &anomalies),
        (&ANOMALY_ALL, &anomaly_all),
        (&TICKETS_ORG, &tickets_org),
    ] {
        report.rows.insert(table.name, rows.len());
    }
    // The orgs the real-time rows cover, accumulated like the rows themselves.
    let mut speed_orgs: BTreeMap<String, OrgRange> = BTreeMap::new();
    if incremental {
        let before: Vec<OrgRange> = store
            .meta(META_SPEED_ORGS)?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        extend_org_ranges(&mut speed_orgs, before);
    }
    extend_org_ranges(&mut speed_orgs, daily_org_ranges(&speed));
    let speed_orgs: Vec<OrgRange> = speed_orgs.into_values().collect();
    let speed_orgs_json = serde_json::to_string(&speed_orgs)?;
    report.rows.insert(SPEED_DAILY.name, speed.len());
    report.speed_incremental = incremental;
    let mut orgs: BTreeMap<String, OrgRange> = BTreeMap::new();
    extend_org_ranges(&mut orgs, daily_org_ranges(&daily));
    extend_org_ranges(&mut orgs, speed_orgs);
    let orgs: Vec<OrgRange> = orgs.into_values().collect();
    let mut metas: Vec<(&str, String)> = vec![
        (META_SPEED_ORGS, speed_orgs_json),
        (META_SPEED_POSITIONS, serde_json::to_string(&positions)?),
        (META_ORGS, serde_json::to_string(&orgs)?),
    ];
    // The high-water marks go last: a query never looks past the rows it can see.
    if let Some(d) = max_date(&DAILY, &daily, "usage_date") {
        metas.push((META_BATCH_HIGH_WATER, d));
    }
    if let Some(d) = max_date(&TICKETS, &tickets, "created_date") {
        metas.push((META_TICKETS_LATEST, d));
    }
    metas.push((
        META_REVENUE_PARTITIONS,
        month_bucket_partitions(&revenue_all),
    ));
    metas.push((
        META_ANOMALY_PARTITIONS,
        month_bucket_partitions(&anomaly_all),
    ));
    // The anomalies found new, announced with the marks: the grown set of announced
    // keys, and the outbox the webhook is then served from.
    let (alert_metas, mut alerts) = crate::alerts::announce(
        store,
        &crate::alerts::alerts_of(&anomalies)?,
        webhook.is_some(),
    )?;
    metas.extend(alert_metas);
    metas.push((
        META_PUBLISHED,
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    ));
    store.put_metas(&metas)?;
    if let Some(w) = webhook {
        (alerts.delivered, alerts.pending) = crate::alerts::deliver(store, w)?;
    }
    report.alerts = alerts;
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn message() -> DailyMessage {
        DailyMessage {
            org_id: "org_1".into(),
            usage_date: 20_300,
            service: "compute".into(),
            org_name: "A \"quoted\" name".into(),
            industry: "x".into(),
            plan_tier: "pro".into(),
            totals: schemas::speed::UsageTotals {
                events: 3,
                requests: 1.5,
                cost_usd: -0.25,
                genai_tokens: 7,
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_key_is_read_from_the_record_or_written_as_the_processor_writes_it() {
        let bytes = Bytes::from(serde_json::to_vec(&message()).unwrap());
        let fast = daily_key(&bytes).unwrap();
        assert_eq!(
            &fast[..],
            br#"{"org_id":"org_1","usage_date":20300,"service":"compute""#
        );
        assert!(bytes.starts_with(&fast));
        // Another field order, an escape, a day written otherwise: the same key text
        // as the processor's form of the same fields.
        for (other, same) in [
            (
                r#"{"usage_date":1,"service":"s","org_id":"a"}"#,
                r#"{"org_id":"a","usage_date":1,"service":"s","x":1}"#,
            ),
            (
                r#"{"org_id":"a","usage_date":-3,"service":"s\u0041"}"#,
                r#"{"org_id":"a","usage_date":-3,"service":"sA"}"#,
            ),
            (
                r#"{ "org_id": "a", "usage_date": 5, "service": "s" }"#,
                r#"{"org_id":"a","usage_date":5,"service":"s"}"#,
            ),
        ] {
            let other = Bytes::from(other);
            let same = Bytes::from(same);
            assert_eq!(
                daily_key(&other).unwrap(),
                daily_key(&same).unwrap(),
                "{other:?}"
            );
            assert!(fast_key_len(&same).is_some());
        }
        // An escaped quote stays escaped, so no other key can meet it.
        let q = Bytes::from(r#"{"org_id":"a\"b","usage_date":1,"service":"s"}"#);
        assert_eq!(fast_key_len(&q), None);
        assert_eq!(
            &daily_key(&q).unwrap()[..],
            br#"{"org_id":"a\"b","usage_date":1,"service":"s""#
        );
        for bad in [
            "{",
            "",
            r#"{"org_id":"a","usage_date":x,"service":"s"}"#,
            r#"{"org_id":"a","usage_date":007,"service":"s"}"#,
            r#"{"org_id":"a","usage_date":-0,"service":"s"}"#,
        ] {
            assert!(daily_key(&Bytes::from(bad)).is_err(), "{bad}");
        }
    }

    /// Rows equal cell for cell, doubles bit for bit.
    fn same_bits(a: &[Cell], b: &[Cell]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| match (x, y) {
                (Cell::Double(x), Cell::Double(y)) => x.to_bits() == y.to_bits(),
                _ => x == y,
            })
    }

    #[test]
    fn records_read_as_written_equal_serdes_reading() {
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let texts = [
            "org_1",
            "",
            "ünïcode",
            "a \"quoted\" name",
            "tab\there",
            "back\\slash",
        ];
        let mut fast = 0;
        for _ in 0..5000 {
            let double = |n: u64| match n % 5 {
                0 => Some(f64::from_bits(n))
                    .filter(|v| v.is_finite())
                    .unwrap_or(1.5),
                1 => (n % 100_000) as f64 / 1000.0,
                2 => -((n % 7) as f64),
                3 => 1e-300 * (n % 10) as f64,
                _ => 0.1 + (n % 1000) as f64,
            };
            let totals = schemas::speed::UsageTotals {
                events: next() as i64,
                requests: double(next()),
                cpu_hours: double(next()),
                storage_gb_hours: double(next()),
                cost_usd: double(next()),
                negative_cost_events: -(next() as i64 % 3),
                genai_tokens: (next() % 1_000_000) as i64,
                carbon_kg: double(next()),
            };
            let text = |n: u64| texts[(n % texts.len() as u64) as usize].to_owned();
            let m = DailyMessage {
                org_id: text(next()),
                usage_date: next() as i32,
                service: text(next()),
                org_name: text(next()),
                industry: text(next()),
                plan_tier: text(next()),
                totals,
            };
            let bytes = serde_json::to_vec(&m).unwrap();
            let by_serde = daily_row(serde_json::from_slice(&bytes).unwrap());
            let written = written_daily_row(&bytes);
            // Escapes included: only the record's shape decides.
            assert!(written.is_some(), "{}", String::from_utf8_lossy(&bytes));
            if let Some(w) = written {
                assert!(same_bits(&w, &by_serde), "{w:?} {by_serde:?}");
                fast += 1;
            }
            assert!(same_bits(&daily_record_row(&bytes).unwrap(), &by_serde));
        }
        assert!(fast > 100, "{fast}");
        // Numbers: what JSON allows is read as serde reads it; the rest is serde's
        // to read (or to refuse).
        let record = |cost: &str, events: &str| {
            format!(
                r#"{{"org_id":"o","usage_date":1,"service":"s","org_name":"n","industry":"i","plan_tier":"p","events":{events},"requests":0.0,"cpu_hours":0.0,"storage_gb_hours":0.0,"cost_usd":{cost},"negative_cost_events":0,"genai_tokens":0,"carbon_kg":0.0}}"#
            )
        };
        for (cost, ok) in [
            ("0", true),
            ("-0.5", true),
            ("-0", true),
            ("1e5", true),
            ("1E+5", true),
            ("2.5e-3", true),
            ("1.5e-300", true),
            ("123456789.123456789", true),
            ("01", false),
            ("1.", false),
            (".5", false),
            ("1e", false),
            ("1e+", false),
            ("+1", false),
            ("-", false),
            ("", false),
            ("1e400", false),
            ("NaN", false),
            ("inf", false),
        ] {
            let json = record(cost, "3");
            let written = written_daily_row(json.as_bytes());
            assert_eq!(written.is_some(), ok, "{cost}");
            let by_serde = serde_json::from_str::<DailyMessage>(&json);
            if let Some(w) = written {
                assert!(same_bits(&w, &daily_row(by_serde.unwrap())), "{cost}");
            }
        }
        for (events, ok) in [
            ("0", true),
            ("-7", true),
            ("-0", false),
            ("1.0", false),
            ("1e3", false),
            ("007", false),
            ("-9223372036854775808", true),
            ("9223372036854775807", true),
            ("9223372036854775808", false),
        ] {
            let json = record("1.0", events);
            let written = written_daily_row(json.as_bytes());
            assert_eq!(written.is_some(), ok, "{events}");
            if let Some(w) = written {
                let by_serde = daily_row(serde_json::from_str(&json).unwrap());
                assert!(same_bits(&w, &by_serde), "{events}");
            }
        }
        // Escapes of every kind in a string; a string or a record cut short.
        let json = record("1.0", "3").replace(
            r#""org_name":"n""#,
            r#""org_name":"a\u00e9\"b\\c\/d\n\ud83d\ude00""#,
        );
        let w = written_daily_row(json.as_bytes()).unwrap();
        assert_eq!(w[3], Cell::Text("aé\"b\\c/d\n😀".into()));
        assert!(same_bits(
            &w,
            &daily_row(serde_json::from_str(&json).unwrap())
        ));
        for cut in [json.find("\\u00e9").unwrap() + 3, json.len() - 1] {
            assert!(
                written_daily_row(&json.as_bytes()[..cut]).is_none(),
                "{cut}"
            );
            assert!(daily_record_row(&json.as_bytes()[..cut]).is_err(), "{cut}");
        }
        // Another field order, a missing field, a field more: serde's.
        let json = record("1.0", "3");
        assert!(written_daily_row(json.replacen("}", r#","x":1}"#, 1).as_bytes()).is_none());
        assert!(written_daily_row(json.replace(r#","carbon_kg":0.0"#, "").as_bytes()).is_none());
        assert!(daily_record_row(json.replace(r#","carbon_kg":0.0"#, "").as_bytes()).is_err());
    }

    #[test]
    fn a_real_time_record_is_a_row_of_the_daily_table() {
        // The row built field by field equals the record read as JSON by the
        // table's columns (its day as a date).
        let m = message();
        let mut json: crate::JsonRow =
            serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
        json.insert(
            "usage_date".into(),
            crate::row::date_text(m.usage_date).into(),
        );
        let flat: DailyMessage = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(
            daily_row(flat),
            crate::row::row_from_json(&SPEED_DAILY, &json).unwrap()
        );
    }

    #[test]
    fn revenue_rows_gain_their_bucket() {
        let row = |org: &str, month: &str| {
            let r: crate::JsonRow = serde_json::from_value(serde_json::json!({
                "org_id": org, "month": month, "invoice_id": "i", "subtotal": 1.0
            }))
            .unwrap();
            crate::row::row_from_json(&REVENUE_ORG, &r).unwrap()
        };
        let all = by_month_bucket(
            &REVENUE_ORG,
            &REVENUE_ALL,
            &[row("o", "2025-07-01"), row("p", "2025-08-01")],
            "month",
        )
        .unwrap();
        // Two orgs: one bucket, numbered 1 (the count 1 plus partition 0 of 1).
        let mut expect: crate::JsonRow = serde_json::from_value(serde_json::json!({
            "org_id": "o", "month": "2025-07-01", "bucket": 1, "invoice_id": "i",
            "subtotal": 1.0
        }))
        .unwrap();
        assert_eq!(
            all[0],
            crate::row::row_from_json(&REVENUE_ALL, &expect).unwrap()
        );
        expect.insert("org_id".into(), "p".into());
        expect.insert("month".into(), "2025-08-01".into());
        assert_eq!(
            all[1],
            crate::row::row_from_json(&REVENUE_ALL, &expect).unwrap()
        );
        assert_eq!(month_bucket_partitions(&all), "2025-07-01/1,2025-08-01/1");
    }

    #[test]
    fn no_revenue_partition_grows_with_the_number_of_orgs() {
        for orgs in [1, 999, 1000, 1001, 5000, 100_000, 1_000_000] {
            let buckets = crate::org_buckets(orgs);
            assert!(buckets.is_power_of_two());
            assert!(orgs.div_ceil(buckets as usize) <= crate::ORGS_PER_BUCKET);
            // Fewer buckets would hold more orgs each.
            assert!(buckets == 1 || orgs.div_ceil(buckets as usize / 2) > crate::ORGS_PER_BUCKET);
        }
        // 100,000 orgs spread over 128 buckets: none holds much more than its share.
        let buckets = crate::org_buckets(100_000);
        let mut sizes = vec![0usize; buckets as usize];
        for i in 0..100_000 {
            let b = crate::org_bucket(&format!("org_{i:06}"), buckets);
            assert!((buckets as i32..2 * buckets as i32).contains(&b));
            sizes[(b - buckets as i32) as usize] += 1;
        }
        let max = sizes.iter().max().unwrap();
        assert!(*max < crate::ORGS_PER_BUCKET * 12 / 10, "{sizes:?}");
        // Counts of buckets never share a bucket number.
        assert!(crate::org_bucket("o", 1) < 2);
        assert!((2..4).contains(&crate::org_bucket("o", 2)));
    }
}
