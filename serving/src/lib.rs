//! The serving layer (SPEC section 7): gold marts and the real-time view published
//! into a store whose tables are laid out query-first, and the five dashboard queries.
//!
//! Every table has a partition key and clustering columns, as in
//! `serving/cql/schema.cql`; every query reads one partition with a range of its
//! first clustering column. The embedded store (RocksDB) keeps rows under
//! `table / partition / clustering` keys so that the same reads are prefix scans.

pub mod alerts;
pub mod cassandra;
pub mod dashboard;
pub mod embedded;
pub mod http;
pub mod publish;
pub mod query;
pub mod row;
pub mod svg;

use anyhow::Result;
pub use compactor::table::JsonRow;
pub use row::{Cell, Row};

/// A serving table: its name, key columns, and every column with its CQL type, in
/// the order of `serving/cql/schema.cql` (a test holds the two together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDef {
    pub name: &'static str,
    pub partition: &'static [&'static str],
    pub clustering: &'static [&'static str],
    /// The partition and clustering columns with their types, in key order.
    pub keys: &'static [(&'static str, Cql)],
    /// The other columns.
    pub values: &'static [(&'static str, Cql)],
}

impl TableDef {
    /// Every column with its type: the keys, then the values.
    pub fn columns(&self) -> impl Iterator<Item = &(&'static str, Cql)> {
        self.keys.iter().chain(self.values)
    }
}

/// The CQL types the serving tables use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cql {
    Text,
    Date,
    Double,
    Bigint,
    Int,
    Boolean,
}

impl Cql {
    pub fn name(self) -> &'static str {
        match self {
            Cql::Text => "text",
            Cql::Date => "date",
            Cql::Double => "double",
            Cql::Bigint => "bigint",
            Cql::Int => "int",
            Cql::Boolean => "boolean",
        }
    }
}

use Cql::{Bigint, Boolean, Date, Double, Int, Text};

const DAILY_KEYS: &[(&str, Cql)] = &[("org_id", Text), ("usage_date", Date), ("service", Text)];

const DAILY_VALUES: &[(&str, Cql)] = &[
    ("org_name", Text),
    ("industry", Text),
    ("plan_tier", Text),
    ("events", Bigint),
    ("requests", Double),
    ("cpu_hours", Double),
    ("storage_gb_hours", Double),
    ("cost_usd", Double),
    ("negative_cost_events", Bigint),
    ("genai_tokens", Bigint),
    ("carbon_kg", Double),
];

const INVOICE_VALUES: &[(&str, Cql)] = &[
    ("invoice_id", Text),
    ("currency", Text),
    ("subtotal", Double),
    ("credits", Double),
    ("taxes", Double),
    ("exchange_rate_to_usd", Double),
    ("fx_applied", Double),
    ("revenue_usd", Double),
    ("taxes_usd", Double),
    ("total_usd", Double),
    ("sign_mismatch", Boolean),
    ("fx_overridden", Boolean),
];

pub const DAILY: TableDef = TableDef {
    name: "daily_usage_by_org",
    partition: &["org_id"],
    clustering: &["usage_date", "service"],
    keys: DAILY_KEYS,
    values: DAILY_VALUES,
};
pub const SPEED_DAILY: TableDef = TableDef {
    name: "speed_daily_usage_by_org",
    ..DAILY
};
pub const TICKETS: TableDef = TableDef {
    name: "tickets_by_severity_date",
    partition: &["severity"],
    clustering: &["created_date"],
    keys: &[("severity", Text), ("created_date", Date)],
    values: &[
        ("tickets", Bigint),
        ("open_tickets", Bigint),
        ("sla_breached", Bigint),
        ("sla_breach_rate", Double),
        ("csat_avg", Double),
        ("csat_responses", Bigint),
    ],
};
/// One org's tickets per day and severity (`tickets_by_org_date`): the dashboard's
/// tickets panel.
pub const TICKETS_ORG: TableDef = TableDef {
    name: "tickets_by_org_date",
    partition: &["org_id"],
    clustering: &["created_date", "severity"],
    keys: &[("org_id", Text), ("created_date", Date), ("severity", Text)],
    values: TICKETS.values,
};
pub const REVENUE_ORG: TableDef = TableDef {
    name: "revenue_by_org_month",
    partition: &["org_id"],
    clustering: &["month"],
    keys: &[("org_id", Text), ("month", Date)],
    values: INVOICE_VALUES,
};
/// q4 for all orgs: a month's invoices, spread over buckets of orgs so that no
/// partition grows with the number of orgs (see [`org_buckets`]).
pub const REVENUE_ALL: TableDef = TableDef {
    name: "revenue_by_month_bucket",
    partition: &["month", "bucket"],
    clustering: &["org_id"],
    keys: &[("month", Date), ("bucket", Int), ("org_id", Text)],
    values: INVOICE_VALUES,
};

