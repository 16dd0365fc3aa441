//! The lake's tables (SPEC section 5) and how one record becomes one row of each.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use schemas::arrow::{bronze_schema, quarantine_schema, silver_schema, timestamp_type};
use schemas::speed::{LateMessage, Lineage, WindowMessage};
use schemas::time::{date_to_days, days_to_date, micros_to_days};
use schemas::{BronzeRef, EventFlags, MasterFlags, MasterRecord, Reason, SilverEvent, Source};

use crate::table::{Cell, TableSpec};

pub fn bronze_table(source: Source) -> TableSpec {
    TableSpec::new(format!("bronze/{source}"), bronze_schema(source), &[])
}

pub fn silver_table(source: Source) -> TableSpec {
    let hive: &[&str] = if source == Source::UsageEvents {
        &["service"]
    } else {
        &[]
    };
    TableSpec::new(format!("silver/{source}"), silver_schema(source), hive)
}

pub fn quarantine_table(source: Source) -> TableSpec {
    TableSpec::new(format!("quarantine/{source}"), quarantine_schema(), &[])
}

pub fn windows_schema() -> SchemaRef {
    use DataType::*;
    Arc::new(Schema::new(vec![
        Field::new("org_id", Utf8, false),
        Field::new("service", Utf8, false),
        Field::new("window_start", timestamp_type(), false),
        Field::new("window_end", timestamp_type(), false),
        Field::new("events", Int64, false),
        Field::new("cost_usd", Float64, false),
        Field::new("requests", Float64, false),
        Field::new("cpu_hours", Float64, false),
        Field::new("storage_gb_hours", Float64, false),
        Field::new("genai_tokens", Int64, false),
        Field::new("partition", Int32, false),
        Field::new("offset", Int64, false),
    ]))
}

pub fn late_schema() -> SchemaRef {
    use DataType::*;
    Arc::new(Schema::new(vec![
        Field::new("event_id", Utf8, false),
        Field::new("org_id", Utf8, false),
        Field::new("event_time", timestamp_type(), false),
        Field::new("watermark", timestamp_type(), false),
        Field::new("raw_partition", Int32, false),
        Field::new("raw_offset", Int64, false),
        Field::new("partition", Int32, false),
        Field::new("offset", Int64, false),
    ]))
}

pub fn windows_table() -> TableSpec {
    TableSpec::new("speed/usage_windows", windows_schema(), &[])
}

pub fn late_table() -> TableSpec {
    TableSpec::new("speed/late_events", late_schema(), &[])
}

/// `date=YYYY-MM-DD` of a day number (Hive's default partition when out of range).
pub fn date_dir(days: i32) -> String {
    match days_to_date(days) {
        Some(d) => format!("date={d}"),
        None => "date=__HIVE_DEFAULT_PARTITION__".into(),
    }
}

fn days(d: NaiveDate) -> Cell<'static> {
    Cell::Date(date_to_days(d))
}

fn opt_days(d: Option<NaiveDate>) -> Cell<'static> {
    d.map_or(Cell::Null, days)
}

fn lineage_cells<'a>(out: &mut Vec<Cell<'a>>, l: &'a Lineage) {
    out.extend([
        Cell::Ts(l.ingest_ms.saturating_mul(1000)),
        Cell::from(l.source_file.as_deref()),
        Cell::from(l.line_no),
        Cell::Str(&l.topic),
        Cell::I32(l.partition as i32),
        Cell::I64(l.offset as i64),
    ]);
}

/// A bronze usage event: typed as parsed, before the domain and enrichment rules.
pub fn bronze_event_row<'a>(out: &mut Vec<Cell<'a>>, e: BronzeRef<'a>, l: &'a Lineage) {
    out.clear();
    out.extend([
        Cell::Str(e.event_id),
        Cell::Ts(e.ts_micros),
        micros_to_days(e.ts_micros).map_or(Cell::Null, Cell::Date),
        Cell::from(e.org_id),
        Cell::from(e.resource_id),
        Cell::from(e.service),
        Cell::from(e.region),
        Cell::from(e.metric),
        Cell::from(e.value),
        Cell::from(e.unit),
        Cell::F64(e.cost_usd),
        Cell::I32(i32::from(e.schema_version)),
        Cell::from(e.carbon_kg),
        Cell::from(e.genai_tokens),
    ]);
    lineage_cells(out, l);
}

