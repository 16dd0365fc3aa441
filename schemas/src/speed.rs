//! The derived topics' records (SPEC sections 3 and 8), and the one definition of how
//! usage is summed, shared by the speed views and the gold marts.

use serde::{Deserialize, Serialize};

use crate::{EventFlags, SilverEvent};

/// Sums over kept events, as the daily mart defines them: `value` summed per metric
/// (null counts 0), cost without `cost_negative` events, tokens without
/// `tokens_misplaced` ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub events: i64,
    pub requests: f64,
    pub cpu_hours: f64,
    pub storage_gb_hours: f64,
    pub cost_usd: f64,
    pub negative_cost_events: i64,
    pub genai_tokens: i64,
    pub carbon_kg: f64,
}

impl UsageTotals {
    pub fn add(&mut self, e: &SilverEvent, flags: &EventFlags) {
        self.add_row(&MeasureRow {
            metric: &e.metric,
            value: e.value,
            cost_usd: e.cost_usd,
            cost_negative: flags.cost_negative,
            genai_tokens: e.genai_tokens,
            tokens_misplaced: flags.tokens_misplaced,
            carbon_kg: e.carbon_kg,
        });
    }

    /// The one definition of how a kept event's measures enter the sums: `value` per
    /// metric (null counts 0), cost unless `cost_negative`, tokens unless
    /// `tokens_misplaced`, carbon (null counts 0).
    pub fn add_row(&mut self, r: &MeasureRow) {
        self.events += 1;
        let v = r.value.unwrap_or(0.0);
        match r.metric {
            "requests" => self.requests += v,
            "cpu_hours" => self.cpu_hours += v,
            "storage_gb_hours" => self.storage_gb_hours += v,
            _ => {}
        }
        if r.cost_negative {
            self.negative_cost_events += 1;
        } else {
            self.cost_usd += r.cost_usd;
        }
        if !r.tokens_misplaced {
            self.genai_tokens += r.genai_tokens.unwrap_or(0);
        }
        self.carbon_kg += r.carbon_kg.unwrap_or(0.0);
    }
}

impl UsageTotals {
    /// Adds another set of totals (of disjoint events) to these.
    pub fn merge(&mut self, o: &UsageTotals) {
        self.events += o.events;
        self.requests += o.requests;
        self.cpu_hours += o.cpu_hours;
        self.storage_gb_hours += o.storage_gb_hours;
        self.cost_usd += o.cost_usd;
        self.negative_cost_events += o.negative_cost_events;
        self.genai_tokens += o.genai_tokens;
        self.carbon_kg += o.carbon_kg;
    }
}

/// The columns of a kept event that its sums read (from a [`SilverEvent`], or from a
/// row of the silver Parquet files).
#[derive(Debug, Clone, Copy)]
pub struct MeasureRow<'a> {
    pub metric: &'a str,
    pub value: Option<f64>,
    pub cost_usd: f64,
    pub cost_negative: bool,
    pub genai_tokens: Option<i64>,
    pub tokens_misplaced: bool,
    pub carbon_kg: Option<f64>,
}

/// Where a derived record came from in the raw log, and in the landing directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    pub source_file: Option<String>,
    pub line_no: Option<i64>,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// When the record entered the log (its raw record's timestamp), UTC ms.
    pub ingest_ms: i64,
}

impl Lineage {
    /// From a raw record's `source_file` and `line_no` headers and its position.
    pub fn from_headers(
        source_file: Option<&[u8]>,
        line_no: Option<&[u8]>,
        topic: &str,
        partition: u32,
        offset: u64,
        ingest_ms: i64,
    ) -> Lineage {
        Lineage {
            source_file: source_file.map(|b| String::from_utf8_lossy(b).into_owned()),
            line_no: line_no
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(|s| s.parse().ok()),
            topic: topic.to_owned(),
            partition,
            offset,
            ingest_ms,
        }
    }
}

/// A record of `silver.usage_events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilverMessage {
    pub event: SilverEvent,
    pub flags: EventFlags,
    pub lineage: Lineage,
}

/// A record of `speed.usage_windows`: one final 1-hour window of one org and service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowMessage {
    pub org_id: String,
    pub service: String,
    /// UTC microseconds; windows are aligned to the epoch.
    pub window_start: i64,
    pub window_end: i64,
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// A record of `speed.daily_usage`: the running totals of one `(org_id, usage_date,
/// service)`, with the columns of the gold daily mart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyMessage {
    pub org_id: String,
    /// Days since the epoch (UTC calendar date).
    pub usage_date: i32,
    pub service: String,
    pub org_name: String,
    pub industry: String,
    pub plan_tier: String,
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// A record of `speed.late_events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateMessage {
    pub event_id: String,
    pub org_id: String,
    /// UTC microseconds.
    pub event_time: i64,
    pub watermark: i64,
    pub partition: u32,
    pub offset: u64,
}

/// Window geometry of SPEC section 8.
pub const WINDOW_MICROS: i64 = 3_600_000_000;
pub const SLIDE_MICROS: i64 = 1_800_000_000;

/// The starts of the two windows an event at `ts` belongs to, earlier first.
pub fn window_starts(ts: i64) -> [i64; 2] {
    let later = ts.div_euclid(SLIDE_MICROS) * SLIDE_MICROS;
    [later - SLIDE_MICROS, later]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_in_two_aligned_windows() {
        let t = crate::time::parse_timestamp_micros("2025-07-01T10:40:00Z").unwrap_or(0);
        let [a, b] = window_starts(t);
        assert_eq!(crate::time::format_micros(a), "2025-07-01T10:00:00Z");
        assert_eq!(crate::time::format_micros(b), "2025-07-01T10:30:00Z");
        for s in [a, b] {
            assert!(s <= t && t < s + WINDOW_MICROS);
        }
        // On a boundary, the event opens a window and sits in the one before.
        let t = crate::time::parse_timestamp_micros("2025-07-01T10:30:00Z").unwrap_or(0);
        assert_eq!(window_starts(t), [t - SLIDE_MICROS, t]);
    }
}