/// Orgs per partition of the `..._by_month_bucket` tables, at most on average.
pub const ORGS_PER_BUCKET: usize = 1000;

/// The number of buckets for `orgs` orgs: the least power of two that keeps each
/// bucket at [`ORGS_PER_BUCKET`] orgs or fewer on average.
pub fn org_buckets(orgs: usize) -> u32 {
    orgs.div_ceil(ORGS_PER_BUCKET).max(1).next_power_of_two() as u32
}

/// The bucket of an org among `buckets` (a power of two): `buckets` plus the org's
/// murmur2 partition among them. The count is part of the value, so buckets of
/// different counts never share a partition: when the count grows, the new rows go
/// to new partitions and the old ones are simply no longer read.
pub fn org_bucket(org_id: &str, buckets: u32) -> i32 {
    (buckets + eventlog::partition_for(org_id.as_bytes(), buckets)) as i32
}
pub const GENAI: TableDef = TableDef {
    name: "genai_tokens_by_org_date",
    partition: &["org_id"],
    clustering: &["usage_date"],
    keys: &[("org_id", Text), ("usage_date", Date)],
    values: &[
        ("genai_events", Bigint),
        ("total_tokens", Bigint),
        ("genai_cost_usd", Double),
    ],
};
const ANOMALY_VALUES: &[(&str, Cql)] = &[
    ("cost_usd", Double),
    ("mean", Double),
    ("stddev", Double),
    ("z_score", Double),
    ("median", Double),
    ("mad", Double),
    ("mad_score", Double),
    ("p99_service", Double),
    ("anomaly_score", Double),
    ("methods", Text),
];

/// q6 for one org: the org's anomalies by day (`cost_anomaly_mart`).
pub const ANOMALY_ORG: TableDef = TableDef {
    name: "cost_anomalies_by_org_date",
    partition: &["org_id"],
    clustering: &["usage_date", "service"],
    keys: &[("org_id", Text), ("usage_date", Date), ("service", Text)],
    values: ANOMALY_VALUES,
};

/// q6 for every org: a month's anomalies in buckets of orgs, as
/// `revenue_by_month_bucket` (see [`org_buckets`]), by day within each.
pub const ANOMALY_ALL: TableDef = TableDef {
    name: "cost_anomalies_by_month_bucket",
    partition: &["month", "bucket"],
    clustering: &["usage_date", "org_id", "service"],
    keys: &[
        ("month", Date),
        ("bucket", Int),
        ("usage_date", Date),
        ("org_id", Text),
        ("service", Text),
    ],
    values: ANOMALY_VALUES,
};

pub const TABLES: [TableDef; 9] = [
    DAILY,
    SPEED_DAILY,
    TICKETS,
    TICKETS_ORG,
    REVENUE_ORG,
    REVENUE_ALL,
    GENAI,
    ANOMALY_ORG,
    ANOMALY_ALL,
];

/// The last day the batch path covered (`usage_date` of the daily mart).
pub const META_BATCH_HIGH_WATER: &str = "batch_high_water";
/// The latest `created_date` of `tickets_by_severity_date`.
pub const META_TICKETS_LATEST: &str = "tickets_latest_date";
/// How far `speed.daily_usage` was published: per partition, the next offset and a
/// checksum of the record before it (JSON).
pub const META_SPEED_POSITIONS: &str = "speed_positions";
/// The partitions of `revenue_by_month_bucket`, `month/bucket` comma-separated in
/// month order.
pub const META_REVENUE_PARTITIONS: &str = "revenue_partitions";
/// The partitions of `cost_anomalies_by_month_bucket`, `month/bucket` comma-separated
/// in month order.
pub const META_ANOMALY_PARTITIONS: &str = "anomaly_partitions";
/// Written last by every publish (a timestamp): readers that cache answers drop
/// them when it changes.
pub const META_PUBLISHED: &str = "published_at";
/// Every org with daily rows (batch or real-time), its name and first and last
/// `usage_date`: a JSON array of [`OrgRange`].
pub const META_ORGS: &str = "orgs";
/// The same for the real-time rows published so far (merged into `orgs`).
pub const META_SPEED_ORGS: &str = "speed_orgs";

