//! `serving publish`: the gold marts of the current lake generation and the
//! real-time view (`speed.daily_usage`, read up to the processor's committed
//! positions) into the serving tables.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use compactor::cursor::Cursor;
use compactor::table::json_rows;
use eventlog::{Bytes, Log, PartitionReader, StoredRecord};
use schemas::topics::{COMMITTED_OUTPUTS, DAILY_TOPIC};
use serde_json::Value;

use crate::{
    DAILY, GENAI, JsonRow, META_BATCH_HIGH_WATER, META_ORGS, META_PUBLISHED, META_REVENUE_YEARS,
    META_SPEED_ORGS, META_SPEED_POSITIONS, META_TICKETS_LATEST, OrgRange, REVENUE_ALL, REVENUE_ORG,
    SPEED_DAILY, ServingStore, TICKETS, daily_org_range, extend_org_ranges,
};

/// Rows published per table.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PublishReport {
    pub rows: BTreeMap<&'static str, usize>,
    /// The real-time view was read from where the last publish stopped.
    pub speed_incremental: bool,
}

fn max_text(rows: &[JsonRow], col: &str) -> Option<String> {
    rows.iter()
        .filter_map(|r| r.get(col).and_then(Value::as_str))
        .max()
        .map(str::to_owned)
}

/// A `speed.daily_usage` record, undecoded: most are overwritten by a later one of
/// the same key, so only the key is read from each, and only the last per key is
/// decoded in full.
fn undecoded(r: StoredRecord) -> Result<(u64, Bytes)> {
    Ok((r.offset, r.record.value))
}

