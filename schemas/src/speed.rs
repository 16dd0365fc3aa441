//! The derived topics' records (SPEC sections 3 and 8), and the one definition of how
//! usage is summed, shared by the speed views and the gold marts.

use std::sync::Arc;

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
    /// Shared by the records of one file ([`LineageBuilder`]).
    pub source_file: Option<Arc<str>>,
    pub line_no: Option<i64>,
    /// A raw topic's name: borrowed when built from a record, owned when read back.
    pub topic: std::borrow::Cow<'static, str>,
    pub partition: u32,
    pub offset: u64,
    /// When the record entered the log (its raw record's timestamp), UTC ms.
    pub ingest_ms: i64,
}

/// Builds the lineages of a reader's records. A landing file's records share its
/// name instead of each copying it (and checking it for UTF-8 again); replayed in
/// event-time order, consecutive records come from many files, so the names are kept
/// by value (at most [`LineageBuilder::FILES`] of them: memory stays bounded).
#[derive(Debug, Default)]
pub struct LineageBuilder {
    files: foldhash::HashMap<Box<[u8]>, Arc<str>>,
}

impl LineageBuilder {
    pub const FILES: usize = 4096;

    /// From a raw record's `source_file` and `line_no` headers and its position.
    pub fn lineage(
        &mut self,
        source_file: Option<&[u8]>,
        line_no: Option<&[u8]>,
        topic: &'static str,
        partition: u32,
        offset: u64,
        ingest_ms: i64,
    ) -> Lineage {
        let source_file = source_file.map(|b| match self.files.get(b) {
            Some(name) => name.clone(),
            None => {
                if self.files.len() >= Self::FILES {
                    self.files.clear();
                }
                let name: Arc<str> = String::from_utf8_lossy(b).into();
                self.files.insert(b.into(), name.clone());
                name
            }
        });
        Lineage {
            source_file,
            line_no: line_no.and_then(crate::written::decimal_i64),
            topic: std::borrow::Cow::Borrowed(topic),
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
    pub lineage: RawPosition,
}

/// Where a silver record came from: its record in `raw.usage_events`, whose
/// `source_file` and `line_no` headers name the landing file and line. (Silver
/// records carried both, and the raw topic's name, until the second version of
/// their schema: about a fifth of their bytes, the same for every event of a file.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawPosition {
    pub partition: u32,
    pub offset: u64,
    /// When the raw record entered the log (its timestamp), UTC ms.
    pub ingest_ms: i64,
}

/// What a reader of `silver.usage_events` needs of a record: the event, its flags
/// and the raw offset it came from.
pub type SilverParts = (SilverEvent, EventFlags, u64);

/// The fields the two versions of the silver schema share: the event and its flags.
macro_rules! silver_event_and_flags {
    () => {
        concat!(
            r#"{"name":"event","type":{"name":"usage_pipeline.SilverEvent","type":"record","fields":["#,
            r#"{"name":"event_id","type":"string"},{"name":"ts_micros","type":"long"},"#,
            r#"{"name":"usage_date","type":"int"},{"name":"org_id","type":"string"},"#,
            r#"{"name":"resource_id","type":"string"},{"name":"service","type":"string"},"#,
            r#"{"name":"region","type":"string"},{"name":"metric","type":"string"},"#,
            r#"{"name":"value","type":["null","double"]},{"name":"unit","type":"string"},"#,
            r#"{"name":"cost_usd","type":"double"},{"name":"schema_version","type":"int"},"#,
            r#"{"name":"carbon_kg","type":["null","double"]},{"name":"genai_tokens","type":["null","long"]},"#,
            r#"{"name":"org_name","type":"string"},{"name":"industry","type":"string"},"#,
            r#"{"name":"plan_tier","type":"string"},{"name":"hq_region","type":"string"},"#,
            r#"{"name":"resource_state","type":"string"},{"name":"resource_created_at","type":"int"}]}},"#,
            r#"{"name":"flags","type":{"name":"usage_pipeline.EventFlags","type":"record","fields":["#,
            r#"{"name":"unit_imputed","type":"boolean"},{"name":"cost_negative","type":"boolean"},"#,
            r#"{"name":"cost_spike","type":"boolean"},{"name":"tokens_misplaced","type":"boolean"},"#,
            r#"{"name":"before_resource","type":"boolean"}]}},"#,
        )
    };
}

/// The Parsing Canonical Form of `schemas/avro/silver_usage_event.avsc`, the schema
/// `silver.usage_events` records are written in (a test holds the two equal).
pub const SILVER_AVRO_SCHEMA: &str = concat!(
    r#"{"name":"usage_pipeline.SilverUsageEvent","type":"record","fields":["#,
    silver_event_and_flags!(),
    r#"{"name":"lineage","type":{"name":"usage_pipeline.RawPosition","type":"record","fields":["#,
    r#"{"name":"partition","type":"long"},{"name":"offset","type":"long"},"#,
    r#"{"name":"ingest_ms","type":"long"}]}}]}"#,
);

/// The first version of the schema (`schemas/avro/silver_usage_event.v1.avsc`), its
/// lineage with the landing file, the line and the raw topic's name: still read.
pub const SILVER_AVRO_SCHEMA_V1: &str = concat!(
    r#"{"name":"usage_pipeline.SilverUsageEvent","type":"record","fields":["#,
    silver_event_and_flags!(),
    r#"{"name":"lineage","type":{"name":"usage_pipeline.Lineage","type":"record","fields":["#,
    r#"{"name":"source_file","type":["null","string"]},{"name":"line_no","type":["null","long"]},"#,
    r#"{"name":"topic","type":"string"},{"name":"partition","type":"long"},"#,
    r#"{"name":"offset","type":"long"},{"name":"ingest_ms","type":"long"}]}}]}"#,
);

/// What every record of [`SILVER_AVRO_SCHEMA`] starts with.
const SILVER_AVRO_HEADER: [u8; 10] = crate::avro::header(SILVER_AVRO_SCHEMA);
/// And every record of [`SILVER_AVRO_SCHEMA_V1`].
const SILVER_AVRO_HEADER_V1: [u8; 10] = crate::avro::header(SILVER_AVRO_SCHEMA_V1);

/// A derived record (`silver.usage_events`, `speed.usage_windows`) that cannot be
/// read.
#[derive(Debug, thiserror::Error)]
pub enum RecordReadError {
    #[error("{0} record: its bytes are not a datum of its Avro schema")]
    Avro(&'static str),
    #[error("{0} record of another Avro schema (fingerprint {1:016x})")]
    OtherSchema(&'static str, u64),
    #[error("JSON record: {0}")]
    Json(#[from] serde_json::Error),
}

impl SilverMessage {
    /// The record as the processor writes it: Avro single-object encoding of
    /// [`SILVER_AVRO_SCHEMA`] (`schemas/avro/silver_usage_event.avsc`).
    pub fn write_avro(&self, out: &mut Vec<u8>) {
        let (e, f, l) = (&self.event, &self.flags, &self.lineage);
        out.extend_from_slice(&SILVER_AVRO_HEADER);
        let mut w = crate::avro::AvroWriter::new(out);
        let double = |w: &mut crate::avro::AvroWriter<'_>, v: f64| {
            w.double(v);
        };
        let long = |w: &mut crate::avro::AvroWriter<'_>, v: i64| {
            w.long(v);
        };
        w.string(&e.event_id)
            .long(e.ts_micros)
            .long(e.usage_date.into())
            .string(&e.org_id)
            .string(&e.resource_id)
            .string(&e.service)
            .string(&e.region)
            .string(&e.metric)
            .optional(e.value, double)
            .string(&e.unit)
            .double(e.cost_usd)
            .long(e.schema_version.into())
            .optional(e.carbon_kg, double)
            .optional(e.genai_tokens, long)
            .string(&e.org_name)
            .string(&e.industry)
            .string(&e.plan_tier)
            .string(&e.hq_region)
            .string(&e.resource_state)
            .long(e.resource_created_at.into());
        for v in f.values() {
            w.boolean(v);
        }
        w.long(l.partition.into())
            .long(l.offset as i64)
            .long(l.ingest_ms);
    }

    /// What the compactor needs of a record: the event, its flags and the raw offset.
    /// Reads the Avro the processor writes, and the JSON earlier versions wrote.
    pub fn read(bytes: &[u8]) -> Result<SilverParts, RecordReadError> {
        match Self::read_avro(bytes)? {
            Some((event, flags, lineage)) => Ok((event, flags, lineage.offset)),
            None => {
                let m: SilverMessage = serde_json::from_slice(bytes)?;
                Ok((m.event, m.flags, m.lineage.offset))
            }
        }
    }

    /// The whole record, as [`read`](Self::read) reads it.
    pub fn decode(bytes: &[u8]) -> Result<SilverMessage, RecordReadError> {
        match Self::read_avro(bytes)? {
            Some((event, flags, lineage)) => Ok(SilverMessage {
                event,
                flags,
                lineage,
            }),
            None => Ok(serde_json::from_slice(bytes)?),
        }
    }

    /// `Ok(None)` when `bytes` is not Avro single-object encoded at all. Records of
    /// either version of the schema are read; of the first one's lineage, what the
    /// second keeps.
    fn read_avro(
        bytes: &[u8],
    ) -> Result<Option<(SilverEvent, EventFlags, RawPosition)>, RecordReadError> {
        let (mut r, v1) = match crate::avro::AvroReader::of_schema(bytes, &SILVER_AVRO_HEADER) {
            Ok(Some(r)) => (r, false),
            Ok(None) => return Ok(None),
            Err(fp) => match crate::avro::AvroReader::of_schema(bytes, &SILVER_AVRO_HEADER_V1) {
                Ok(Some(r)) => (r, true),
                _ => return Err(RecordReadError::OtherSchema("silver", fp)),
            },
        };
        let mut read = || -> Option<_> {
            let text = |r: &mut crate::avro::AvroReader<'_>| r.string().map(str::to_owned);
            let shared = |r: &mut crate::avro::AvroReader<'_>| r.string().map(Arc::<str>::from);
            let categorical = |r: &mut crate::avro::AvroReader<'_>, allowed: &[&'static str]| {
                crate::domain::categorical_bytes(r.string_bytes()?, allowed)
            };
            let double = |r: &mut crate::avro::AvroReader<'_>| r.double();
            let event = SilverEvent {
                event_id: text(&mut r)?,
                ts_micros: r.long()?,
                usage_date: r.int()?,
                org_id: text(&mut r)?,
                resource_id: text(&mut r)?,
                service: categorical(&mut r, &crate::domain::SERVICES)?,
                region: categorical(&mut r, &crate::domain::REGIONS)?,
                metric: categorical(&mut r, &crate::domain::METRICS)?,
                value: r.optional(double)?,
                unit: categorical(&mut r, &crate::domain::UNITS)?,
                cost_usd: r.double()?,
                schema_version: r.long()?.try_into().ok()?,
                carbon_kg: r.optional(double)?,
                genai_tokens: r.optional(|r| r.long())?,
                org_name: shared(&mut r)?,
                industry: categorical(&mut r, &crate::domain::INDUSTRIES)?,
                plan_tier: categorical(&mut r, &crate::domain::PLAN_TIERS)?,
                hq_region: categorical(&mut r, &crate::domain::REGIONS)?,
                resource_state: categorical(&mut r, &crate::domain::RESOURCE_STATES)?,
                resource_created_at: r.int()?,
            };
            let flags = EventFlags {
                unit_imputed: r.boolean()?,
                cost_negative: r.boolean()?,
                cost_spike: r.boolean()?,
                tokens_misplaced: r.boolean()?,
                before_resource: r.boolean()?,
            };
            if v1 {
                // source_file, line_no and the raw topic's name.
                r.optional(|r| r.string())?;
                r.optional(|r| r.long())?;
                r.string()?;
            }
            let lineage = RawPosition {
                partition: r.long()?.try_into().ok()?,
                offset: r.long()?.try_into().ok()?,
                ingest_ms: r.long()?,
            };
            r.end()?;
            Some((event, flags, lineage))
        };
        read().map(Some).ok_or(RecordReadError::Avro("silver"))
    }
}

/// Declares the flat form a message with flattened totals is read from: its own
/// fields, then [`UsageTotals`]' fields beside them, as the JSON has them. (serde's
/// `flatten` buffers every field of a record before reading any, which made reading
/// these records several times slower.)
macro_rules! read_flat {
    ($flat:ident => $msg:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        #[derive(Deserialize)]
        struct $flat {
            $($field: $ty,)*
            events: i64,
            requests: f64,
            cpu_hours: f64,
            storage_gb_hours: f64,
            cost_usd: f64,
            negative_cost_events: i64,
            genai_tokens: i64,
            carbon_kg: f64,
        }

        impl From<$flat> for $msg {
            fn from(f: $flat) -> Self {
                $msg {
                    $($field: f.$field,)*
                    totals: UsageTotals {
                        events: f.events,
                        requests: f.requests,
                        cpu_hours: f.cpu_hours,
                        storage_gb_hours: f.storage_gb_hours,
                        cost_usd: f.cost_usd,
                        negative_cost_events: f.negative_cost_events,
                        genai_tokens: f.genai_tokens,
                        carbon_kg: f.carbon_kg,
                    },
                }
            }
        }
    };
}

read_flat!(FlatWindow => WindowMessage {
    org_id: String,
    service: String,
    window_start: i64,
    window_end: i64,
});

read_flat!(FlatDaily => DailyMessage {
    org_id: String,
    usage_date: i32,
    service: String,
    org_name: String,
    industry: String,
    plan_tier: String,
});

/// A record of `speed.usage_windows`: one final 1-hour window of one org and service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "FlatWindow")]
pub struct WindowMessage {
    pub org_id: String,
    pub service: String,
    /// UTC microseconds; windows are aligned to the epoch.
    pub window_start: i64,
    pub window_end: i64,
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// The Parsing Canonical Form of `schemas/avro/usage_window.avsc`, the schema
/// `speed.usage_windows` records are written in (a test holds the two equal).
pub const WINDOW_AVRO_SCHEMA: &str = concat!(
    r#"{"name":"usage_pipeline.UsageWindow","type":"record","fields":["#,
    r#"{"name":"org_id","type":"string"},{"name":"service","type":"string"},"#,
    r#"{"name":"window_start","type":"long"},{"name":"window_end","type":"long"},"#,
    r#"{"name":"events","type":"long"},{"name":"requests","type":"double"},"#,
    r#"{"name":"cpu_hours","type":"double"},{"name":"storage_gb_hours","type":"double"},"#,
    r#"{"name":"cost_usd","type":"double"},{"name":"negative_cost_events","type":"long"},"#,
    r#"{"name":"genai_tokens","type":"long"},{"name":"carbon_kg","type":"double"}]}"#,
);

const WINDOW_AVRO_HEADER: [u8; 10] = crate::avro::header(WINDOW_AVRO_SCHEMA);

/// [`WindowMessage::write_avro`] of a window's borrowed parts (no message built).
pub fn write_window_avro(
    out: &mut Vec<u8>,
    org_id: &str,
    service: &str,
    (window_start, window_end): (i64, i64),
    t: &UsageTotals,
) {
    out.extend_from_slice(&WINDOW_AVRO_HEADER);
    crate::avro::AvroWriter::new(out)
        .string(org_id)
        .string(service)
        .long(window_start)
        .long(window_end)
        .long(t.events)
        .double(t.requests)
        .double(t.cpu_hours)
        .double(t.storage_gb_hours)
        .double(t.cost_usd)
        .long(t.negative_cost_events)
        .long(t.genai_tokens)
        .double(t.carbon_kg);
}

impl WindowMessage {
    /// The record as the processor writes it: Avro single-object encoding of
    /// [`WINDOW_AVRO_SCHEMA`] (`schemas/avro/usage_window.avsc`), the totals beside
    /// the other fields as in the JSON form.
    pub fn write_avro(&self, out: &mut Vec<u8>) {
        write_window_avro(
            out,
            &self.org_id,
            &self.service,
            (self.window_start, self.window_end),
            &self.totals,
        );
    }

