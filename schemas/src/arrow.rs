//! Arrow schemas of the lake's bronze, silver and quarantine tables (SPEC section 5):
//! dates are `Date32`, timestamps microseconds UTC, money and measures `Float64`,
//! counts `Int64`, flags `Boolean`.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::{EventFlags, MasterFlags, Source};

pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn f(name: &str, dt: DataType, nullable: bool) -> Field {
    Field::new(name, dt, nullable)
}

/// Where a record came from: the landing file, and its position in the log.
fn lineage() -> Vec<Field> {
    vec![
        f("ingest_ts", timestamp_type(), false),
        f("source_file", DataType::Utf8, true),
        f("line_no", DataType::Int64, true),
        f("topic", DataType::Utf8, false),
        f("partition", DataType::Int32, false),
        f("offset", DataType::Int64, false),
    ]
}

fn usage_event_fields() -> Vec<Field> {
    use DataType::*;
    vec![
        f("event_id", Utf8, false),
        f("timestamp", timestamp_type(), false),
        f("usage_date", Date32, false),
        f("org_id", Utf8, true),
        f("resource_id", Utf8, true),
        f("service", Utf8, true),
        f("region", Utf8, true),
        f("metric", Utf8, true),
        f("value", Float64, true),
        f("unit", Utf8, true),
        f("cost_usd", Float64, false),
        f("schema_version", Int32, false),
        f("carbon_kg", Float64, true),
        f("genai_tokens", Int64, true),
    ]
}

/// The typed columns of a master source, in CSV order.
fn master_fields(source: Source) -> Vec<Field> {
    use DataType::*;
    let nullable = source.nullable_columns();
    source
        .columns()
        .iter()
        .map(|col| {
            let dt = match (source, *col) {
                (_, "signup_date" | "created_at" | "last_login" | "month" | "resolved_at")
                | (Source::NpsSurveys, "survey_date") => Date32,
                (Source::MarketingTouches, "timestamp") => timestamp_type(),
                (_, "is_enterprise" | "active" | "sla_breached" | "clicked" | "converted") => {
                    Boolean
                }
                (
                    _,
                    "nps_score"
                    | "subtotal"
                    | "credits"
                    | "taxes"
                    | "exchange_rate_to_usd"
                    | "csat",
                ) => Float64,
                _ => Utf8,
            };
            f(col, dt, nullable.contains(col))
        })
        .collect()
}

/// `bronze/<source>/`: the source grain, typed, with lineage.
pub fn bronze_schema(source: Source) -> SchemaRef {
    let mut fields = match source {
        Source::UsageEvents => usage_event_fields(),
        _ => master_fields(source),
    };
    fields.extend(lineage());
    Arc::new(Schema::new(fields))
}

/// `silver/<source>/`: kept records, conformed, with flags (and, for usage events,
/// the org and resource attributes they were enriched with).
pub fn silver_schema(source: Source) -> SchemaRef {
    use DataType::*;
    let mut fields = match source {
        Source::UsageEvents => {
            let mut v: Vec<Field> = usage_event_fields()
                .into_iter()
                .map(|fl| match fl.name().as_str() {
                    "org_id" | "resource_id" | "service" | "region" | "metric" | "unit" => {
                        fl.with_nullable(false)
                    }
                    _ => fl,
                })
                .collect();
            v.extend(EventFlags::NAMES.iter().map(|n| f(n, Boolean, false)));
            v.extend([
                f("org_name", Utf8, false),
                f("industry", Utf8, false),
                f("plan_tier", Utf8, false),
                f("hq_region", Utf8, false),
                f("resource_state", Utf8, false),
                f("resource_created_at", Date32, false),
            ]);
            v
        }
        _ => {
            let mut v: Vec<Field> = master_fields(source)
                .into_iter()
                .map(|fl| {
                    if source == Source::BillingMonthly && fl.name() == "credits" {
                        fl.with_nullable(false)
                    } else {
                        fl
                    }
                })
                .collect();
            v.extend(
                MasterFlags::names(source)
                    .iter()
                    .map(|n| f(n, Boolean, false)),
            );
            v
        }
    };
    fields.extend(lineage());
    Arc::new(Schema::new(fields))
}

/// `quarantine/<source>/`: the original record bytes, the reason and the stage.
pub fn quarantine_schema() -> SchemaRef {
    use DataType::*;
    let mut fields = vec![
        f("source", Utf8, false),
        f("record", Binary, false),
        f("reason", Utf8, false),
        f("stage", Utf8, false),
    ];
    fields.extend(lineage());
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_has_bronze_and_silver_schemas() {
        for s in Source::ALL {
            let b = bronze_schema(s);
            let sv = silver_schema(s);
            assert!(b.field_with_name("offset").is_ok(), "{s}");
            assert!(sv.fields().len() >= b.fields().len() - 1, "{s}");
        }
        let silver = silver_schema(Source::UsageEvents);
        assert_eq!(
            silver.field_with_name("usage_date").unwrap().data_type(),
            &DataType::Date32
        );
        assert_eq!(
            silver.field_with_name("cost_spike").unwrap().data_type(),
            &DataType::Boolean
        );
        let billing = silver_schema(Source::BillingMonthly);
        assert!(!billing.field_with_name("credits").unwrap().is_nullable());
        assert_eq!(
            billing.field_with_name("month").unwrap().data_type(),
            &DataType::Date32
        );
    }
}