/// The last record of one key of `speed.daily_usage`.
struct Latest {
    org_id: String,
    usage_date: i32,
    service: String,
    value: Bytes,
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

impl<'a> DailyKey<'a> {
    /// The key read by position from a record as the processor writes it
    /// (`{"org_id":"…","usage_date":N,"service":"…",`, the `DailyMessage` field
    /// order); `None` for anything else (escapes included), which serde then reads.
    fn fast(json: &'a [u8]) -> Option<DailyKey<'a>> {
        fn text<'b>(rest: &'b [u8], prefix: &[u8]) -> Option<(&'b str, &'b [u8])> {
            let rest = rest.strip_prefix(prefix)?;
            let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
            (rest[end] == b'"').then_some(())?;
            Some((std::str::from_utf8(&rest[..end]).ok()?, &rest[end + 1..]))
        }
        let (org_id, rest) = text(json, b"{\"org_id\":\"")?;
        let rest = rest.strip_prefix(b",\"usage_date\":")?;
        let end = rest.iter().position(|&b| b == b',')?;
        let usage_date: i32 = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
        let (service, _) = text(&rest[end..], b",\"service\":\"")?;
        Some(DailyKey {
            org_id: org_id.into(),
            usage_date,
            service: service.into(),
        })
    }
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
) -> Result<(Vec<JsonRow>, SpeedPositions, bool)> {
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
    // The last record per key, keyed by `org_id \0 usage_date \0 service` (a key is
    // built in one reused buffer and allocated only when it is new).
    let mut latest: HashMap<String, Latest> = HashMap::new();
    let mut key = String::new();
    let mut positions = SpeedPositions::new();
    for (p, &end) in ends.iter().enumerate() {
        let p = p as u32;
        let from = match (incremental, since) {
            (true, Some(s)) => s.get(&p).map_or(0, |x| x.0),
            _ => 0,
        };
        let mut last: Option<Bytes> = None;
        let mut cur = Cursor::new(log, DAILY_TOPIC, p, from, end, undecoded)?;
        while let Some((_, value)) = cur.next()? {
            let k = match DailyKey::fast(&value) {
                Some(k) => k,
                None => serde_json::from_slice(&value)?,
            };
            key.clear();
            write!(key, "{}\0{}\0{}", k.org_id, k.usage_date, k.service)?;
            match latest.get_mut(key.as_str()) {
                Some(v) => v.value = value.clone(),
                None => {
                    let l = Latest {
                        org_id: k.org_id.into_owned(),
                        usage_date: k.usage_date,
                        service: k.service.into_owned(),
                        value: value.clone(),
                    };
                    latest.insert(key.clone(), l);
                }
            }
            last = Some(value);
        }
        let last_crc = match last {
            Some(v) => crc32c::crc32c(&v),
            None => since.and_then(|s| s.get(&p)).map_or(0, |x| x.1),
        };
        positions.insert(p, (end, if end == 0 { 0 } else { last_crc }));
    }
    // In key order, so that a publish writes in a stable order. The stored record is
    // the row (a `DailyMessage` as JSON) but for its date: a day number in the topic,
    // a date in the table.
    let mut latest: Vec<Latest> = latest.into_values().collect();
    latest.sort_by(|a, b| {
        (&a.org_id, a.usage_date, &a.service).cmp(&(&b.org_id, b.usage_date, &b.service))
    });
    let rows = latest
        .into_iter()
        .map(|l| {
            let mut row: JsonRow = serde_json::from_slice(&l.value)?;
            let date = schemas::time::days_to_date(l.usage_date)
                .map(|d| d.to_string())
                .unwrap_or_default();
            row.insert("usage_date".into(), Value::from(date));
            Ok(row)
        })
        .collect::<Result<_>>()?;
    Ok((rows, positions, incremental))
}

/// The marts a publish reads from the lake's gold directory.
struct Marts {
    daily: Vec<JsonRow>,
    tickets: Vec<JsonRow>,
    revenue: Vec<JsonRow>,
    genai: Vec<JsonRow>,
}

fn read_marts(gold: &Path) -> Result<Marts> {
    Ok(Marts {
        daily: json_rows(&gold.join(compactor::gold::DAILY))?,
        tickets: json_rows(&gold.join(compactor::gold::TICKETS_SEVERITY))?,
        revenue: json_rows(&gold.join(compactor::gold::REVENUE))?,
        genai: json_rows(&gold.join(compactor::gold::GENAI))?,
    })
}

/// Publishes every serving table from the lake at `lake` and the log.
pub fn publish(
    store: &(impl ServingStore + Sync),
    lake: &Path,
    log: &impl Log,
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
    // reads the log, the other Parquet files.
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
        let marts = read_marts(&gold);
        let speed = speed
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("reading the real-time view panicked")));
        (speed, marts)
    });
    let (speed, positions, incremental) = speed?;
    let Marts {
        daily,
        tickets,
        revenue,
        genai,
    } = marts?;
    let revenue_all: Vec<JsonRow> = revenue
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let year = r
                .get("month")
                .and_then(Value::as_str)
                .and_then(|m| m.get(..4))
                .and_then(|y| y.parse::<i64>().ok())
                .unwrap_or(0);
            r.insert("year".into(), Value::from(year));
            r
        })
        .collect();
    for (table, rows) in [
        (&DAILY, &daily),
        (&TICKETS, &tickets),
        (&REVENUE_ORG, &revenue),
        (&REVENUE_ALL, &revenue_all),
        (&GENAI, &genai),
    ] {
        store.replace_table(table, rows)?;
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
    extend_org_ranges(&mut speed_orgs, speed.iter().map(daily_org_range));
    let speed_orgs: Vec<OrgRange> = speed_orgs.into_values().collect();
    let speed_orgs_json = serde_json::to_string(&speed_orgs)?;
    report.rows.insert(SPEED_DAILY.name, speed.len());
    report.speed_incremental = incremental;
    let mut orgs: BTreeMap<String, OrgRange> = BTreeMap::new();
    extend_org_ranges(&mut orgs, daily.iter().map(daily_org_range));
    extend_org_ranges(&mut orgs, speed_orgs);
    let orgs: Vec<OrgRange> = orgs.into_values().collect();
    let mut metas: Vec<(&str, String)> = vec![
        (META_SPEED_ORGS, speed_orgs_json),
        (META_SPEED_POSITIONS, serde_json::to_string(&positions)?),
        (META_ORGS, serde_json::to_string(&orgs)?),
    ];
    // The high-water marks go last: a query never looks past the rows it can see.
    if let Some(d) = max_text(&daily, "usage_date") {
        metas.push((META_BATCH_HIGH_WATER, d));
    }
    if let Some(d) = max_text(&tickets, "created_date") {
        metas.push((META_TICKETS_LATEST, d));
    }
    let mut years: Vec<String> = revenue_all
        .iter()
        .map(|r| crate::key_text(r.get("year")))
        .collect();
    years.sort();
    years.dedup();
    metas.push((META_REVENUE_YEARS, years.join(",")));
    metas.push((
        META_PUBLISHED,
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    ));
    store.put_metas(&metas)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_fast_key_reader_agrees_with_serde_or_steps_aside() {
        let m = schemas::speed::DailyMessage {
            org_id: "org_1".into(),
            usage_date: 20_300,
            service: "compute".into(),
            org_name: "A \"quoted\" name".into(),
            industry: "x".into(),
            plan_tier: "pro".into(),
            totals: Default::default(),
        };
        let bytes = serde_json::to_vec(&m).unwrap();
        let serde: DailyKey = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(DailyKey::fast(&bytes), Some(serde));
        // An escape in a key, another field order, negative days, garbage: serde's turn
        // (or serde's error).
        for other in [
            r#"{"org_id":"a\"b","usage_date":1,"service":"s"}"#,
            r#"{"usage_date":1,"org_id":"a","service":"s"}"#,
            r#"{"org_id":"a","usage_date":x,"service":"s"}"#,
            "{",
            "",
        ] {
            assert_eq!(DailyKey::fast(other.as_bytes()), None, "{other}");
        }
        assert_eq!(
            DailyKey::fast(br#"{"org_id":"a","usage_date":-3,"service":"s","x":1}"#),
            Some(DailyKey {
                org_id: "a".into(),
                usage_date: -3,
                service: "s".into()
            })
        );
    }
}