    /// A record as [`write_avro`](Self::write_avro) writes it, or in the JSON
    /// earlier processors wrote.
    pub fn decode(bytes: &[u8]) -> Result<WindowMessage, RecordReadError> {
        let Some(mut r) = crate::avro::AvroReader::of_schema(bytes, &WINDOW_AVRO_HEADER)
            .map_err(|fp| RecordReadError::OtherSchema("window", fp))?
        else {
            return Ok(serde_json::from_slice(bytes)?);
        };
        let mut read = || -> Option<WindowMessage> {
            let w = WindowMessage {
                org_id: r.string()?.to_owned(),
                service: r.string()?.to_owned(),
                window_start: r.long()?,
                window_end: r.long()?,
                totals: UsageTotals {
                    events: r.long()?,
                    requests: r.double()?,
                    cpu_hours: r.double()?,
                    storage_gb_hours: r.double()?,
                    cost_usd: r.double()?,
                    negative_cost_events: r.long()?,
                    genai_tokens: r.long()?,
                    carbon_kg: r.double()?,
                },
            };
            r.end()?;
            Some(w)
        };
        read().ok_or(RecordReadError::Avro("window"))
    }
}

/// A record of `speed.daily_usage`: the running totals of one `(org_id, usage_date,
/// service)`, with the columns of the gold daily mart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "FlatDaily")]
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

impl DailyMessage {
    /// The record's key on `speed.daily_usage`: `org_id|usage_date|service`. Each
    /// record supersedes the one before with the same key, so the topic is compacted
    /// by it (SPEC section 3); it stays in its org's partition, as the processor
    /// places it.
    pub fn record_key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.org_id,
            crate::time::date_text(self.usage_date),
            self.service
        )
    }
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
    fn records_of_one_file_share_its_name() {
        let mut b = LineageBuilder::default();
        let t = "raw.usage_events";
        let a1 = b.lineage(Some(b"a.jsonl"), Some(b"1"), t, 0, 0, 5);
        let a2 = b.lineage(Some(b"a.jsonl"), Some(b"2"), t, 0, 1, 5);
        let other = b.lineage(Some(b"b.jsonl"), Some(b"x"), t, 1, 2, 6);
        // Files interleave (a replay in event-time order): names are still shared.
        let a3 = b.lineage(Some(b"a.jsonl"), None, t, 0, 9, 5);
        assert!(Arc::ptr_eq(
            a1.source_file.as_ref().unwrap(),
            a3.source_file.as_ref().unwrap()
        ));
        let none = b.lineage(None, None, t, 1, 3, 6);
        let bad = b.lineage(Some(b"c\xff.jsonl"), None, t, 1, 4, 6);
        let (f1, f2) = (a1.source_file.unwrap(), a2.source_file.unwrap());
        assert!(Arc::ptr_eq(&f1, &f2));
        assert_eq!(&*f1, "a.jsonl");
        assert_eq!((a1.line_no, a2.line_no), (Some(1), Some(2)));
        assert_eq!(other.source_file.as_deref(), Some("b.jsonl"));
        assert_eq!((other.line_no, other.partition, other.offset), (None, 1, 2));
        assert_eq!((none.source_file, none.ingest_ms), (None, 6));
        assert_eq!(bad.source_file.as_deref(), Some("c\u{fffd}.jsonl"));
    }

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

