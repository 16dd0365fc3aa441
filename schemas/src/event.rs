//! Usage events: the JSONL line, the typed (bronze) event, and the rules that keep it
//! (silver) or quarantine it, in the order of SPEC section 4.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;

use crate::domain::{self, unit_of_metric};
use crate::time::{micros_to_days, parse_timestamp_micros};
use crate::written::{decimal_i64, finite_f64};
use crate::{MasterData, Outcome, Reason, SeenKeys};

/// A usage event that passed the typing rules (`parse_error` .. `bad_cost`): the grain
/// of `bronze/usage_events`. Categorical fields are not checked yet: a non-string value
/// is kept as its JSON text so that the domain rule rejects it.
#[derive(Debug, Clone, PartialEq)]
pub struct BronzeEvent {
    pub event_id: String,
    /// Event time, UTC microseconds since the epoch.
    pub ts_micros: i64,
    pub org_id: Option<String>,
    pub resource_id: Option<String>,
    pub service: Option<Cow<'static, str>>,
    pub region: Option<Cow<'static, str>>,
    pub metric: Option<Cow<'static, str>>,
    pub value: Option<f64>,
    pub unit: Option<Cow<'static, str>>,
    pub cost_usd: f64,
    pub schema_version: u8,
    pub carbon_kg: Option<f64>,
    pub genai_tokens: Option<i64>,
}

impl BronzeEvent {
    /// The fields, borrowed.
    pub fn borrowed(&self) -> BronzeRef<'_> {
        BronzeRef {
            event_id: &self.event_id,
            ts_micros: self.ts_micros,
            org_id: self.org_id.as_deref(),
            resource_id: self.resource_id.as_deref(),
            service: self.service.as_deref(),
            region: self.region.as_deref(),
            metric: self.metric.as_deref(),
            value: self.value,
            unit: self.unit.as_deref(),
            cost_usd: self.cost_usd,
            schema_version: self.schema_version,
            carbon_kg: self.carbon_kg,
            genai_tokens: self.genai_tokens,
        }
    }

    /// The bronze row of a kept event, rebuilt from its silver record without parsing
    /// its `line` again (and without copying its strings), when the record holds all
    /// of it. Silver keeps a line's other fields as typed, and its unit unless it was
    /// imputed (a kept event with no unit always has a value, so `unit_imputed` says
    /// exactly when the line had none). Silver drops a v1 line's carbon and tokens, so
    /// a v1 event is rebuilt only when its line held neither: `tokens_misplaced` says
    /// whether it held tokens, and a line without the text `carbon_kg` (and without an
    /// escape, which could spell it) holds no carbon. `None` otherwise: parse the line.
    pub fn of_kept<'a>(
        e: &'a SilverEvent,
        flags: &EventFlags,
        line: &[u8],
    ) -> Option<BronzeRef<'a>> {
        let rebuilds = e.schema_version == 2
            || (!flags.tokens_misplaced
                && memchr::memchr(b'\\', line).is_none()
                && memchr::memmem::find(line, b"carbon_kg").is_none());
        rebuilds.then(|| BronzeEvent::rebuilt(e, flags))
    }

    /// The bronze row [`of_kept`](Self::of_kept) rebuilds, for a caller that has
    /// already had `Some` from it.
    pub fn rebuilt<'a>(e: &'a SilverEvent, flags: &EventFlags) -> BronzeRef<'a> {
        BronzeRef {
            event_id: &e.event_id,
            ts_micros: e.ts_micros,
            org_id: Some(&e.org_id),
            resource_id: Some(&e.resource_id),
            service: Some(&e.service),
            region: Some(&e.region),
            metric: Some(&e.metric),
            value: e.value,
            unit: (!flags.unit_imputed).then_some(&*e.unit),
            cost_usd: e.cost_usd,
            schema_version: e.schema_version,
            carbon_kg: e.carbon_kg,
            genai_tokens: e.genai_tokens,
        }
    }
}

