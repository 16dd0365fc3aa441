//! The Cassandra/ScyllaDB backend: what it sends, how it groups and retries writes,
//! and how it is configured. These are plain functions, tested here without a
//! cluster; the session that executes them through the `scylla` driver is the next
//! step (`serving::open` refuses `cassandra://` URLs until then).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use serde_json::Value;

use crate::{Cql, JsonRow, TableDef, key_text};

/// The CQL of `serving/cql/schema.cql`, shipped in the binary.
pub const SCHEMA_CQL: &str = include_str!("../cql/schema.cql");
const DEFAULT_KEYSPACE: &str = "cloud_analytics";
const DEFAULT_REPLICATION: &str = "{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}";

/// `cassandra://host:port[,host:port...][/keyspace]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CassandraUrl {
    pub nodes: Vec<String>,
    pub keyspace: String,
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 48
}

impl FromStr for CassandraUrl {
    type Err = anyhow::Error;

    fn from_str(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("cassandra://")
            .with_context(|| format!("{url:?}: expected cassandra://host:port/keyspace"))?;
        let (hosts, keyspace) = rest.split_once('/').unwrap_or((rest, DEFAULT_KEYSPACE));
        let keyspace = if keyspace.is_empty() {
            DEFAULT_KEYSPACE
        } else {
            keyspace
        };
        if !is_identifier(keyspace) {
            bail!("{url:?}: keyspace {keyspace:?} is not a CQL identifier");
        }
        let nodes: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                {
                    h.to_owned()
                } else {
                    format!("{h}:9042")
                }
            })
            .collect();
        if nodes.is_empty() {
            bail!("{url:?}: no contact point");
        }
        Ok(CassandraUrl {
            nodes,
            keyspace: keyspace.to_owned(),
        })
    }
}

/// A password that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Everything the backend needs besides the rows.
#[derive(Debug, Clone, PartialEq)]
pub struct CassandraSettings {
    pub url: CassandraUrl,
    pub local_datacenter: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// PEM files: the CA that signs the cluster's certificates, and a client
    /// certificate and key for mutual TLS (as a secure connect bundle provides).
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The keyspace's replication map, as CQL.
    pub replication: String,
    /// Batches in flight at once.
    pub concurrency: usize,
    /// Rows per batch (every batch holds one partition).
    pub batch_rows: usize,
    pub backoff: Backoff,
}

impl CassandraSettings {
    /// From the serving URL and the environment (`PIPELINE_CASSANDRA_*`: `LOCAL_DC`,
    /// `USERNAME`, `PASSWORD`, `TLS_CA`, `TLS_CERT`, `TLS_KEY`, `REPLICATION`).
    pub fn from_env(url: &str, var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |k: &str| var(&format!("PIPELINE_CASSANDRA_{k}")).filter(|v| !v.is_empty());
        let s = CassandraSettings {
            url: url.parse()?,
            local_datacenter: get("LOCAL_DC"),
            username: get("USERNAME"),
            password: get("PASSWORD").map(Secret),
            tls_ca: get("TLS_CA").map(PathBuf::from),
            tls_cert: get("TLS_CERT").map(PathBuf::from),
            tls_key: get("TLS_KEY").map(PathBuf::from),
            replication: get("REPLICATION").unwrap_or_else(|| DEFAULT_REPLICATION.into()),
            concurrency: 16,
            batch_rows: 100,
            backoff: Backoff::default(),
        };
        if s.password.is_some() && s.username.is_none() {
            bail!("PIPELINE_CASSANDRA_PASSWORD is set but PIPELINE_CASSANDRA_USERNAME is not");
        }
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            bail!("PIPELINE_CASSANDRA_TLS_CERT and PIPELINE_CASSANDRA_TLS_KEY go together");
        }
        Ok(s)
    }
}

/// The statements of `schema.cql` for a keyspace and a replication map.
pub fn schema_statements(keyspace: &str, replication: &str) -> Vec<String> {
    let text: String = SCHEMA_CQL
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let s = s.replace(DEFAULT_KEYSPACE, keyspace);
            s.replace(DEFAULT_REPLICATION, replication)
        })
        .collect()
}

/// The prepared upsert of a table's rows (an INSERT is an upsert in CQL).
pub fn insert_cql(keyspace: &str, t: &TableDef) -> String {
    let cols: Vec<&str> = t.columns().map(|(c, _)| *c).collect();
    let marks = vec!["?"; cols.len()].join(", ");
    format!(
        "INSERT INTO {keyspace}.{} ({}) VALUES ({marks})",
        t.name,
        cols.join(", ")
    )
}

/// The read of one partition, with a range of the first clustering column.
pub fn select_cql(keyspace: &str, t: &TableDef, from: bool, to: bool) -> String {
    let cols: Vec<&str> = t.columns().map(|(c, _)| *c).collect();
    let mut q = format!(
        "SELECT {} FROM {keyspace}.{} WHERE ",
        cols.join(", "),
        t.name
    );
    let mut conds: Vec<String> = t.partition.iter().map(|p| format!("{p} = ?")).collect();
    if let Some(c) = t.clustering.first() {
        if from {
            conds.push(format!("{c} >= ?"));
        }
        if to {
            conds.push(format!("{c} <= ?"));
        }
    }
    q.push_str(&conds.join(" AND "));
    q
}

