//! Master data (the seven CSV sources): how a CSV row travels in the log (a JSON
//! object of strings), its typed record, and the rules of SPEC section 4 for it.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::NaiveDate;
use serde_json::{Map, Value};

use crate::domain;
use crate::time::{date_to_micros, parse_date, parse_timestamp_micros};
use crate::{MasterData, Outcome, Reason, SeenKeys, Source};

/// Key of a field the producer adds when a row had more fields than its header.
const EXTRA_PREFIX: &str = "_extra_";
/// Key the producer adds when a row was not valid UTF-8 (its text is then lossy).
const INVALID_UTF8: &str = "_invalid_utf8";

/// Builds the raw topic record of one CSV row: its natural key and the row as a JSON
/// object of strings, fields in header order. A row whose field count differs from the
/// header keeps every field (extras as `_extra_N`), so that nothing is lost and the
/// `parse_error` rule can see it.
pub fn csv_row_value(source: Source, header: &[String], fields: &[&[u8]]) -> (String, Vec<u8>) {
    let mut out = Vec::with_capacity(64 + fields.iter().map(|f| f.len() + 16).sum::<usize>());
    let mut invalid = false;
    let mut key_parts: Vec<(usize, String)> = Vec::new();
    out.push(b'{');
    for (i, raw) in fields.iter().enumerate() {
        let text = match std::str::from_utf8(raw) {
            Ok(t) => std::borrow::Cow::Borrowed(t),
            Err(_) => {
                invalid = true;
                String::from_utf8_lossy(raw)
            }
        };
        let name = match header.get(i) {
            Some(h) => std::borrow::Cow::Borrowed(h.as_str()),
            None => std::borrow::Cow::Owned(format!("{EXTRA_PREFIX}{}", i + 1 - header.len())),
        };
        if let Some(pos) = source.key_columns().iter().position(|k| *k == name) {
            key_parts.push((pos, text.to_string()));
        }
        if i > 0 {
            out.push(b',');
        }
        push_json_pair(&mut out, &name, &text);
    }
    if invalid {
        if !fields.is_empty() {
            out.push(b',');
        }
        push_json_pair(&mut out, INVALID_UTF8, "true");
    }
    out.push(b'}');
    key_parts.sort_by_key(|(pos, _)| *pos);
    let key = key_parts
        .into_iter()
        .map(|(_, v)| v)
        .collect::<Vec<_>>()
        .join("|");
    (key, out)
}

fn push_json_pair(out: &mut Vec<u8>, name: &str, value: &str) {
    // Serializing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, name);
    out.push(b':');
    let _ = serde_json::to_writer(&mut *out, value);
}