/// An org and the days it has data for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrgRange {
    pub org_id: String,
    pub org_name: String,
    pub first_date: String,
    pub last_date: String,
}

/// Folds daily rows into `ranges` (by org id).
pub fn extend_org_ranges(
    ranges: &mut std::collections::BTreeMap<String, OrgRange>,
    rows: impl IntoIterator<Item = OrgRange>,
) {
    for r in rows {
        match ranges.get_mut(&r.org_id) {
            Some(have) => {
                if r.first_date < have.first_date {
                    have.first_date = r.first_date;
                }
                if r.last_date > have.last_date {
                    have.last_date = r.last_date;
                    have.org_name = r.org_name;
                }
            }
            None => {
                ranges.insert(r.org_id.clone(), r);
            }
        }
    }
}

/// The orgs of a daily table's rows ([`DAILY`], [`SPEED_DAILY`]), each with its
/// first and last day and its name on the last day (the first row of that day).
pub fn daily_org_ranges(rows: &[Row]) -> Vec<OrgRange> {
    use std::collections::hash_map::{Entry, HashMap};
    let col = |c: &str| DAILY.index(c).unwrap_or(usize::MAX);
    let (org, day, name) = (col("org_id"), col("usage_date"), col("org_name"));
    let mut by_org: HashMap<&str, (i32, i32, &str)> = HashMap::new();
    for r in rows {
        let (Some(Cell::Text(o)), Some(Cell::Date(d))) = (r.get(org), r.get(day)) else {
            continue;
        };
        let n = match r.get(name) {
            Some(Cell::Text(n)) => n.as_str(),
            _ => "",
        };
        match by_org.entry(o) {
            Entry::Occupied(mut e) => {
                let (first, last, last_name) = e.get_mut();
                *first = (*first).min(*d);
                if *d > *last {
                    (*last, *last_name) = (*d, n);
                }
            }
            Entry::Vacant(e) => {
                e.insert((*d, *d, n));
            }
        }
    }
    by_org
        .into_iter()
        .map(|(o, (first, last, name))| OrgRange {
            org_id: o.to_owned(),
            org_name: name.to_owned(),
            first_date: row::date_text(first),
            last_date: row::date_text(last),
        })
        .collect()
}