/// A silver usage event: conformed, flagged, enriched.
pub fn silver_event_row<'a>(
    out: &mut Vec<Cell<'a>>,
    e: &'a SilverEvent,
    flags: &EventFlags,
    l: &'a Lineage,
) {
    out.clear();
    out.extend([
        Cell::Str(&e.event_id),
        Cell::Ts(e.ts_micros),
        Cell::Date(e.usage_date),
        Cell::Str(&e.org_id),
        Cell::Str(&e.resource_id),
        Cell::Str(&e.service),
        Cell::Str(&e.region),
        Cell::Str(&e.metric),
        Cell::from(e.value),
        Cell::Str(&e.unit),
        Cell::F64(e.cost_usd),
        Cell::I32(i32::from(e.schema_version)),
        Cell::from(e.carbon_kg),
        Cell::from(e.genai_tokens),
    ]);
    out.extend(flags.values().map(Cell::Bool));
    out.extend([
        Cell::Str(&e.org_name),
        Cell::Str(&e.industry),
        Cell::Str(&e.plan_tier),
        Cell::Str(&e.hq_region),
        Cell::Str(&e.resource_state),
        Cell::Date(e.resource_created_at),
    ]);
    lineage_cells(out, l);
}

/// `silver/usage_events/date=…/service=…`.
pub fn silver_event_dir(e: &SilverEvent) -> String {
    format!("{}/service={}", date_dir(e.usage_date), e.service)
}

/// Partition directory names of events, formatted once per date and service rather
/// than once per row.
#[derive(Default)]
pub struct DirNames {
    dates: foldhash::HashMap<i32, String>,
    services: foldhash::HashMap<i32, Vec<(String, String)>>,
}

impl DirNames {
    /// `date=…` of a day number.
    pub fn date(&mut self, days: i32) -> &str {
        self.dates.entry(days).or_insert_with(|| date_dir(days))
    }

    /// `date=…` of a timestamp.
    pub fn date_of_micros(&mut self, us: i64) -> &str {
        match micros_to_days(us) {
            Some(d) => self.date(d),
            None => "date=__HIVE_DEFAULT_PARTITION__",
        }
    }

    /// `date=…/service=…` of a silver event.
    pub fn silver(&mut self, e: &SilverEvent) -> &str {
        let v = self.services.entry(e.usage_date).or_default();
        let i = match v.iter().position(|(s, _)| *s == e.service) {
            Some(i) => i,
            None => {
                v.push((e.service.to_string(), silver_event_dir(e)));
                v.len() - 1
            }
        };
        &v[i].1
    }
}

pub fn quarantine_row<'a>(
    out: &mut Vec<Cell<'a>>,
    source: Source,
    record: &'a [u8],
    reason: Reason,
    l: &'a Lineage,
) {
    out.clear();
    out.extend([
        Cell::Str(source.name()),
        Cell::Bin(record),
        Cell::Str(reason.code()),
        Cell::Str(reason.stage().as_str()),
    ]);
    lineage_cells(out, l);
}

/// The typed columns of a master record, in CSV order.
fn master_cells<'a>(out: &mut Vec<Cell<'a>>, r: &'a MasterRecord) {
    use Cell::*;
    match r {
        MasterRecord::Org(o) => out.extend([
            Str(&o.org_id),
            Str(&o.org_name),
            Str(&o.industry),
            Str(&o.hq_region),
            Str(&o.plan_tier),
            Bool(o.is_enterprise),
            days(o.signup_date),
            Str(&o.sales_rep),
            Str(&o.lifecycle_stage),
            Str(&o.marketing_source),
            Cell::from(o.nps_score),
        ]),
        MasterRecord::User(u) => out.extend([
            Str(&u.user_id),
            Str(&u.org_id),
            Str(&u.email),
            Str(&u.role),
            Bool(u.active),
            days(u.created_at),
            opt_days(u.last_login),
        ]),
        MasterRecord::Resource(x) => out.extend([
            Str(&x.resource_id),
            Str(&x.org_id),
            Str(&x.service),
            Str(&x.region),
            days(x.created_at),
            Str(&x.state),
            Cell::from(x.tags_json.as_deref()),
        ]),
        MasterRecord::Invoice(i) => out.extend([
            Str(&i.invoice_id),
            Str(&i.org_id),
            days(i.month),
            F64(i.subtotal),
            Cell::from(i.credits),
            F64(i.taxes),
            Str(&i.currency),
            F64(i.exchange_rate_to_usd),
        ]),
        MasterRecord::Ticket(t) => out.extend([
            Str(&t.ticket_id),
            Str(&t.org_id),
            Str(&t.category),
            Str(&t.severity),
            days(t.created_at),
            opt_days(t.resolved_at),
            Cell::from(t.csat),
            Bool(t.sla_breached),
        ]),
        MasterRecord::Touch(t) => out.extend([
            Str(&t.touch_id),
            Str(&t.org_id),
            Str(&t.campaign),
            Str(&t.channel),
            Ts(t.timestamp),
            Bool(t.clicked),
            Bool(t.converted),
        ]),
        MasterRecord::NpsSurvey(n) => out.extend([
            Str(&n.org_id),
            days(n.survey_date),
            Cell::from(n.nps_score),
            Cell::from(n.comment.as_deref()),
        ]),
    }
}