/// A [`BronzeEvent`]'s fields, borrowed from it or from a kept event's silver record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BronzeRef<'a> {
    pub event_id: &'a str,
    pub ts_micros: i64,
    pub org_id: Option<&'a str>,
    pub resource_id: Option<&'a str>,
    pub service: Option<&'a str>,
    pub region: Option<&'a str>,
    pub metric: Option<&'a str>,
    pub value: Option<f64>,
    pub unit: Option<&'a str>,
    pub cost_usd: f64,
    pub schema_version: u8,
    pub carbon_kg: Option<f64>,
    pub genai_tokens: Option<i64>,
}

/// Flags on a kept event. `cost_spike` is set only by the batch path, which alone sees
/// the whole history (see [`crate::stats::is_cost_spike`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventFlags {
    pub unit_imputed: bool,
    pub cost_negative: bool,
    pub cost_spike: bool,
    pub tokens_misplaced: bool,
    pub before_resource: bool,
}

impl EventFlags {
    pub const NAMES: [&'static str; 5] = [
        "unit_imputed",
        "cost_negative",
        "cost_spike",
        "tokens_misplaced",
        "before_resource",
    ];

    pub fn values(&self) -> [bool; 5] {
        [
            self.unit_imputed,
            self.cost_negative,
            self.cost_spike,
            self.tokens_misplaced,
            self.before_resource,
        ]
    }
}

/// A kept event, conformed and enriched (the grain of `silver/usage_events`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SilverEvent {
    pub event_id: String,
    pub ts_micros: i64,
    /// UTC calendar date of `ts_micros`, days since the epoch.
    pub usage_date: i32,
    pub org_id: String,
    pub resource_id: String,
    pub service: Cow<'static, str>,
    pub region: Cow<'static, str>,
    pub metric: Cow<'static, str>,
    pub value: Option<f64>,
    pub unit: Cow<'static, str>,
    pub cost_usd: f64,
    pub schema_version: u8,
    pub carbon_kg: Option<f64>,
    pub genai_tokens: Option<i64>,
    pub org_name: Arc<str>,
    pub industry: Cow<'static, str>,
    pub plan_tier: Cow<'static, str>,
    pub hq_region: Cow<'static, str>,
    pub resource_state: Cow<'static, str>,
    /// The resource's `created_at`, days since the epoch.
    pub resource_created_at: i32,
}

impl SilverEvent {
    /// The cost that enters cost sums: 0 when flagged `cost_negative`.
    pub fn counted_cost(&self, flags: &EventFlags) -> f64 {
        self.measured(flags).cost_usd
    }

    /// The tokens that enter token sums: 0 when flagged `tokens_misplaced`.
    pub fn counted_tokens(&self, flags: &EventFlags) -> i64 {
        self.measured(flags).genai_tokens
    }

    /// `value` as it enters sums of its metric: a null value counts as 0.
    pub fn counted_value(&self) -> f64 {
        let t = self.measured(&EventFlags::default());
        t.requests + t.cpu_hours + t.storage_gb_hours
    }

    /// This one event's contribution to the sums ([`crate::speed::UsageTotals`]).
    pub fn measured(&self, flags: &EventFlags) -> crate::speed::UsageTotals {
        let mut t = crate::speed::UsageTotals::default();
        t.add(self, flags);
        t
    }
}

/// Costs below this are flagged `cost_negative` and left out of cost sums.
pub const NEGATIVE_COST_THRESHOLD: f64 = -0.01;

