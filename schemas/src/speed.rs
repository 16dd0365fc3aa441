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
    /// A raw topic's name: borrowed when built from a record, owned when read back.
    pub topic: std::borrow::Cow<'static, str>,
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
        topic: &'static str,
        partition: u32,
        offset: u64,
        ingest_ms: i64,
    ) -> Lineage {
        Lineage {
            source_file: source_file.map(|b| String::from_utf8_lossy(b).into_owned()),
            line_no: line_no
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(|s| s.parse().ok()),
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
    pub lineage: Lineage,
}

/// What a reader of `silver.usage_events` needs of a record: the event, its flags
/// and the raw offset it came from.
pub type SilverParts = (SilverEvent, EventFlags, u64);

impl SilverMessage {
    /// A silver record read as the processor writes it, field by field
    /// ([`crate::written`]); serde reads anything else (or refuses it).
    pub fn read(json: &[u8]) -> serde_json::Result<SilverParts> {
        match Self::read_written(json) {
            Some(parts) => Ok(parts),
            None => {
                let m: SilverMessage = serde_json::from_slice(json)?;
                Ok((m.event, m.flags, m.lineage.offset))
            }
        }
    }

    /// The record as JSON, the bytes `serde_json::to_vec` gives, written directly
    /// ([`crate::written::Writer`]).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let (e, f, l) = (&self.event, &self.flags, &self.lineage);
        let mut w = crate::written::Writer::object(out);
        w.open("event");
        w.field("event_id").text(&e.event_id);
        w.field("ts_micros").int(e.ts_micros);
        w.field("usage_date").int(e.usage_date);
        w.field("org_id").text(&e.org_id);
        w.field("resource_id").text(&e.resource_id);
        w.field("service").text(&e.service);
        w.field("region").text(&e.region);
        w.field("metric").text(&e.metric);
        w.field("value").opt_double(e.value);
        w.field("unit").text(&e.unit);
        w.field("cost_usd").double(e.cost_usd);
        w.field("schema_version").int(e.schema_version);
        w.field("carbon_kg").opt_double(e.carbon_kg);
        w.field("genai_tokens").opt_int(e.genai_tokens);
        w.field("org_name").text(&e.org_name);
        w.field("industry").text(&e.industry);
        w.field("plan_tier").text(&e.plan_tier);
        w.field("hq_region").text(&e.hq_region);
        w.field("resource_state").text(&e.resource_state);
        w.field("resource_created_at").int(e.resource_created_at);
        w.close();
        w.open("flags");
        for (name, v) in EventFlags::NAMES.iter().zip(f.values()) {
            w.field(name).boolean(v);
        }
        w.close();
        w.open("lineage");
        w.field("source_file").opt_text(l.source_file.as_deref());
        w.field("line_no").opt_int(l.line_no);
        w.field("topic").text(&l.topic);
        w.field("partition").int(l.partition);
        w.field("offset").int(l.offset);
        w.field("ingest_ms").int(l.ingest_ms);
        w.close();
        w.close();
    }

    /// The record in the processor's form (the fields of `SilverMessage`,
    /// `SilverEvent`, `EventFlags` and `Lineage` in their structs' order), or `None`.
    pub fn read_written(json: &[u8]) -> Option<SilverParts> {
        use crate::written::Written;
        fn text(w: &mut Written<'_>) -> Option<String> {
            w.any_text().map(std::borrow::Cow::into_owned)
        }
        fn flag(w: &mut Written<'_>, name: &str) -> Option<bool> {
            w.field(name)?;
            w.boolean()
        }
        let mut w = Written::new(json);
        w.object("event")?;
        w.field("event_id")?;
        let event_id = text(&mut w)?;
        w.field("ts_micros")?;
        let ts_micros = w.integer()?;
        w.field("usage_date")?;
        let usage_date = w.integer()?.try_into().ok()?;
        w.field("org_id")?;
        let org_id = text(&mut w)?;
        w.field("resource_id")?;
        let resource_id = text(&mut w)?;
        w.field("service")?;
        let service = text(&mut w)?;
        w.field("region")?;
        let region = text(&mut w)?;
        w.field("metric")?;
        let metric = text(&mut w)?;
        w.field("value")?;
        let value = w.opt_double()?;
        w.field("unit")?;
        let unit = text(&mut w)?;
        w.field("cost_usd")?;
        let cost_usd = w.double()?;
        w.field("schema_version")?;
        let schema_version = w.integer()?.try_into().ok()?;
        w.field("carbon_kg")?;
        let carbon_kg = w.opt_double()?;
        w.field("genai_tokens")?;
        let genai_tokens = w.opt_integer()?;
        w.field("org_name")?;
        let org_name = text(&mut w)?;
        w.field("industry")?;
        let industry = text(&mut w)?;
        w.field("plan_tier")?;
        let plan_tier = text(&mut w)?;
        w.field("hq_region")?;
        let hq_region = text(&mut w)?;
        w.field("resource_state")?;
        let resource_state = text(&mut w)?;
        w.field("resource_created_at")?;
        let resource_created_at = w.integer()?.try_into().ok()?;
        w.close()?;
        w.object("flags")?;
        let flags = EventFlags {
            unit_imputed: flag(&mut w, "unit_imputed")?,
            cost_negative: flag(&mut w, "cost_negative")?,
            cost_spike: flag(&mut w, "cost_spike")?,
            tokens_misplaced: flag(&mut w, "tokens_misplaced")?,
            before_resource: flag(&mut w, "before_resource")?,
        };
        w.close()?;
        w.object("lineage")?;
        w.field("source_file")?;
        w.opt_text()?;
        w.field("line_no")?;
        w.opt_integer()?;
        w.field("topic")?;
        w.any_text()?;
        w.field("partition")?;
        w.integer()?;
        w.field("offset")?;
        let offset = w.integer()?.try_into().ok()?;
        w.field("ingest_ms")?;
        w.integer()?;
        w.close()?;
        w.end()?;
        let event = SilverEvent {
            event_id,
            ts_micros,
            usage_date,
            org_id,
            resource_id,
            service,
            region,
            metric,
            value,
            unit,
            cost_usd,
            schema_version,
            carbon_kg,
            genai_tokens,
            org_name,
            industry,
            plan_tier,
            hq_region,
            resource_state,
            resource_created_at,
        };
        Some((event, flags, offset))
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

impl WindowMessage {
    /// The record as JSON, the bytes `serde_json::to_vec` gives (the totals beside
    /// the other fields), written directly ([`crate::written::Writer`]).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let t = &self.totals;
        let mut w = crate::written::Writer::object(out);
        w.field("org_id").text(&self.org_id);
        w.field("service").text(&self.service);
        w.field("window_start").int(self.window_start);
        w.field("window_end").int(self.window_end);
        w.field("events").int(t.events);
        w.field("requests").double(t.requests);
        w.field("cpu_hours").double(t.cpu_hours);
        w.field("storage_gb_hours").double(t.storage_gb_hours);
        w.field("cost_usd").double(t.cost_usd);
        w.field("negative_cost_events").int(t.negative_cost_events);
        w.field("genai_tokens").int(t.genai_tokens);
        w.field("carbon_kg").double(t.carbon_kg);
        w.close();
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

    #[test]
    #[allow(clippy::unwrap_used)]
    fn messages_with_totals_read_back_what_they_wrote() {
        let totals = UsageTotals {
            events: 3,
            requests: 0.1 + 0.2,
            cpu_hours: 1e-300,
            storage_gb_hours: 274.123_599_999_999_95,
            cost_usd: -0.0,
            negative_cost_events: 1,
            genai_tokens: i64::MAX,
            carbon_kg: 5.0,
        };
        let w = WindowMessage {
            org_id: "o \"1\"".into(),
            service: "compute".into(),
            window_start: -1,
            window_end: i64::MAX,
            totals,
        };
        let json = serde_json::to_string(&w).unwrap();
        // Written directly, the same bytes as serde's; a non-finite double is null in
        // both.
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
            w.write_json(&mut written);
            assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&w).unwrap()
            );
        }
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

    #[test]
    #[allow(clippy::unwrap_used)]
    fn silver_records_read_as_written_equal_serdes_reading() {
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
        for _ in 0..3000 {
            let t = |n: u64| texts[(n % texts.len() as u64) as usize].to_owned();
            let event = SilverEvent {
                event_id: t(next()),
                ts_micros: next() as i64,
                usage_date: next() as i32,
                org_id: t(next()),
                resource_id: t(next()),
                service: t(next()),
                region: t(next()),
                metric: t(next()),
                value: None,
                unit: t(next()),
                cost_usd: 0.0,
                schema_version: (next() % 3) as u8,
                carbon_kg: None,
                genai_tokens: None,
                org_name: t(next()),
                industry: t(next()),
                plan_tier: t(next()),
                hq_region: t(next()),
                resource_state: t(next()),
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
            let lineage = Lineage {
                source_file: (b & 32 != 0).then(|| "events/part-1.jsonl".into()),
                line_no: (b & 64 != 0).then(|| (next() % 1000) as i64),
                topic: "raw.usage_events".into(),
                partition: (next() % 4) as u32,
                offset: next() >> 1,
                ingest_ms: next() as i64,
            };
            let m = SilverMessage {
                event,
                flags,
                lineage,
            };
            let json = serde_json::to_vec(&m).unwrap();
            let mut written = Vec::new();
            m.write_json(&mut written);
            assert_eq!(
                String::from_utf8_lossy(&written),
                String::from_utf8_lossy(&json)
            );
            let (e, f, o) = SilverMessage::read_written(&json)
                .unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&json)));
            let back: SilverMessage = serde_json::from_slice(&json).unwrap();
            // Bit for bit: through JSON, as serde reads it.
            assert_eq!(format!("{e:?}"), format!("{:?}", back.event));
            assert_eq!((f, o), (back.flags, back.lineage.offset));
            assert_eq!(e.cost_usd.to_bits(), back.event.cost_usd.to_bits());
        }
        // Another shape is serde's: a field more is read by serde, a field less is
        // refused by it.
        let m = SilverMessage {
            event: serde_json::from_str(r#"{"event_id":"e","ts_micros":1,"usage_date":0,"org_id":"o","resource_id":"r","service":"s","region":"g","metric":"m","value":null,"unit":"u","cost_usd":1.0,"schema_version":2,"carbon_kg":null,"genai_tokens":null,"org_name":"n","industry":"i","plan_tier":"p","hq_region":"h","resource_state":"a","resource_created_at":-1}"#).unwrap(),
            flags: EventFlags::default(),
            lineage: Lineage::from_headers(None, None, "raw.usage_events", 0, 7, 0),
        };
        let json = serde_json::to_string(&m).unwrap();
        assert!(SilverMessage::read_written(json.as_bytes()).is_some());
        let more = json.replacen(r#""event":{"#, r#""event":{"x":1,"#, 1);
        assert!(SilverMessage::read_written(more.as_bytes()).is_none());
        assert_eq!(SilverMessage::read(more.as_bytes()).unwrap().2, 7);
        let less = json.replacen(r#","unit":"u""#, "", 1);
        assert!(SilverMessage::read(less.as_bytes()).is_err());
        assert!(SilverMessage::read(&json.as_bytes()[..json.len() - 1]).is_err());
    }
}