#[derive(Debug, Clone, PartialEq)]
pub struct Org {
    pub org_id: String,
    pub org_name: Arc<str>,
    pub industry: Cow<'static, str>,
    pub hq_region: Cow<'static, str>,
    pub plan_tier: Cow<'static, str>,
    pub is_enterprise: bool,
    pub signup_date: NaiveDate,
    pub sales_rep: String,
    pub lifecycle_stage: String,
    pub marketing_source: String,
    pub nps_score: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub user_id: String,
    pub org_id: String,
    pub email: String,
    pub role: String,
    pub active: bool,
    pub created_at: NaiveDate,
    pub last_login: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub resource_id: String,
    pub org_id: String,
    pub service: String,
    pub region: String,
    pub created_at: NaiveDate,
    pub state: Cow<'static, str>,
    pub tags_json: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Invoice {
    pub invoice_id: String,
    pub org_id: String,
    pub month: NaiveDate,
    pub subtotal: f64,
    /// As given; silver imputes an empty one to 0 (flag `credits_imputed`).
    pub credits: Option<f64>,
    pub taxes: f64,
    pub currency: String,
    pub exchange_rate_to_usd: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub ticket_id: String,
    pub org_id: String,
    pub category: String,
    pub severity: String,
    pub created_at: NaiveDate,
    pub resolved_at: Option<NaiveDate>,
    pub csat: Option<f64>,
    pub sla_breached: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Touch {
    pub touch_id: String,
    pub org_id: String,
    pub campaign: String,
    pub channel: String,
    /// UTC microseconds (a bare date is midnight UTC).
    pub timestamp: i64,
    pub clicked: bool,
    pub converted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NpsSurvey {
    pub org_id: String,
    pub survey_date: NaiveDate,
    pub nps_score: Option<f64>,
    pub comment: Option<String>,
}

/// A typed master-data row.
#[derive(Debug, Clone, PartialEq)]
pub enum MasterRecord {
    Org(Org),
    User(User),
    Resource(Resource),
    Invoice(Invoice),
    Ticket(Ticket),
    Touch(Touch),
    NpsSurvey(NpsSurvey),
}

impl MasterRecord {
    pub fn source(&self) -> Source {
        match self {
            MasterRecord::Org(_) => Source::CustomersOrgs,
            MasterRecord::User(_) => Source::Users,
            MasterRecord::Resource(_) => Source::Resources,
            MasterRecord::Invoice(_) => Source::BillingMonthly,
            MasterRecord::Ticket(_) => Source::SupportTickets,
            MasterRecord::Touch(_) => Source::MarketingTouches,
            MasterRecord::NpsSurvey(_) => Source::NpsSurveys,
        }
    }

    /// The natural key, with `|` between the parts of a composite key.
    pub fn natural_key(&self) -> String {
        match self {
            MasterRecord::Org(r) => r.org_id.clone(),
            MasterRecord::User(r) => r.user_id.clone(),
            MasterRecord::Resource(r) => r.resource_id.clone(),
            MasterRecord::Invoice(r) => r.invoice_id.clone(),
            MasterRecord::Ticket(r) => r.ticket_id.clone(),
            MasterRecord::Touch(r) => r.touch_id.clone(),
            MasterRecord::NpsSurvey(r) => format!("{}|{}", r.org_id, r.survey_date),
        }
    }

    /// The org a row belongs to (an org row's own id).
    pub fn org_id(&self) -> &str {
        match self {
            MasterRecord::Org(r) => &r.org_id,
            MasterRecord::User(r) => &r.org_id,
            MasterRecord::Resource(r) => &r.org_id,
            MasterRecord::Invoice(r) => &r.org_id,
            MasterRecord::Ticket(r) => &r.org_id,
            MasterRecord::Touch(r) => &r.org_id,
            MasterRecord::NpsSurvey(r) => &r.org_id,
        }
    }
}

/// Flags on kept master rows; each source sets only its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MasterFlags {
    pub nps_out_of_range: bool,
    pub sign_mismatch: bool,
    pub credits_imputed: bool,
    pub fx_overridden: bool,
    pub csat_out_of_range: bool,
    pub open_with_csat: bool,
}

impl MasterFlags {
    /// The flag columns a source's silver table carries.
    pub fn names(source: Source) -> &'static [&'static str] {
        match source {
            Source::CustomersOrgs | Source::NpsSurveys => &["nps_out_of_range"],
            Source::BillingMonthly => &["sign_mismatch", "credits_imputed", "fx_overridden"],
            Source::SupportTickets => &["csat_out_of_range", "open_with_csat"],
            _ => &[],
        }
    }

    pub fn get(&self, name: &str) -> bool {
        match name {
            "nps_out_of_range" => self.nps_out_of_range,
            "sign_mismatch" => self.sign_mismatch,
            "credits_imputed" => self.credits_imputed,
            "fx_overridden" => self.fx_overridden,
            "csat_out_of_range" => self.csat_out_of_range,
            "open_with_csat" => self.open_with_csat,
            _ => false,
        }
    }
}

/// Reads fields of one row; every failure is a `parse_error`, except an empty key
/// column, which is `missing_key` (checked after every parse, as the SPEC orders).
struct Row<'a> {
    source: Source,
    map: &'a Map<String, Value>,
}

