//! `serving publish`: the gold marts of the current lake generation and the
//! real-time view (`speed.daily_usage`, read up to the processor's committed
//! positions) into the serving tables.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use compactor::table::json_rows;
use eventlog::{Log, PartitionReader};
use schemas::speed::DailyMessage;
use schemas::topics::{COMMITTED_OUTPUTS, DAILY_TOPIC};
use serde_json::Value;

use crate::{
    DAILY, GENAI, JsonRow, META_BATCH_HIGH_WATER, META_REVENUE_YEARS, META_TICKETS_LATEST,
    REVENUE_ALL, REVENUE_ORG, SPEED_DAILY, ServingStore, TICKETS,
};

/// Rows published per table.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PublishReport {
    pub rows: BTreeMap<&'static str, usize>,
}

fn max_text(rows: &[JsonRow], col: &str) -> Option<String> {
    rows.iter()
        .filter_map(|r| r.get(col).and_then(Value::as_str))
        .max()
        .map(str::to_owned)
}

/// The real-time view: the last value per `(org_id, usage_date, service)` of
/// `speed.daily_usage`, up to what the processor committed.
pub fn speed_rows(log: &impl Log) -> Result<Vec<JsonRow>> {
    let mut latest: BTreeMap<(String, i32, String), DailyMessage> = BTreeMap::new();
    let parts = log.partitions(DAILY_TOPIC)?.unwrap_or(0);
    for p in 0..parts {
        let end = log
            .committed(COMMITTED_OUTPUTS, DAILY_TOPIC, p)?
            .unwrap_or(0);
        let mut r = log.reader(DAILY_TOPIC, p, 0)?;
        while r.position() < end {
            let batch = r.poll(10_000)?;
            if batch.is_empty() {
                anyhow::bail!("{DAILY_TOPIC}/{p} ends before its committed position {end}");
            }
            for rec in batch.into_iter().filter(|r| r.offset < end) {
                let m: DailyMessage = serde_json::from_slice(&rec.record.value)
                    .with_context(|| format!("{DAILY_TOPIC}/{p} offset {}", rec.offset))?;
                latest.insert((m.org_id.clone(), m.usage_date, m.service.clone()), m);
            }
        }
    }
    latest
        .into_values()
        .map(|m| {
            let date = schemas::time::days_to_date(m.usage_date)
                .map(|d| d.to_string())
                .unwrap_or_default();
            let mut v = serde_json::to_value(&m)?;
            v["usage_date"] = Value::from(date);
            Ok(serde_json::from_value(v)?)
        })
        .collect()
}

/// Publishes every serving table from the lake at `lake` and the log.
pub fn publish(store: &impl ServingStore, lake: &Path, log: &impl Log) -> Result<PublishReport> {
    let gold = lake.join("gold");
    if !gold.exists() {
        anyhow::bail!(
            "no gold marts at {}: run `compactor --once` first",
            gold.display()
        );
    }
    let mut report = PublishReport::default();
    let daily = json_rows(&gold.join(compactor::gold::DAILY))?;
    let tickets = json_rows(&gold.join(compactor::gold::TICKETS_SEVERITY))?;
    let revenue = json_rows(&gold.join(compactor::gold::REVENUE))?;
    let genai = json_rows(&gold.join(compactor::gold::GENAI))?;
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
    let speed = speed_rows(log)?;
    for (table, rows) in [
        (&DAILY, &daily),
        (&TICKETS, &tickets),
        (&REVENUE_ORG, &revenue),
        (&REVENUE_ALL, &revenue_all),
        (&GENAI, &genai),
        (&SPEED_DAILY, &speed),
    ] {
        store.replace_table(table, rows)?;
        report.rows.insert(table.name, rows.len());
    }
    // The high-water marks go last: a query never looks past the rows it can see.
    if let Some(d) = max_text(&daily, "usage_date") {
        store.put_meta(META_BATCH_HIGH_WATER, &d)?;
    }
    if let Some(d) = max_text(&tickets, "created_date") {
        store.put_meta(META_TICKETS_LATEST, &d)?;
    }
    let mut years: Vec<String> = revenue_all
        .iter()
        .map(|r| crate::key_text(r.get("year")))
        .collect();
    years.sort();
    years.dedup();
    store.put_meta(META_REVENUE_YEARS, &years.join(","))?;
    Ok(report)
}
