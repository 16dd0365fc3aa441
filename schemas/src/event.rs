//! Usage events: the JSONL line, the typed (bronze) event, and the rules that keep it
//! (silver) or quarantine it, in the order of SPEC section 4.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::domain::{self, unit_of_metric};
use crate::time::{micros_to_date, parse_timestamp_micros};
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
    pub service: Option<String>,
    pub region: Option<String>,
    pub metric: Option<String>,
    pub value: Option<f64>,
    pub unit: Option<String>,
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
    pub service: String,
    pub region: String,
    pub metric: String,
    pub value: Option<f64>,
    pub unit: String,
    pub cost_usd: f64,
    pub schema_version: u8,
    pub carbon_kg: Option<f64>,
    pub genai_tokens: Option<i64>,
    pub org_name: String,
    pub industry: String,
    pub plan_tier: String,
    pub hq_region: String,
    pub resource_state: String,
    /// The resource's `created_at`, days since the epoch.
    pub resource_created_at: i32,
}

impl SilverEvent {
    /// The cost that enters cost sums: 0 when flagged `cost_negative`.
    pub fn counted_cost(&self, flags: &EventFlags) -> f64 {
        if flags.cost_negative {
            0.0
        } else {
            self.cost_usd
        }
    }

    /// The tokens that enter token sums: 0 when flagged `tokens_misplaced`.
    pub fn counted_tokens(&self, flags: &EventFlags) -> i64 {
        if flags.tokens_misplaced {
            0
        } else {
            self.genai_tokens.unwrap_or(0)
        }
    }

    /// `value` as it enters sums of its metric: a null value counts as 0.
    pub fn counted_value(&self) -> f64 {
        self.value.unwrap_or(0.0)
    }
}

/// Costs below this are flagged `cost_negative` and left out of cost sums.
pub const NEGATIVE_COST_THRESHOLD: f64 = -0.01;

/// Applies the typing rules (`parse_error` .. `bad_cost`) to one raw JSONL line.
pub fn parse_event(line: &[u8]) -> Result<BronzeEvent, Reason> {
    let text = std::str::from_utf8(line).map_err(|_| Reason::ParseError)?;
    let obj = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(obj)) => obj,
        _ => return Err(Reason::ParseError),
    };
    let event_id = match obj.get("event_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(Reason::MissingEventId),
    };
    let ts_micros = match obj.get("timestamp") {
        Some(Value::String(s)) => parse_timestamp_micros(s).ok_or(Reason::BadTimestamp)?,
        _ => return Err(Reason::BadTimestamp),
    };
    let schema_version = match obj.get("schema_version").and_then(Value::as_f64) {
        Some(1.0) => 1,
        Some(2.0) => 2,
        _ => return Err(Reason::BadSchemaVersion),
    };
    let value = match obj.get("value") {
        None | Some(Value::Null) => None,
        Some(v) => Some(finite_number(v).ok_or(Reason::BadValue)?),
    };
    let cost_usd = obj
        .get("cost_usd_increment")
        .and_then(finite_number)
        .ok_or(Reason::BadCost)?;
    // Kept as given in bronze; silver drops both for v1 events (SPEC section 4).
    let carbon_kg = obj.get("carbon_kg").and_then(finite_number);
    let genai_tokens = obj.get("genai_tokens").and_then(integer);
    Ok(BronzeEvent {
        event_id,
        ts_micros,
        org_id: text_field(&obj, "org_id"),
        resource_id: text_field(&obj, "resource_id"),
        service: text_field(&obj, "service"),
        region: text_field(&obj, "region"),
        metric: text_field(&obj, "metric"),
        value,
        unit: text_field(&obj, "unit"),
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
    let Some(date) = micros_to_date(event.ts_micros) else {
        return Quarantined {
            reason: Reason::BadTimestamp,
        };
    };
    if !seen.insert(&event.event_id) {
        return Quarantined {
            reason: Reason::Duplicate,
        };
    }
    let flags = EventFlags {
        unit_imputed: event.value.is_some() && event.unit.is_none(),
        cost_negative: event.cost_usd < NEGATIVE_COST_THRESHOLD,
        cost_spike: false,
        tokens_misplaced: event.genai_tokens.is_some()
            && (service != "genai" || event.schema_version == 1),
        before_resource: date < resource.created_at,
    };
    let v2 = event.schema_version == 2;
    let record = SilverEvent {
        usage_date: crate::time::date_to_days(date),
        org_id: org.org_id.clone(),
        resource_id: resource.resource_id.clone(),
        service: service.clone(),
        region: region.clone(),
        metric: metric.clone(),
        unit: metric_unit.to_owned(),
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
        resource_created_at: crate::time::date_to_days(resource.created_at),
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

fn text_field(obj: &Map<String, Value>, name: &str) -> Option<String> {
    match obj.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

/// A JSON number, or a string that parses as a finite number (`"1e2"`, `" 12.5 "`).
/// Booleans, `"NaN"`, `"inf"` and everything else are not numbers.
pub fn finite_number(v: &Value) -> Option<f64> {
    let x = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    x.is_finite().then_some(x)
}

fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}