impl<'a> Row<'a> {
    fn text(&self, col: &str) -> Result<Option<&'a str>, Reason> {
        match self.map.get(col) {
            Some(Value::String(s)) if s.is_empty() => {
                if self.source.nullable_columns().contains(&col)
                    || self.source.key_columns().contains(&col)
                {
                    Ok(None)
                } else {
                    Err(Reason::ParseError)
                }
            }
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            _ => Err(Reason::ParseError),
        }
    }

    /// A required text column (key columns may be empty here: see `missing_key`).
    fn string(&self, col: &str) -> Result<String, Reason> {
        Ok(self.text(col)?.unwrap_or_default().to_owned())
    }

    /// A categorical column: its domain's own `'static` text when the value is a
    /// member (no copy per row), else the value (which the domain rule rejects).
    fn categorical(
        &self,
        col: &str,
        allowed: &[&'static str],
    ) -> Result<Cow<'static, str>, Reason> {
        Ok(domain::categorical(
            self.text(col)?.unwrap_or_default(),
            allowed,
        ))
    }

    fn opt_string(&self, col: &str) -> Result<Option<String>, Reason> {
        Ok(self.text(col)?.map(str::to_owned))
    }

    fn opt_number(&self, col: &str) -> Result<Option<f64>, Reason> {
        match self.text(col)? {
            None => Ok(None),
            Some(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or(Reason::ParseError),
        }
    }

    fn number(&self, col: &str) -> Result<f64, Reason> {
        self.opt_number(col)?.ok_or(Reason::ParseError)
    }

    fn opt_date(&self, col: &str) -> Result<Option<NaiveDate>, Reason> {
        match self.text(col)? {
            None => Ok(None),
            Some(s) => parse_date(s.trim()).map(Some).ok_or(Reason::ParseError),
        }
    }

    /// A required date; an empty key date is left to `missing_key` (as the epoch).
    fn date(&self, col: &str) -> Result<NaiveDate, Reason> {
        match self.opt_date(col)? {
            Some(d) => Ok(d),
            None if self.source.key_columns().contains(&col) => Ok(NaiveDate::MIN),
            None => Err(Reason::ParseError),
        }
    }

    fn timestamp(&self, col: &str) -> Result<i64, Reason> {
        let s = self.text(col)?.ok_or(Reason::ParseError)?.trim();
        parse_timestamp_micros(s)
            .or_else(|| parse_date(s).map(date_to_micros))
            .ok_or(Reason::ParseError)
    }

    fn boolean(&self, col: &str) -> Result<bool, Reason> {
        match self.text(col)?.map(str::trim) {
            Some("True" | "true" | "TRUE") => Ok(true),
            Some("False" | "false" | "FALSE") => Ok(false),
            _ => Err(Reason::ParseError),
        }
    }
}

/// Applies the typing rules (`parse_error`, `missing_key`) to one raw CSV topic value.
pub fn parse_master(source: Source, value: &[u8]) -> Result<MasterRecord, Reason> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(value) else {
        return Err(Reason::ParseError);
    };
    let columns = source.columns();
    if columns.is_empty()
        || map.len() != columns.len()
        || !columns.iter().all(|c| map.contains_key(*c))
    {
        return Err(Reason::ParseError);
    }
    let row = Row { source, map: &map };
    let record = match source {
        Source::UsageEvents => return Err(Reason::ParseError),
        Source::CustomersOrgs => MasterRecord::Org(Org {
            org_id: row.string("org_id")?,
            org_name: row.string("org_name")?.into(),
            industry: row.categorical("industry", &domain::INDUSTRIES)?,
            hq_region: row.categorical("hq_region", &domain::REGIONS)?,
            plan_tier: row.categorical("plan_tier", &domain::PLAN_TIERS)?,
            is_enterprise: row.boolean("is_enterprise")?,
            signup_date: row.date("signup_date")?,
            sales_rep: row.string("sales_rep")?,
            lifecycle_stage: row.string("lifecycle_stage")?,
            marketing_source: row.string("marketing_source")?,
            nps_score: row.opt_number("nps_score")?,
        }),
        Source::Users => MasterRecord::User(User {
            user_id: row.string("user_id")?,
            org_id: row.string("org_id")?,
            email: row.string("email")?,
            role: row.string("role")?,
            active: row.boolean("active")?,
            created_at: row.date("created_at")?,
            last_login: row.opt_date("last_login")?,
        }),
        Source::Resources => MasterRecord::Resource(Resource {
            resource_id: row.string("resource_id")?,
            org_id: row.string("org_id")?,
            service: row.string("service")?,
            region: row.string("region")?,
            created_at: row.date("created_at")?,
            state: row.categorical("state", &domain::RESOURCE_STATES)?,
            tags_json: row.opt_string("tags_json")?,
        }),
        Source::BillingMonthly => MasterRecord::Invoice(Invoice {
            invoice_id: row.string("invoice_id")?,
            org_id: row.string("org_id")?,
            month: row.date("month")?,
            subtotal: row.number("subtotal")?,
            credits: row.opt_number("credits")?,
            taxes: row.number("taxes")?,
            currency: row.string("currency")?,
            exchange_rate_to_usd: row.number("exchange_rate_to_usd")?,
        }),
        Source::SupportTickets => MasterRecord::Ticket(Ticket {
            ticket_id: row.string("ticket_id")?,
            org_id: row.string("org_id")?,
            category: row.string("category")?,
            severity: row.string("severity")?,
            created_at: row.date("created_at")?,
            resolved_at: row.opt_date("resolved_at")?,
            csat: row.opt_number("csat")?,
            sla_breached: row.boolean("sla_breached")?,
        }),
        Source::MarketingTouches => MasterRecord::Touch(Touch {
            touch_id: row.string("touch_id")?,
            org_id: row.string("org_id")?,
            campaign: row.string("campaign")?,
            channel: row.string("channel")?,
            timestamp: row.timestamp("timestamp")?,
            clicked: row.boolean("clicked")?,
            converted: row.boolean("converted")?,
        }),
        Source::NpsSurveys => MasterRecord::NpsSurvey(NpsSurvey {
            org_id: row.string("org_id")?,
            survey_date: row.date("survey_date")?,
            nps_score: row.opt_number("nps_score")?,
            comment: row.opt_string("comment")?,
        }),
    };
    for col in source.key_columns() {
        if row.text(col)?.is_none_or(|s| s.trim().is_empty()) {
            return Err(Reason::MissingKey);
        }
    }
    Ok(record)
}