pub fn bronze_master_row<'a>(out: &mut Vec<Cell<'a>>, r: &'a MasterRecord, l: &'a Lineage) {
    out.clear();
    master_cells(out, r);
    lineage_cells(out, l);
}

pub fn silver_master_row<'a>(
    out: &mut Vec<Cell<'a>>,
    r: &'a MasterRecord,
    flags: &MasterFlags,
    l: &'a Lineage,
) {
    out.clear();
    master_cells(out, r);
    out.extend(
        MasterFlags::names(r.source())
            .iter()
            .map(|n| Cell::Bool(flags.get(n))),
    );
    lineage_cells(out, l);
}

pub fn window_row<'a>(out: &mut Vec<Cell<'a>>, w: &'a WindowMessage, p: u32, offset: u64) {
    out.clear();
    out.extend([
        Cell::Str(&w.org_id),
        Cell::Str(&w.service),
        Cell::Ts(w.window_start),
        Cell::Ts(w.window_end),
        Cell::I64(w.totals.events),
        Cell::F64(w.totals.cost_usd),
        Cell::F64(w.totals.requests),
        Cell::F64(w.totals.cpu_hours),
        Cell::F64(w.totals.storage_gb_hours),
        Cell::I64(w.totals.genai_tokens),
        Cell::I32(p as i32),
        Cell::I64(offset as i64),
    ]);
}

pub fn late_row<'a>(out: &mut Vec<Cell<'a>>, m: &'a LateMessage, p: u32, offset: u64) {
    out.clear();
    out.extend([
        Cell::Str(&m.event_id),
        Cell::Str(&m.org_id),
        Cell::Ts(m.event_time),
        Cell::Ts(m.watermark),
        Cell::I32(m.partition as i32),
        Cell::I64(m.offset as i64),
        Cell::I32(p as i32),
        Cell::I64(offset as i64),
    ]);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::table::Rows;

    #[test]
    fn every_master_source_fills_its_bronze_and_silver_schemas() {
        // One typed row per source, through the same cells the compactor writes.
        let lines = [
            (
                Source::CustomersOrgs,
                r#"{"org_id":"o1","org_name":"A","industry":"Media","hq_region":"us-east","plan_tier":"pro","is_enterprise":"True","signup_date":"2025-01-02","sales_rep":"x","lifecycle_stage":"active","marketing_source":"ads","nps_score":""}"#,
            ),
            (
                Source::BillingMonthly,
                r#"{"invoice_id":"i1","org_id":"o1","month":"2025-06-01","subtotal":"10.0","credits":"","taxes":"2","currency":"USD","exchange_rate_to_usd":"1.0"}"#,
            ),
            (
                Source::MarketingTouches,
                r#"{"touch_id":"t1","org_id":"o1","campaign":"welcome","channel":"email","timestamp":"2025-06-01T10:00:00Z","clicked":"True","converted":"False"}"#,
            ),
        ];
        let l = Lineage {
            source_file: Some("f.csv".into()),
            line_no: Some(2),
            topic: "raw.x".into(),
            partition: 0,
            offset: 0,
            ingest_ms: 0,
        };
        let mut master = schemas::MasterTables::default();
        for (source, line) in lines {
            let r = schemas::parse_master(source, line.as_bytes()).unwrap();
            {
                let mut cells = Vec::new();
                let mut rows = Rows::new(Arc::new(bronze_table(source))).unwrap();
                bronze_master_row(&mut cells, &r, &l);
                rows.push(&cells).unwrap();
                assert_eq!(rows.finish().unwrap().num_rows(), 1);
            }
            let mut cells = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let schemas::Outcome::Kept { record, flags } =
                schemas::validate_master(r, &master, &mut seen)
            else {
                panic!("{source}: quarantined");
            };
            master.absorb(&record);
            let mut rows = Rows::new(Arc::new(silver_table(source))).unwrap();
            silver_master_row(&mut cells, &record, &flags, &l);
            rows.push(&cells).unwrap();
            assert_eq!(rows.finish().unwrap().num_rows(), 1);
        }
    }
}