/// One bound value, typed as its column.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Null,
    Text(String),
    Date(NaiveDate),
    Double(f64),
    Bigint(i64),
    Int(i32),
    Boolean(bool),
}

/// A row's values in the table's column order. A key column must be present; a
/// missing other column is null.
pub fn bind_values(t: &TableDef, row: &JsonRow) -> Result<Vec<Bound>> {
    let is_key = |c: &str| t.partition.contains(&c) || t.clustering.contains(&c);
    t.columns()
        .map(|(c, ty)| {
            let v = row.get(*c).unwrap_or(&Value::Null);
            let bad = || anyhow::anyhow!("{}.{c}: {v} is not a {}", t.name, ty.name());
            Ok(match (ty, v) {
                (_, Value::Null) if is_key(c) => bail!("{}: key column {c} is null", t.name),
                (_, Value::Null) => Bound::Null,
                (Cql::Text, Value::String(s)) => Bound::Text(s.clone()),
                (Cql::Date, Value::String(s)) => {
                    Bound::Date(NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad())?)
                }
                (Cql::Double, Value::Number(n)) => Bound::Double(n.as_f64().ok_or_else(bad)?),
                (Cql::Bigint, Value::Number(n)) => Bound::Bigint(n.as_i64().ok_or_else(bad)?),
                (Cql::Int, Value::Number(n)) => Bound::Int(
                    n.as_i64()
                        .and_then(|i| i32::try_from(i).ok())
                        .ok_or_else(bad)?,
                ),
                (Cql::Boolean, Value::Bool(b)) => Bound::Boolean(*b),
                _ => return Err(bad()),
            })
        })
        .collect()
}

/// Rows grouped by partition key, each group cut into batches of at most `max` rows:
/// a batch then touches one partition (one replica set, applied atomically there).
pub fn partition_batches<'r>(
    t: &TableDef,
    rows: &'r [JsonRow],
    max: usize,
) -> Vec<Vec<&'r JsonRow>> {
    let mut by_partition: BTreeMap<Vec<String>, Vec<&JsonRow>> = BTreeMap::new();
    for r in rows {
        let key = t.partition.iter().map(|c| key_text(r.get(*c))).collect();
        by_partition.entry(key).or_default().push(r);
    }
    by_partition
        .into_values()
        .flat_map(|rows| {
            rows.chunks(max.max(1))
                .map(<[&JsonRow]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What a failed request tells about retrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The coordinator timed out waiting for replicas, or the request timed out.
    Timeout,
    /// Not enough replicas alive for the consistency level.
    Unavailable,
    /// The node is overloaded.
    Overloaded,
    /// Anything else (a bad statement, authentication): retrying will not help.
    Fatal,
}

/// Exponential backoff with full jitter: attempt n waits a uniform share of
/// `min(max, base * 2^n)`; after `attempts` tries the error is final.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
            attempts: 6,
        }
    }
}