/// One JSON value as the typing rules look at it, read without building a tree:
/// strings borrow from the line where they can.
#[derive(Debug, Clone, PartialEq)]
enum Json<'a> {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// An array or an object: never what any field should hold.
    Nested(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for Json<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Json<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Json<'a>, E> {
                Ok(Json::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Json<'a>, E> {
                Ok(Json::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json<'a>, E> {
                Ok(i64::try_from(v).map_or(Json::Float(v as f64), Json::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Json<'a>, E> {
                Ok(Json::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'a>, E> {
                Ok(Json::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Json<'a>, E> {
                Ok(Json::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Json<'a>, E> {
                Ok(Json::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Json<'a>, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Json::Nested("[array]"))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Json<'a>, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Json::Nested("{object}"))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl Json<'_> {
    fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Int(i) => Some(*i as f64),
            Json::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// A number, or a string that parses as a finite number (`"1e2"`, `" 12.5 "`).
    /// Booleans, `"NaN"`, `"inf"` and everything else are not numbers.
    fn finite_number(&self) -> Option<f64> {
        let x = match self {
            Json::Str(s) => return finite_f64(s.trim().as_bytes()),
            other => other.as_f64()?,
        };
        x.is_finite().then_some(x)
    }

    fn integer(&self) -> Option<i64> {
        match self {
            Json::Int(i) => Some(*i),
            Json::Float(f) if f.fract() == 0.0 && f.abs() < 9e15 => Some(*f as i64),
            Json::Str(s) => decimal_i64(s.trim().as_bytes()),
            _ => None,
        }
    }

    /// A categorical field of domain `allowed`: the domain's own `'static` text when
    /// the value is one of its members (no copy of the line's), else its text, or
    /// (for a non-string) a text no domain holds.
    fn categorical(self, allowed: &[&'static str]) -> Cow<'static, str> {
        match self {
            Json::Str(s) => domain::categorical(&s, allowed),
            other => Cow::Owned(other.text()),
        }
    }

    /// A categorical field: its text, or (for a non-string) a text no domain holds.
    fn text(self) -> String {
        match self {
            Json::Str(s) => s.into_owned(),
            Json::Bool(b) => b.to_string(),
            Json::Int(i) => i.to_string(),
            Json::Float(f) => f.to_string(),
            Json::Nested(kind) => kind.to_owned(),
        }
    }
}

/// The fields the rules read; others are skipped. Absent and `null` are both `None`.
#[derive(Deserialize, Default)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct RawEvent<'a> {
    #[serde(borrow, default)]
    event_id: Option<Json<'a>>,
    #[serde(borrow, default)]
    timestamp: Option<Json<'a>>,
    #[serde(borrow, default)]
    org_id: Option<Json<'a>>,
    #[serde(borrow, default)]
    resource_id: Option<Json<'a>>,
    #[serde(borrow, default)]
    service: Option<Json<'a>>,
    #[serde(borrow, default)]
    region: Option<Json<'a>>,
    #[serde(borrow, default)]
    metric: Option<Json<'a>>,
    #[serde(borrow, default)]
    value: Option<Json<'a>>,
    #[serde(borrow, default)]
    unit: Option<Json<'a>>,
    #[serde(borrow, default)]
    cost_usd_increment: Option<Json<'a>>,
    #[serde(borrow, default)]
    schema_version: Option<Json<'a>>,
    #[serde(borrow, default)]
    carbon_kg: Option<Json<'a>>,
    #[serde(borrow, default)]
    genai_tokens: Option<Json<'a>>,
}

/// Reading a line in the form nearly every line has, without serde: one flat object,
/// keys and strings without escapes, numbers in JSON's grammar, each field once.
/// Anything else (an escape, a nested value, a repeated field, a number serde would
/// read another way) is `None`, and serde reads the line (or refuses it): this gives
/// what serde gives or nothing (a test compares the two).
mod simple {
    use super::{Json, RawEvent, decimal_i64, finite_f64};
    use crate::written::{number_end, plain_text_end};
    use std::borrow::Cow;

    pub(super) fn raw_event(text: &str) -> Option<RawEvent<'_>> {
        let b = text.as_bytes();
        let mut i = ws(b, 0);
        if *b.get(i)? != b'{' {
            return None;
        }
        i = ws(b, i + 1);
        let mut raw = RawEvent::default();
        let mut seen = 0u16;
        if *b.get(i)? == b'}' {
            i += 1;
        } else {
            loop {
                let (key, j) = string(text, i)?;
                i = ws(b, j);
                if *b.get(i)? != b':' {
                    return None;
                }
                let (value, j) = scalar(text, ws(b, i + 1))?;
                i = ws(b, j);
                if let Some((bit, slot)) = field(&mut raw, key) {
                    if seen & bit != 0 {
                        return None;
                    }
                    seen |= bit;
                    *slot = value;
                }
                match *b.get(i)? {
                    b',' => i = ws(b, i + 1),
                    b'}' => {
                        i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        (ws(b, i) == b.len()).then_some(raw)
    }

    /// The slot of a field the rules read, and its bit among those seen.
    fn field<'r, 'a>(
        raw: &'r mut RawEvent<'a>,
        key: &str,
    ) -> Option<(u16, &'r mut Option<Json<'a>>)> {
        let slot = match key {
            "event_id" => (1, &mut raw.event_id),
            "timestamp" => (1 << 1, &mut raw.timestamp),
            "org_id" => (1 << 2, &mut raw.org_id),
            "resource_id" => (1 << 3, &mut raw.resource_id),
            "service" => (1 << 4, &mut raw.service),
            "region" => (1 << 5, &mut raw.region),
            "metric" => (1 << 6, &mut raw.metric),
            "value" => (1 << 7, &mut raw.value),
            "unit" => (1 << 8, &mut raw.unit),
            "cost_usd_increment" => (1 << 9, &mut raw.cost_usd_increment),
            "schema_version" => (1 << 10, &mut raw.schema_version),
            "carbon_kg" => (1 << 11, &mut raw.carbon_kg),
            "genai_tokens" => (1 << 12, &mut raw.genai_tokens),
            _ => return None,
        };
        Some(slot)
    }

    /// JSON's whitespace from `i` on.
    fn ws(b: &[u8], mut i: usize) -> usize {
        while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    }

    /// A string without escapes or control characters at `i`, and the index after it.
    fn string(text: &str, i: usize) -> Option<(&str, usize)> {
        let b = text.as_bytes();
        if *b.get(i)? != b'"' {
            return None;
        }
        let start = i + 1;
        let end = plain_text_end(b, start)?;
        (b[end] == b'"').then(|| (&text[start..end], end + 1))
    }

    /// A string, number, boolean or `null` (`None`) at `i`, and the index after it.
    fn scalar(text: &str, i: usize) -> Option<(Option<Json<'_>>, usize)> {
        let b = text.as_bytes();
        let literal = |word: &[u8], v: Option<Json<'static>>| {
            (b.get(i..i + word.len())? == word).then_some((v, i + word.len()))
        };
        match *b.get(i)? {
            b'"' => string(text, i).map(|(s, j)| (Some(Json::Str(Cow::Borrowed(s))), j)),
            b'n' => literal(b"null", None),
            b't' => literal(b"true", Some(Json::Bool(true))),
            b'f' => literal(b"false", Some(Json::Bool(false))),
            b'-' | b'0'..=b'9' => number(text, i).map(|(v, j)| (Some(v), j)),
            _ => None,
        }
    }

    /// A number in JSON's grammar at `i`: an integer that fits an i64 (but `-0`,
    /// which serde reads as a float), or a finite float, parsed correctly rounded as
    /// serde's `float_roundtrip` parses it.
    fn number(text: &str, i: usize) -> Option<(Json<'_>, usize)> {
        let b = text.as_bytes();
        let (j, float) = number_end(b, i)?;
        let tok = &b[i..j];
        let v = if float {
            Json::Float(finite_f64(tok)?)
        } else {
            let v = decimal_i64(tok)?;
            if v == 0 && b[i] == b'-' {
                return None;
            }
            Json::Int(v)
        };
        Some((v, j))
    }
}

/// Applies the typing rules (`parse_error` .. `bad_cost`) to one raw JSONL line.
/// A line must be one JSON object (a repeated key is a `parse_error`).
pub fn parse_event(line: &[u8]) -> Result<BronzeEvent, Reason> {
    let text = std::str::from_utf8(line).map_err(|_| Reason::ParseError)?;
    if !text.trim_start().starts_with('{') {
        return Err(Reason::ParseError);
    }
    let raw: RawEvent = match simple::raw_event(text) {
        Some(raw) => raw,
        None => serde_json::from_str(text).map_err(|_| Reason::ParseError)?,
    };
    let event_id = match raw.event_id {
        Some(Json::Str(s)) if !s.trim().is_empty() => s.into_owned(),
        _ => return Err(Reason::MissingEventId),
    };
    let ts_micros = match &raw.timestamp {
        Some(Json::Str(s)) => parse_timestamp_micros(s).ok_or(Reason::BadTimestamp)?,
        _ => return Err(Reason::BadTimestamp),
    };
    let schema_version = match raw.schema_version.as_ref().and_then(Json::as_f64) {
        Some(1.0) => 1,
        Some(2.0) => 2,
        _ => return Err(Reason::BadSchemaVersion),
    };
    let value = match &raw.value {
        None => None,
        Some(v) => Some(v.finite_number().ok_or(Reason::BadValue)?),
    };
    let cost_usd = raw
        .cost_usd_increment
        .as_ref()
        .and_then(Json::finite_number)
        .ok_or(Reason::BadCost)?;
    // Kept as given in bronze; silver drops both for v1 events (SPEC section 4).
    let carbon_kg = raw.carbon_kg.as_ref().and_then(Json::finite_number);
    let genai_tokens = raw.genai_tokens.as_ref().and_then(Json::integer);
    Ok(BronzeEvent {
        event_id,
        ts_micros,
        org_id: raw.org_id.map(Json::text),
        resource_id: raw.resource_id.map(Json::text),
        service: raw.service.map(|v| v.categorical(&domain::SERVICES)),
        region: raw.region.map(|v| v.categorical(&domain::REGIONS)),
        metric: raw.metric.map(|v| v.categorical(&domain::METRICS)),
        value,
        unit: raw.unit.map(|v| v.categorical(&domain::UNITS)),
        cost_usd,
        schema_version,
        carbon_kg,
        genai_tokens,
    })
}

/// Applies the remaining rules (`no_measure` .. `duplicate`) and sets the flags, in
/// the SPEC's order. `seen` is consulted last, and only for an event that passed every
/// other rule, so that only kept events claim an `event_id`.
pub fn validate_event(
    event: BronzeEvent,
    master: &impl MasterData,
    seen: &mut impl SeenKeys,
) -> Outcome<SilverEvent, EventFlags> {
    use Outcome::Quarantined;
    if event.value.is_none() && event.unit.is_none() {
        return Quarantined {
            reason: Reason::NoMeasure,
        };
    }
    let (Some(service), Some(metric), Some(region)) =
        (&event.service, &event.metric, &event.region)
    else {
        return Quarantined {
            reason: Reason::BadDomain,
        };
    };
    let Some(metric_unit) = unit_of_metric(metric) else {
        return Quarantined {
            reason: Reason::BadDomain,
        };
    };
    if !domain::is_one_of(service, &domain::SERVICES)
        || !domain::is_one_of(region, &domain::REGIONS)
        || event.unit.as_deref().is_some_and(|u| u != metric_unit)
    {
        return Quarantined {
            reason: Reason::BadDomain,
        };
    }
    let Some(org) = event.org_id.as_deref().and_then(|id| master.org(id)) else {
        return Quarantined {
            reason: Reason::UnknownOrg,
        };
    };
    let resource = event
        .resource_id
        .as_deref()
        .and_then(|id| master.resource(id))
        .filter(|r| r.org_id == org.org_id);
    let Some(resource) = resource else {
        return Quarantined {
            reason: Reason::UnknownResource,
        };
    };
    let Some(usage_date) = micros_to_days(event.ts_micros) else {
        return Quarantined {
            reason: Reason::BadTimestamp,
        };
    };
    if !seen.insert(&event.event_id) {
        return Quarantined {
            reason: Reason::Duplicate,
        };
    }
    let resource_created_at = crate::time::date_to_days(resource.created_at);
    let flags = EventFlags {
        unit_imputed: event.value.is_some() && event.unit.is_none(),
        cost_negative: event.cost_usd < NEGATIVE_COST_THRESHOLD,
        cost_spike: false,
        tokens_misplaced: event.genai_tokens.is_some()
            && (service != "genai" || event.schema_version == 1),
        before_resource: usage_date < resource_created_at,
    };
    // The line's own strings move into the record: each equals what it was checked
    // or looked up against (ids are exact keys of the master tables, domains exact
    // members), so only an imputed unit and the enrichment are new strings.
    let v2 = event.schema_version == 2;
    let record = SilverEvent {
        usage_date,
        org_id: event.org_id.unwrap_or_else(|| org.org_id.clone()),
        resource_id: event
            .resource_id
            .unwrap_or_else(|| resource.resource_id.clone()),
        service: event.service.unwrap_or_default(),
        region: event.region.unwrap_or_default(),
        metric: event.metric.unwrap_or_default(),
        unit: event.unit.unwrap_or(Cow::Borrowed(metric_unit)),
        value: event.value,
        cost_usd: event.cost_usd,
        schema_version: event.schema_version,
        carbon_kg: v2.then_some(event.carbon_kg).flatten(),
        genai_tokens: v2.then_some(event.genai_tokens).flatten(),
        org_name: org.org_name.clone(),
        industry: org.industry.clone(),
        plan_tier: org.plan_tier.clone(),
        hq_region: org.hq_region.clone(),
        resource_state: resource.state.clone(),
        resource_created_at,
        event_id: event.event_id,
        ts_micros: event.ts_micros,
    };
    Outcome::Kept { record, flags }
}

/// Every rule of SPEC section 4 for one raw JSONL line.
pub fn apply_event_rules(
    line: &[u8],
    master: &impl MasterData,
    seen: &mut impl SeenKeys,
) -> Outcome<SilverEvent, EventFlags> {
    match parse_event(line) {
        Ok(event) => validate_event(event, master, seen),
        Err(reason) => Outcome::Quarantined { reason },
    }
}

/// What the producer needs to route and order a raw line, read cheaply: the
/// partitioning key (`org_id`, when it is a string) and the event time.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRouting<'a> {
    pub org_id: Option<Cow<'a, str>>,
    pub ts_micros: Option<i64>,
}

/// Reads `org_id` and `timestamp` without building the whole JSON value. A line that is
/// not a JSON object, or whose fields have other types, routes with `None`s.
pub fn event_routing(line: &[u8]) -> EventRouting<'_> {
    #[derive(Deserialize)]
    struct Hint<'a> {
        #[serde(borrow, default)]
        org_id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        timestamp: Option<Cow<'a, str>>,
    }
    match serde_json::from_slice::<Hint>(line) {
        Ok(h) => EventRouting {
            org_id: h.org_id,
            ts_micros: h.timestamp.as_deref().and_then(parse_timestamp_micros),
        },
        Err(_) => EventRouting {
            org_id: None,
            ts_micros: None,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn by_serde(line: &str) -> Option<RawEvent<'_>> {
        serde_json::from_str(line).ok()
    }

    /// Every line of the sample takes the direct path, and reads as serde reads it.
    #[test]
    fn the_samples_lines_read_directly_as_serde_reads_them() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/landing/usage_events_stream"
        );
        let mut lines = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
                let direct = simple::raw_event(line).unwrap_or_else(|| panic!("{line}"));
                assert_eq!(Some(&direct), by_serde(line).as_ref(), "{line}");
                lines += 1;
            }
        }
        assert!(lines >= 43_000, "{lines}");
    }

    #[test]
    fn categorical_fields_are_the_domains_own_text_when_they_are_members() {
        // The direct path, then serde's (an escape): members come back as the
        // domain's `'static` text, anything else as the line's text.
        for line in [
            r#"{"event_id":"e","timestamp":"2025-07-01T00:00:00Z","service":"compute","region":"mars","metric":"requests","unit":7,"value":1,"cost_usd_increment":0,"schema_version":1}"#,
            r#"{"event_id":"e","timestamp":"2025-07-01T00:00:00Z","service":"comp\u0075te","region":"mars","metric":"requests","unit":7,"value":1,"cost_usd_increment":0,"schema_version":1}"#,
        ] {
            let e = parse_event(line.as_bytes()).unwrap();
            assert!(
                matches!(e.service, Some(Cow::Borrowed("compute"))),
                "{line}"
            );
            assert!(
                matches!(e.metric, Some(Cow::Borrowed("requests"))),
                "{line}"
            );
            assert!(
                matches!(&e.region, Some(Cow::Owned(r)) if r == "mars"),
                "{line}"
            );
            assert!(matches!(&e.unit, Some(Cow::Owned(u)) if u == "7"), "{line}");
        }
    }

    #[test]
    fn what_the_direct_path_leaves_to_serde() {
        let direct = |l: &str| simple::raw_event(l).is_some();
        // Taken: the plain forms, whitespace, unknown scalar fields, nulls.
        for l in [
            r#"{}"#,
            " {\t\"event_id\" :\r\n\"e\" , \"x\": -1.5e-3, \"value\": null } \n",
            r#"{"value": 0, "cost_usd_increment": -12.5E+2, "unit": "", "y": true}"#,
        ] {
            assert!(direct(l), "{l}");
            assert_eq!(simple::raw_event(l), by_serde(l), "{l}");
        }
        // Left to serde, which reads some of them and refuses the others.
        for l in [
            r#"{"event_id": "a\"b"}"#,
            r#"{"event_id": "\u00e9"}"#,
            "{\"event_id\": \"tab\there\"}",
            r#"{"event_id": "e", "event_id": "f"}"#,
            r#"{"value": null, "value": 1}"#,
            r#"{"value": -0}"#,
            r#"{"value": 01}"#,
            r#"{"value": 1.}"#,
            r#"{"value": .5}"#,
            r#"{"value": 1e400}"#,
            r#"{"value": 9223372036854775808}"#,
            r#"{"x": {"y": 1}}"#,
            r#"{"x": [1]}"#,
            r#"{"value": nul}"#,
            r#"{"value": 1} x"#,
            r#"{"value": 1,}"#,
            r#"{"v\u0061lue": 1}"#,
            r#"[1]"#,
        ] {
            assert!(!direct(l), "{l}");
        }
        assert_eq!(
            simple::raw_event(
                r#"{"value": 9223372036854775807, "carbon_kg": -9223372036854775808}"#
            )
            .map(|r| (r.value, r.carbon_kg)),
            Some((Some(Json::Int(i64::MAX)), Some(Json::Int(i64::MIN))))
        );
    }

    fn token() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("event_id"),
            Just("timestamp"),
            Just("org_id"),
            Just("value"),
            Just("unit"),
            Just("cost_usd_increment"),
            Just("schema_version"),
            Just("genai_tokens"),
            Just("x"),
            Just("v\\u0061lue"),
        ];
        let value = prop_oneof![
            4 => "\"[ -~]{0,6}\"",
            4 => "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,4})?([eE][+-]?[0-9]{1,3})?",
            1 => "[-+.0-9eE]{1,6}",
            1 => Just("null".to_owned()),
            1 => Just("true".to_owned()),
            1 => Just("nul".to_owned()),
            1 => Just("{\"a\": 1}".to_owned()),
            1 => Just("[]".to_owned()),
            1 => Just("\"\\u00e9\\n\"".to_owned()),
            1 => Just("\"\t\"".to_owned()),
        ];
        let ws = prop_oneof![Just(""), Just(" "), Just("\t"), Just("\r\n")];
        (key, ws.clone(), value, ws).prop_map(|(k, w1, v, w2)| format!("\"{k}\"{w1}:{w2}{v}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Whatever the direct path reads, serde reads the same.
        #[test]
        fn the_direct_path_reads_what_serde_reads(
            fields in proptest::collection::vec(token(), 0..8),
            sep in prop_oneof![Just(","), Just(", "), Just(" ,")],
            tail in prop_oneof![Just(""), Just(" "), Just("\n"), Just(" x"), Just(",")],
        ) {
            let line = format!("{{{}}}{tail}", fields.join(sep));
            if let Some(direct) = simple::raw_event(&line) {
                prop_assert_eq!(Some(direct), by_serde(&line), "{}", line);
            }
        }
    }
}