/// Where serving rows live.
pub trait ServingStore {
    /// Replaces a table's rows with `rows` (each in the table's column order),
    /// atomically: a reader sees the old rows or the new ones. Publishing the same
    /// rows again changes nothing.
    fn replace_table(&self, table: &TableDef, rows: &[Row]) -> Result<()>;
    /// Inserts or overwrites `rows`, leaving the table's other rows alone.
    fn upsert(&self, table: &TableDef, rows: &[Row]) -> Result<()>;
    /// The rows of one partition whose first clustering column is within
    /// `[from, to]` (either end open), in clustering order.
    fn scan(
        &self,
        table: &TableDef,
        partition: &[&str],
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<JsonRow>>;
    fn put_meta(&self, name: &str, value: &str) -> Result<()>;
    /// Writes several marks, in order, after every row written before them: the
    /// last step of a publish. (The embedded store writes them in one synced batch,
    /// which also makes the rows before them durable.)
    fn put_metas(&self, metas: &[(&str, String)]) -> Result<()> {
        for (name, value) in metas {
            self.put_meta(name, value)?;
        }
        Ok(())
    }
    fn meta(&self, name: &str) -> Result<Option<String>>;
    /// A reader catches up with what writers wrote since it opened (a no-op where
    /// every read already sees the latest writes, as in Cassandra).
    fn refresh(&self) -> Result<()> {
        Ok(())
    }
    /// Changes whenever what a query reads may have changed: a cache of answers is
    /// good while it stays the same. By default the mark `serving publish` writes
    /// last; the embedded store has an exact one (RocksDB's sequence number).
    fn version(&self) -> Result<Option<String>> {
        self.meta(META_PUBLISHED)
    }
}

/// A key column's value as text (dates are `YYYY-MM-DD`, which sorts as dates do).
pub fn key_text(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The store a serving URL names.
pub enum AnyStore {
    Embedded(embedded::EmbeddedStore),
    Cassandra(Box<cassandra::CassandraStore>),
}

impl AnyStore {
    /// The backend behind the URL.
    fn inner(&self) -> &dyn ServingStore {
        match self {
            AnyStore::Embedded(s) => s,
            AnyStore::Cassandra(s) => s.as_ref(),
        }
    }
}

impl ServingStore for AnyStore {
    fn replace_table(&self, table: &TableDef, rows: &[Row]) -> Result<()> {
        self.inner().replace_table(table, rows)
    }

    fn upsert(&self, table: &TableDef, rows: &[Row]) -> Result<()> {
        self.inner().upsert(table, rows)
    }

    fn scan(
        &self,
        table: &TableDef,
        partition: &[&str],
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<JsonRow>> {
        self.inner().scan(table, partition, from, to)
    }

    fn put_meta(&self, name: &str, value: &str) -> Result<()> {
        self.inner().put_meta(name, value)
    }

    fn put_metas(&self, metas: &[(&str, String)]) -> Result<()> {
        self.inner().put_metas(metas)
    }

    fn meta(&self, name: &str) -> Result<Option<String>> {
        self.inner().meta(name)
    }

    fn refresh(&self) -> Result<()> {
        self.inner().refresh()
    }

    fn version(&self) -> Result<Option<String>> {
        self.inner().version()
    }
}

/// Opens the store the config's serving URL names: `embedded:<dir>`, or
/// `cassandra://host:port[,host:port]/keyspace` (with the `[serving]` section and
/// `PIPELINE_CASSANDRA_*` settings from the environment).
pub fn open_configured(config: &eventlog::PipelineConfig) -> Result<AnyStore> {
    open_with(&config.serving_url(), &config.serving, Access::Write)
}

/// Opens the configured store for queries only: the embedded store as a reader that
/// runs beside a writer (see [`embedded::EmbeddedStore::open_reader`]).
pub fn open_configured_reader(config: &eventlog::PipelineConfig) -> Result<AnyStore> {
    open_with(&config.serving_url(), &config.serving, Access::Read)
}

/// Opens the store a serving URL names, with no `[serving]` settings from a file.
pub fn open(url: &str) -> Result<AnyStore> {
    open_with(url, &Default::default(), Access::Write)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

fn open_with(
    url: &str,
    section: &eventlog::config::ServingSection,
    access: Access,
) -> Result<AnyStore> {
    if let Some(dir) = url.strip_prefix("embedded:") {
        let dir = std::path::Path::new(dir);
        return Ok(AnyStore::Embedded(match access {
            Access::Write => embedded::EmbeddedStore::open(dir)?,
            Access::Read => embedded::EmbeddedStore::open_reader(dir)?,
        }));
    }
    if url.starts_with("cassandra://") {
        let settings =
            cassandra::CassandraSettings::from_config(url, section, |k| std::env::var(k).ok())?;
        return Ok(AnyStore::Cassandra(Box::new(
            cassandra::CassandraStore::connect(settings)?,
        )));
    }
    anyhow::bail!(
        "serving URL {}: expected embedded:<dir> or cassandra://host:port/keyspace",
        eventlog::redact_url(url)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn org_ranges_span_each_orgs_days_with_its_latest_name() {
        let row = |org: &str, day: i32, name: &str| {
            let mut r = vec![Cell::Null; DAILY.columns().count()];
            r[0] = Cell::Text(org.into());
            r[1] = Cell::Date(day);
            r[2] = Cell::Text("compute".into());
            r[3] = Cell::Text(name.into());
            r
        };
        let rows = vec![
            row("b", 20_300, "B"),
            row("a", 20_302, "A2"),
            row("a", 20_299, "A0"),
            row("a", 20_302, "A2 again"),
            row("a", 20_301, "A1"),
        ];
        let mut got = daily_org_ranges(&rows);
        got.sort_by(|x, y| x.org_id.cmp(&y.org_id));
        let range = |org: &str, name: &str, first: &str, last: &str| OrgRange {
            org_id: org.into(),
            org_name: name.into(),
            first_date: first.into(),
            last_date: last.into(),
        };
        assert_eq!(
            got,
            [
                range("a", "A2", "2025-07-30", "2025-08-02"),
                range("b", "B", "2025-07-31", "2025-07-31"),
            ]
        );
        // Folded into earlier ranges: the span grows, the later name wins.
        let mut all = std::collections::BTreeMap::new();
        extend_org_ranges(&mut all, [range("a", "old", "2025-07-01", "2025-07-02")]);
        extend_org_ranges(&mut all, got);
        assert_eq!(all["a"], range("a", "A2", "2025-07-01", "2025-08-02"));
    }
}