    /// Totals whose numbers are hard to carry: a sum that is no short decimal, a
    /// tiny value, a negative zero, an extreme integer.
    fn odd_totals() -> UsageTotals {
        UsageTotals {
            events: 3,
            requests: 0.1 + 0.2,
            cpu_hours: 1e-300,
            storage_gb_hours: 274.123_599_999_999_95,
            cost_usd: -0.0,
            negative_cost_events: 1,
            genai_tokens: i64::MAX,
            carbon_kg: 5.0,
        }
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn messages_with_totals_read_back_what_they_wrote() {
        let totals = odd_totals();
        let w = WindowMessage {
            org_id: "o \"1\"".into(),
            service: "compute".into(),
            window_start: -1,
            window_end: i64::MAX,
            totals,
        };
        let json = serde_json::to_string(&w).unwrap();
        // Through Avro bit for bit, non-finite doubles too; cut short, an error; the
        // JSON earlier processors wrote is still read.
        for w in [
            w.clone(),
            WindowMessage {
                totals: UsageTotals {
                    cost_usd: f64::NAN,
                    requests: f64::NEG_INFINITY,
                    ..totals
                },
                ..w.clone()
            },
        ] {
            let mut written = Vec::new();
            w.write_avro(&mut written);
            let back = WindowMessage::decode(&written).unwrap();
            assert_eq!(format!("{back:?}"), format!("{w:?}"));
            assert_eq!(back.totals.cost_usd.to_bits(), w.totals.cost_usd.to_bits());
            for cut in [written.len() - 1, 10, 12] {
                assert!(WindowMessage::decode(&written[..cut]).is_err(), "{cut}");
            }
            assert!(matches!(
                SilverMessage::decode(&written),
                Err(RecordReadError::OtherSchema("silver", _))
            ));
        }
        assert_eq!(WindowMessage::decode(json.as_bytes()).unwrap(), w);
        // Written flat: the totals beside the other fields.
        assert!(
            json.contains(r#""window_end":9223372036854775807,"events":3,"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<WindowMessage>(&json).unwrap(), w);
        let d = DailyMessage {
            org_id: "o".into(),
            usage_date: -5,
            service: "s".into(),
            org_name: "ünï".into(),
            industry: "i".into(),
            plan_tier: "p".into(),
            totals,
        };
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<DailyMessage>(&json).unwrap(), d);
        // Another field order, an unknown field: read as before; a missing total: an
        // error.
        let reordered = r#"{"events":3,"requests":0.0,"cpu_hours":0.0,"storage_gb_hours":0.0,"cost_usd":0.0,"negative_cost_events":0,"genai_tokens":0,"carbon_kg":0.0,"window_end":2,"window_start":1,"service":"s","org_id":"o","x":[1]}"#;
        let r: WindowMessage = serde_json::from_str(reordered).unwrap();
        assert_eq!((r.window_start, r.totals.events), (1, 3));
        let missing = reordered.replace(r#""carbon_kg":0.0,"#, "");
        assert!(serde_json::from_str::<WindowMessage>(&missing).is_err());
    }

    /// `n` silver messages of every shape: odd strings, nulls, extreme numbers.
    fn messages(n: usize) -> impl Iterator<Item = SilverMessage> {
        let mut x = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let texts = [
            "evt-1",
            "",
            "ünïcode",
            "a \"quoted\" name",
            "tab\there",
            "back\\slash",
        ];
        let double = |n: u64| match n % 4 {
            0 => Some(f64::from_bits(n))
                .filter(|v| v.is_finite())
                .unwrap_or(2.5),
            1 => (n % 100_000) as f64 / 1000.0,
            2 => -((n % 7) as f64) - 0.0,
            _ => 0.1 + (n % 1000) as f64,
        };
        (0..n).map(move |_| {
            let t = |n: u64| texts[(n % texts.len() as u64) as usize].to_owned();
            let event = SilverEvent {
                event_id: t(next()),
                ts_micros: next() as i64,
                usage_date: next() as i32,
                org_id: t(next()),
                resource_id: t(next()),
                service: t(next()).into(),
                region: t(next()).into(),
                metric: t(next()).into(),
                value: None,
                unit: t(next()).into(),
                cost_usd: 0.0,
                schema_version: (next() % 3) as u8,
                carbon_kg: None,
                genai_tokens: None,
                org_name: t(next()).into(),
                industry: t(next()).into(),
                plan_tier: t(next()).into(),
                hq_region: t(next()).into(),
                resource_state: t(next()).into(),
                resource_created_at: next() as i32,
            };
            let n = next();
            let event = SilverEvent {
                value: (n % 3 != 0).then(|| double(next())),
                cost_usd: double(next()),
                carbon_kg: (n % 5 != 0).then(|| double(next())),
                genai_tokens: (n % 7 != 0).then(|| next() as i64),
                ..event
            };
            let b = next();
            let flags = EventFlags {
                unit_imputed: b & 1 != 0,
                cost_negative: b & 2 != 0,
                cost_spike: b & 4 != 0,
                tokens_misplaced: b & 8 != 0,
                before_resource: b & 16 != 0,
            };
            let lineage = RawPosition {
                partition: (next() % 4) as u32,
                offset: next() >> 1,
                ingest_ms: next() as i64,
            };
            SilverMessage {
                event,
                flags,
                lineage,
            }
        })
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn silver_records_round_trip_through_avro_bit_for_bit() {
        let mut buf = Vec::new();
        for m in messages(3000) {
            buf.clear();
            m.write_avro(&mut buf);
            assert_eq!(&buf[..2], &[0xC3, 0x01]);
            let back = SilverMessage::decode(&buf).unwrap();
            assert_eq!(format!("{back:?}"), format!("{m:?}"));
            assert_eq!(back.event.cost_usd.to_bits(), m.event.cost_usd.to_bits());
            let (e, f, o) = SilverMessage::read(&buf).unwrap();
            assert_eq!((e, f, o), (m.event.clone(), m.flags, m.lineage.offset));
            // Cut short, or a byte more: an error, never a panic or a wrong record.
            for cut in [buf.len() - 1, buf.len() / 2, 11] {
                assert!(SilverMessage::read(&buf[..cut]).is_err(), "{cut}");
            }
            let mut more = buf.clone();
            more.push(0);
            assert!(matches!(
                SilverMessage::read(&more),
                Err(RecordReadError::Avro("silver"))
            ));
        }
        // Another schema's fingerprint is named, not misread as JSON.
        let mut other = buf.clone();
        other[2] ^= 1;
        assert!(matches!(
            SilverMessage::read(&other),
            Err(RecordReadError::OtherSchema(..))
        ));
    }

    /// `m` as the first version of the schema wrote it: the same event and flags,
    /// then a lineage with a landing file, a line and the raw topic's name.
    fn write_v1(m: &SilverMessage, source_file: Option<&str>, line_no: Option<i64>) -> Vec<u8> {
        let mut v2 = Vec::new();
        m.write_avro(&mut v2);
        let mut position = Vec::new();
        crate::avro::AvroWriter::new(&mut position)
            .long(m.lineage.partition.into())
            .long(m.lineage.offset as i64)
            .long(m.lineage.ingest_ms);
        let event_and_flags = &v2[SILVER_AVRO_HEADER.len()..v2.len() - position.len()];
        let mut v1 = SILVER_AVRO_HEADER_V1.to_vec();
        v1.extend_from_slice(event_and_flags);
        crate::avro::AvroWriter::new(&mut v1)
            .optional(source_file, |w, s| {
                w.string(s);
            })
            .optional(line_no, |w, n| {
                w.long(n);
            })
            .string("raw.usage_events");
        v1.extend_from_slice(&position);
        v1
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn silver_records_of_the_first_schema_are_still_read() {
        for (k, m) in messages(1000).enumerate() {
            let file = (k % 2 == 0).then_some("usage_events_stream/events_part_0001.jsonl");
            let line = (k % 3 != 0).then_some(k as i64);
            let v1 = write_v1(&m, file, line);
            assert_eq!(&v1[..10], &SILVER_AVRO_HEADER_V1);
            let back = SilverMessage::decode(&v1).unwrap();
            assert_eq!(format!("{back:?}"), format!("{m:?}"));
            let (e, f, o) = SilverMessage::read(&v1).unwrap();
            assert_eq!((e, f, o), (m.event.clone(), m.flags, m.lineage.offset));
            // The second version is smaller by at least the raw topic's name.
            let mut v2 = Vec::new();
            m.write_avro(&mut v2);
            assert!(v2.len() + 17 < v1.len(), "{} {}", v1.len(), v2.len());
            for cut in [v1.len() - 1, v1.len() - 5, 11] {
                assert!(SilverMessage::read(&v1[..cut]).is_err(), "{cut}");
            }
            let mut more = v1.clone();
            more.push(0);
            assert!(SilverMessage::read(&more).is_err());
        }
    }

    /// Another Avro implementation (the Apache project's) reads what the processor
    /// writes: the schema files' canonical forms are ours, and its reader finds our
    /// fingerprints in the headers and the same messages in the data.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn apache_avro_reads_silver_and_window_records_with_the_schema_files() {
        let avsc = include_str!("../avro/silver_usage_event.avsc");
        let schema = apache_avro::Schema::parse_str(avsc).unwrap();
        assert_eq!(schema.canonical_form(), SILVER_AVRO_SCHEMA);
        let fp = schema.fingerprint::<apache_avro::rabin::Rabin>();
        assert_eq!(fp.bytes, SILVER_AVRO_HEADER[2..].to_vec());
        let v1 = apache_avro::Schema::parse_str(include_str!("../avro/silver_usage_event.v1.avsc"))
            .unwrap();
        assert_eq!(v1.canonical_form(), SILVER_AVRO_SCHEMA_V1);
        let fp1 = v1.fingerprint::<apache_avro::rabin::Rabin>();
        assert_eq!(fp1.bytes, SILVER_AVRO_HEADER_V1[2..].to_vec());
        let reader = apache_avro::GenericSingleObjectReader::new(schema).unwrap();
        let mut buf = Vec::new();
        for m in messages(200) {
            buf.clear();
            m.write_avro(&mut buf);
            let value = reader.read_value(&mut buf.as_slice()).unwrap();
            let back: SilverMessage = apache_avro::from_value(&value).unwrap();
            assert_eq!(format!("{back:?}"), format!("{m:?}"));
        }
        let avsc = include_str!("../avro/usage_window.avsc");
        let schema = apache_avro::Schema::parse_str(avsc).unwrap();
        assert_eq!(schema.canonical_form(), WINDOW_AVRO_SCHEMA);
        let reader = apache_avro::GenericSingleObjectReader::new(schema).unwrap();
        let w = WindowMessage {
            org_id: "org_ünï".into(),
            service: "compute".into(),
            window_start: -1_800_000_000,
            window_end: i64::MAX,
            totals: UsageTotals {
                genai_tokens: i64::MIN,
                ..odd_totals()
            },
        };
        buf.clear();
        w.write_avro(&mut buf);
        let value = reader.read_value(&mut buf.as_slice()).unwrap();
        let apache_avro::types::Value::Record(fields) = value else {
            panic!("{value:?}");
        };
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names[..4],
            ["org_id", "service", "window_start", "window_end"]
        );
        assert_eq!(
            fields[1].1,
            apache_avro::types::Value::String("compute".into())
        );
        assert_eq!(fields[3].1, apache_avro::types::Value::Long(i64::MAX));
        assert_eq!(fields[10].1, apache_avro::types::Value::Long(i64::MIN));
        assert_eq!(fields[6].1, apache_avro::types::Value::Double(1e-300));
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn silver_records_in_json_as_earlier_processors_wrote_them_are_read() {
        for m in messages(3000) {
            let json = serde_json::to_vec(&m).unwrap();
            let (e, f, o) = SilverMessage::read(&json).unwrap();
            // Bit for bit: through JSON and back.
            assert_eq!(format!("{e:?}"), format!("{:?}", m.event));
            assert_eq!((f, o), (m.flags, m.lineage.offset));
            assert_eq!(e.cost_usd.to_bits(), m.event.cost_usd.to_bits());
            let back = SilverMessage::decode(&json).unwrap();
            assert_eq!(format!("{back:?}"), format!("{m:?}"));
        }
        // A field more is read, a field less or a cut record is refused.
        let m = SilverMessage {
            event: serde_json::from_str(r#"{"event_id":"e","ts_micros":1,"usage_date":0,"org_id":"o","resource_id":"r","service":"s","region":"g","metric":"m","value":null,"unit":"u","cost_usd":1.0,"schema_version":2,"carbon_kg":null,"genai_tokens":null,"org_name":"n","industry":"i","plan_tier":"p","hq_region":"h","resource_state":"a","resource_created_at":-1}"#).unwrap(),
            flags: EventFlags::default(),
            lineage: RawPosition {
                partition: 0,
                offset: 7,
                ingest_ms: 0,
            },
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(SilverMessage::read(json.as_bytes()).unwrap().2, 7);
        let more = json.replacen(r#""event":{"#, r#""event":{"x":1,"#, 1);
        assert_eq!(SilverMessage::read(more.as_bytes()).unwrap().2, 7);
        // The lineage earlier versions wrote, with the landing file, line and topic.
        let old = json.replacen(
            r#""lineage":{"#,
            r#""lineage":{"source_file":"events/part-1.jsonl","line_no":3,"topic":"raw.usage_events","#,
            1,
        );
        assert_ne!(old, json);
        assert_eq!(SilverMessage::decode(old.as_bytes()).unwrap(), m);
        let less = json.replacen(r#","unit":"u""#, "", 1);
        assert!(SilverMessage::read(less.as_bytes()).is_err());
        assert!(SilverMessage::read(&json.as_bytes()[..json.len() - 1]).is_err());
    }
}