impl Backoff {
    /// How long to wait before retrying after `attempt` (0-based) failed with `f`,
    /// given `unit` uniform in [0, 1); `None` when the error is final. Upserts are
    /// idempotent, so every write can be retried safely.
    pub fn retry_after(&self, f: Failure, attempt: u32, unit: f64) -> Option<Duration> {
        if f == Failure::Fatal || attempt + 1 >= self.attempts {
            return None;
        }
        let cap = self
            .base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max);
        Some(cap.mul_f64(unit.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{DAILY, REVENUE_ALL, TABLES, TICKETS};
    use serde_json::json;

    #[test]
    fn urls() {
        let u: CassandraUrl = "cassandra://10.0.0.1:9042,10.0.0.2/analytics"
            .parse()
            .unwrap();
        assert_eq!(u.nodes, ["10.0.0.1:9042", "10.0.0.2:9042"]);
        assert_eq!(u.keyspace, "analytics");
        let u: CassandraUrl = "cassandra://db:19042".parse().unwrap();
        assert_eq!(
            (u.nodes[0].as_str(), u.keyspace.as_str()),
            ("db:19042", "cloud_analytics")
        );
        for bad in ["cassandra:///ks", "http://x/ks", "cassandra://h/Bad-Name"] {
            assert!(bad.parse::<CassandraUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_never_show() {
        let env = |k: &str| match k {
            "PIPELINE_CASSANDRA_USERNAME" => Some("svc".to_owned()),
            "PIPELINE_CASSANDRA_PASSWORD" => Some("hunter2-very-secret".to_owned()),
            "PIPELINE_CASSANDRA_LOCAL_DC" => Some("dc1".to_owned()),
            _ => None,
        };
        let s = CassandraSettings::from_env("cassandra://h:9042/ks", env).unwrap();
        assert_eq!(s.password.as_ref().unwrap().expose(), "hunter2-very-secret");
        assert_eq!(s.local_datacenter.as_deref(), Some("dc1"));
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
        // A password without a user, or half a client certificate, is an error.
        let env = |k: &str| (k == "PIPELINE_CASSANDRA_PASSWORD").then(|| "x".to_owned());
        assert!(CassandraSettings::from_env("cassandra://h/ks", env).is_err());
        let env = |k: &str| (k == "PIPELINE_CASSANDRA_TLS_CERT").then(|| "c.pem".to_owned());
        assert!(CassandraSettings::from_env("cassandra://h/ks", env).is_err());
    }

    #[test]
    fn schema_file_and_table_definitions_agree() {
        let stmts = schema_statements(
            "ks1",
            "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        );
        assert!(stmts[0].starts_with("CREATE KEYSPACE IF NOT EXISTS ks1"));
        assert!(stmts[0].contains("SimpleStrategy"));
        assert!(stmts.iter().all(|s| !s.contains("cloud_analytics")));
        for t in TABLES {
            let create = stmts
                .iter()
                .find(|s| s.contains(&format!("ks1.{} (", t.name)))
                .unwrap_or_else(|| panic!("no CREATE TABLE for {}", t.name));
            for (c, ty) in t.columns() {
                assert!(
                    create.contains(&format!("{c} {}", ty.name())),
                    "{}: column {c} {} missing from schema.cql",
                    t.name,
                    ty.name()
                );
            }
            let pk = format!(
                "PRIMARY KEY (({}), {})",
                t.partition.join(", "),
                t.clustering.join(", ")
            );
            assert!(create.contains(&pk), "{}: {pk}", t.name);
        }
    }

    #[test]
    fn statements() {
        assert_eq!(
            insert_cql("ks", &TICKETS),
            "INSERT INTO ks.tickets_by_severity_date (severity, created_date, tickets, \
             open_tickets, sla_breached, sla_breach_rate, csat_avg, csat_responses) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        );
        let q = select_cql("ks", &DAILY, true, true);
        assert!(q.starts_with("SELECT org_id, usage_date, service, org_name"));
        assert!(q.ends_with(
            "FROM ks.daily_usage_by_org WHERE org_id = ? AND usage_date >= ? AND usage_date <= ?"
        ));
        assert!(select_cql("ks", &REVENUE_ALL, false, false).ends_with("WHERE year = ?"));
    }

    #[test]
    fn values_are_typed_by_column() {
        let row: JsonRow = serde_json::from_value(json!({
            "severity": "critical", "created_date": "2025-07-02", "tickets": 5,
            "open_tickets": 2, "sla_breached": 1, "sla_breach_rate": 0.2,
            "csat_avg": null, "csat_responses": 0
        }))
        .unwrap();
        let v = bind_values(&TICKETS, &row).unwrap();
        assert_eq!(v[0], Bound::Text("critical".into()));
        assert_eq!(
            v[1],
            Bound::Date(NaiveDate::from_ymd_opt(2025, 7, 2).unwrap())
        );
        assert_eq!(v[2], Bound::Bigint(5));
        assert_eq!(v[5], Bound::Double(0.2));
        assert_eq!(v[6], Bound::Null);
        let mut bad = row.clone();
        bad.insert("tickets".into(), json!("five"));
        assert!(bind_values(&TICKETS, &bad).is_err());
        let mut no_key = row;
        no_key.remove("severity");
        assert!(bind_values(&TICKETS, &no_key).is_err());
    }

    #[test]
    fn batches_hold_one_partition() {
        let rows: Vec<JsonRow> = (0..7)
            .map(|i| {
                serde_json::from_value(json!({
                    "org_id": if i % 2 == 0 { "a" } else { "b" },
                    "usage_date": format!("2025-07-0{}", i + 1), "service": "compute"
                }))
                .unwrap()
            })
            .collect();
        let batches = partition_batches(&DAILY, &rows, 3);
        // a: 4 rows -> 3 + 1; b: 3 rows -> 3.
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 1, 3]);
        for b in &batches {
            let org = &b[0]["org_id"];
            assert!(b.iter().all(|r| &r["org_id"] == org));
        }
    }

    #[test]
    fn backoff_grows_with_jitter_caps_and_gives_up() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            attempts: 8,
        };
        assert_eq!(
            b.retry_after(Failure::Timeout, 0, 1.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            b.retry_after(Failure::Unavailable, 2, 1.0),
            Some(Duration::from_millis(400))
        );
        // Capped at max, and the jitter spreads retries below the cap.
        assert_eq!(
            b.retry_after(Failure::Overloaded, 4, 1.0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            b.retry_after(Failure::Timeout, 4, 0.25),
            Some(Duration::from_millis(250))
        );
        // The last attempt, and errors retrying cannot fix, are final.
        assert_eq!(b.retry_after(Failure::Timeout, 7, 0.5), None);
        assert_eq!(b.retry_after(Failure::Fatal, 0, 0.5), None);
    }
}