fn in_domain(record: &MasterRecord) -> bool {
    use domain::*;
    match record {
        MasterRecord::Org(r) => {
            is_one_of(&r.industry, &INDUSTRIES)
                && is_one_of(&r.hq_region, &REGIONS)
                && is_one_of(&r.plan_tier, &PLAN_TIERS)
                && is_one_of(&r.lifecycle_stage, &LIFECYCLE_STAGES)
                && is_one_of(&r.marketing_source, &MARKETING_SOURCES)
        }
        MasterRecord::User(r) => is_one_of(&r.role, &ROLES),
        MasterRecord::Resource(r) => {
            is_one_of(&r.service, &SERVICES)
                && is_one_of(&r.region, &REGIONS)
                && is_one_of(&r.state, &RESOURCE_STATES)
        }
        MasterRecord::Invoice(r) => is_one_of(&r.currency, &CURRENCIES),
        MasterRecord::Ticket(r) => {
            is_one_of(&r.category, &TICKET_CATEGORIES) && is_one_of(&r.severity, &SEVERITIES)
        }
        MasterRecord::Touch(r) => {
            is_one_of(&r.campaign, &CAMPAIGNS) && is_one_of(&r.channel, &CHANNELS)
        }
        MasterRecord::NpsSurvey(_) => true,
    }
}

fn nps_out_of_range(score: Option<f64>) -> bool {
    score.is_some_and(|s| !(-100.0..=100.0).contains(&s))
}

/// Applies the remaining master-data rules (`bad_domain`, `unknown_org`, `bad_dates`,
/// `duplicate`) and sets the flags. Kept rows claim their natural key in `seen`; a
/// silver invoice has its empty credits imputed to 0.
pub fn validate_master(
    mut record: MasterRecord,
    master: &impl MasterData,
    seen: &mut impl SeenKeys,
) -> Outcome<MasterRecord, MasterFlags> {
    use Outcome::Quarantined;
    if !in_domain(&record) {
        return Quarantined {
            reason: Reason::BadDomain,
        };
    }
    if !matches!(record, MasterRecord::Org(_)) && master.org(record.org_id()).is_none() {
        return Quarantined {
            reason: Reason::UnknownOrg,
        };
    }
    if let MasterRecord::Ticket(t) = &record
        && t.resolved_at.is_some_and(|r| r < t.created_at)
    {
        return Quarantined {
            reason: Reason::BadDates,
        };
    }
    if !seen.insert(&record.natural_key()) {
        return Quarantined {
            reason: Reason::Duplicate,
        };
    }
    let mut flags = MasterFlags::default();
    match &mut record {
        MasterRecord::Org(r) => flags.nps_out_of_range = nps_out_of_range(r.nps_score),
        MasterRecord::NpsSurvey(r) => flags.nps_out_of_range = nps_out_of_range(r.nps_score),
        MasterRecord::Invoice(r) => {
            flags.sign_mismatch =
                (r.subtotal > 0.0 && r.taxes < 0.0) || (r.subtotal < 0.0 && r.taxes > 0.0);
            flags.credits_imputed = r.credits.is_none();
            flags.fx_overridden = r.currency == "USD" && r.exchange_rate_to_usd != 1.0;
            r.credits = Some(r.credits.unwrap_or(0.0));
        }
        MasterRecord::Ticket(r) => {
            flags.csat_out_of_range = r.csat.is_some_and(|c| !(1.0..=5.0).contains(&c));
            flags.open_with_csat = r.resolved_at.is_none() && r.csat.is_some();
        }
        MasterRecord::User(_) | MasterRecord::Resource(_) | MasterRecord::Touch(_) => {}
    }
    Outcome::Kept { record, flags }
}

/// Every rule of SPEC section 4 for one raw CSV topic value.
pub fn apply_master_rules(
    source: Source,
    value: &[u8],
    master: &impl MasterData,
    seen: &mut impl SeenKeys,
) -> Outcome<MasterRecord, MasterFlags> {
    match parse_master(source, value) {
        Ok(record) => validate_master(record, master, seen),
        Err(reason) => Outcome::Quarantined { reason },
    }
}
