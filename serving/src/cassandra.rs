//! The Cassandra/ScyllaDB backend: what it sends, how it groups and retries writes,
//! and how it is configured (plain functions, tested here without a cluster), and the
//! [`CassandraStore`] that runs them through the `scylla` driver (tested against a
//! live cluster when `CASSANDRA_URI` is set).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{Cell, JsonRow, Row, TableDef};

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

    fn from_str(full: &str) -> Result<Self> {
        // Every message shows the URL without what could be a password.
        let url = eventlog::redact_url(full);
        let rest = full
            .strip_prefix("cassandra://")
            .with_context(|| format!("{url:?}: expected cassandra://host:port/keyspace"))?;
        let (hosts, keyspace) = rest.split_once('/').unwrap_or((rest, DEFAULT_KEYSPACE));
        if hosts.contains('@') {
            bail!(
                "{url:?}: credentials in the URL are not accepted; set \
                 PIPELINE_CASSANDRA_USERNAME and PIPELINE_CASSANDRA_PASSWORD"
            );
        }
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

/// A password that never shows in logs or `Debug` output (the config's own type).
pub use eventlog::config::Secret;

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
    /// The TTL of every real-time row (`speed_daily_usage_by_org`), in seconds.
    pub speed_ttl_seconds: u32,
    pub backoff: Backoff,
}

/// How long a real-time row lives after its last upsert, unless configured.
pub const DEFAULT_SPEED_TTL: &str = "30d";

impl CassandraSettings {
    /// From the serving URL, the config file's `[serving]` section, and the
    /// environment, which wins: `PIPELINE_CASSANDRA_` + `LOCAL_DC`, `USERNAME`,
    /// `PASSWORD` (only there: never in a file), `TLS_CA`, `TLS_CERT`, `TLS_KEY`,
    /// `REPLICATION`.
    pub fn from_config(
        url: &str,
        section: &eventlog::config::ServingSection,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let get = |k: &str| var(&format!("PIPELINE_CASSANDRA_{k}")).filter(|v| !v.is_empty());
        let path =
            |k: &str, from_file: &Option<PathBuf>| get(k).map(PathBuf::from).or(from_file.clone());
        let s = CassandraSettings {
            url: url.parse()?,
            local_datacenter: get("LOCAL_DC").or(section.local_dc.clone()),
            username: get("USERNAME").or(section.username.clone()),
            password: get("PASSWORD").map(Secret::new),
            tls_ca: path("TLS_CA", &section.tls_ca),
            tls_cert: path("TLS_CERT", &section.tls_cert),
            tls_key: path("TLS_KEY", &section.tls_key),
            replication: get("REPLICATION")
                .or(section.replication.clone())
                .unwrap_or_else(|| DEFAULT_REPLICATION.into()),
            concurrency: section.concurrency.unwrap_or(16).max(1),
            batch_rows: section.batch_rows.unwrap_or(100).max(1),
            speed_ttl_seconds: {
                let text = section.speed_ttl.as_deref().unwrap_or(DEFAULT_SPEED_TTL);
                eventlog::parse_duration(text)
                    .and_then(|d| u32::try_from(d.as_secs()).ok())
                    .filter(|s| *s > 0)
                    .with_context(|| {
                        format!("serving.speed_ttl {text:?}: expected a duration like 30d or 12h")
                    })?
            },
            backoff: Backoff::default(),
        };
        if s.password.is_some() && s.username.is_none() {
            bail!(
                "PIPELINE_CASSANDRA_PASSWORD is set but no username is (PIPELINE_CASSANDRA_USERNAME or serving.username)"
            );
        }
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            bail!("a TLS client certificate and its key go together (tls_cert, tls_key)");
        }
        Ok(s)
    }

    /// [`Self::from_config`] with no config file section.
    pub fn from_env(url: &str, var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        Self::from_config(url, &Default::default(), var)
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

/// The prepared upsert of a table's rows (an INSERT is an upsert in CQL), with a TTL
/// in seconds for rows that expire.
pub fn insert_cql(keyspace: &str, t: &TableDef, ttl_seconds: Option<u32>) -> String {
    let cols: Vec<&str> = t.columns().map(|(c, _)| *c).collect();
    let marks = vec!["?"; cols.len()].join(", ");
    let ttl = ttl_seconds.map_or(String::new(), |s| format!(" USING TTL {s}"));
    format!(
        "INSERT INTO {keyspace}.{} ({}) VALUES ({marks}){ttl}",
        t.name,
        cols.join(", ")
    )
}

/// An unprepared statement marked idempotent: every statement this backend sends is
/// (upserts of whole rows by key, reads, `IF NOT EXISTS` DDL), so the driver's retry
/// and speculative-execution policies may send it again.
pub fn idempotent(cql: impl Into<String>) -> scylla::statement::Statement {
    let mut s = scylla::statement::Statement::new(cql);
    s.set_is_idempotent(true);
    s
}

/// An unlogged batch of `n` executions of one upsert, marked idempotent.
pub fn upsert_batch(
    statement: impl Into<scylla::statement::batch::BatchStatement> + Clone,
    n: usize,
) -> scylla::statement::batch::Batch {
    use scylla::statement::batch::{Batch, BatchType};
    let mut b = Batch::new(BatchType::Unlogged);
    for _ in 0..n {
        b.append_statement(statement.clone());
    }
    b.set_is_idempotent(true);
    b
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

/// Rows grouped by partition key, each group cut into batches of at most `max` rows:
/// a batch then touches one partition (one replica set, applied atomically there).
pub fn partition_batches<'r>(t: &TableDef, rows: &'r [Row], max: usize) -> Vec<Vec<&'r Row>> {
    let mut by_partition: BTreeMap<Vec<String>, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        let key = r[..t.partition.len().min(r.len())]
            .iter()
            .map(Cell::key_text)
            .collect();
        by_partition.entry(key).or_default().push(r);
    }
    by_partition
        .into_values()
        .flat_map(|rows| {
            rows.chunks(max.max(1))
                .map(<[&Row]>::to_vec)
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

// ---- the session ----------------------------------------------------------------

/// A cell as the driver sends it (`None` is null).
fn cql_value(c: &Cell) -> Option<scylla::value::CqlValue> {
    use scylla::value::{CqlDate, CqlValue};
    Some(match c {
        Cell::Null => return None,
        Cell::Text(s) => CqlValue::Text(s.clone()),
        Cell::Date(days) => CqlValue::Date(CqlDate((i64::from(*days) + (1i64 << 31)) as u32)),
        Cell::Double(v) => CqlValue::Double(*v),
        Cell::Bigint(v) => CqlValue::BigInt(*v),
        Cell::Int(v) => CqlValue::Int(*v),
        Cell::Boolean(v) => CqlValue::Boolean(*v),
    })
}

/// A row's values as the driver binds them, after checking the row fits the table
/// and has every key.
fn bind_row(t: &TableDef, row: &[Cell]) -> Result<Vec<Option<scylla::value::CqlValue>>> {
    let columns = t.keys.len() + t.values.len();
    if row.len() != columns {
        bail!(
            "{}: a row of {} cells for {columns} columns",
            t.name,
            row.len()
        );
    }
    if let Some(i) = row[..t.keys.len()].iter().position(|c| *c == Cell::Null) {
        bail!("{}: key column {} is null", t.name, t.keys[i].0);
    }
    Ok(row.iter().map(cql_value).collect())
}

/// A value read back, as the JSON the queries work with (dates as `YYYY-MM-DD`).
fn json_value(v: Option<scylla::value::CqlValue>) -> Value {
    use scylla::value::CqlValue;
    match v {
        None => Value::Null,
        Some(CqlValue::Text(s) | CqlValue::Ascii(s)) => Value::from(s),
        Some(CqlValue::Double(d)) => Value::from(d),
        Some(CqlValue::BigInt(i)) => Value::from(i),
        Some(CqlValue::Int(i)) => Value::from(i),
        Some(CqlValue::Boolean(b)) => Value::from(b),
        Some(CqlValue::Date(d)) => {
            let days = (i64::from(d.0) - (1i64 << 31)) as i32;
            schemas::time::days_to_date(days).map_or(Value::Null, |d| Value::from(d.to_string()))
        }
        Some(other) => Value::from(format!("{other:?}")),
    }
}

/// How a driver error bears on retrying, from its type (never its text). The driver
/// retries what its retry policy allows on its own, for idempotent statements; this
/// outer policy adds backoff for the cluster being briefly unable to answer.
pub trait Retryable {
    fn failure(&self) -> Failure;
}

/// What the database answered: timeouts, unavailability, overload and bootstrapping
/// pass; a bad statement, bad credentials, missing rights or anything else do not.
pub fn db_failure(e: &scylla::errors::DbError) -> Failure {
    use scylla::errors::DbError;
    match e {
        DbError::ReadTimeout { .. } | DbError::WriteTimeout { .. } => Failure::Timeout,
        DbError::Unavailable { .. } | DbError::IsBootstrapping => Failure::Unavailable,
        DbError::Overloaded | DbError::RateLimitReached { .. } => Failure::Overloaded,
        _ => Failure::Fatal,
    }
}

fn attempt_failure(e: &scylla::errors::RequestAttemptError) -> Failure {
    use scylla::errors::RequestAttemptError as A;
    match e {
        A::DbError(db, _) => db_failure(db),
        // The connection broke or is saturated: another try may find another.
        A::BrokenConnectionError(_) | A::UnableToAllocStreamId => Failure::Unavailable,
        _ => Failure::Fatal,
    }
}

impl Retryable for scylla::errors::ExecutionError {
    fn failure(&self) -> Failure {
        use scylla::errors::ExecutionError as E;
        match self {
            E::LastAttemptError(e) => attempt_failure(e),
            E::RequestTimeout(_) | E::SchemaAgreementError(_) => Failure::Timeout,
            E::ConnectionPoolError(_) => Failure::Unavailable,
            E::PrepareError(e) => e.failure(),
            _ => Failure::Fatal,
        }
    }
}

impl Retryable for scylla::errors::PrepareError {
    fn failure(&self) -> Failure {
        use scylla::errors::PrepareError as P;
        match self {
            P::ConnectionPoolError(_) => Failure::Unavailable,
            P::AllAttemptsFailed { first_attempt } => attempt_failure(first_attempt),
            _ => Failure::Fatal,
        }
    }
}

/// A cheap uniform number in [0, 1) for jitter.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The TLS context of the connection: `None` without a CA or a client certificate.
/// With a CA, the cluster's certificates must chain to it (and to nothing else);
/// with a client certificate and key, the client proves itself with them (mutual
/// TLS, as a secure connect bundle provides). Every file problem is one line naming
/// the file.
pub fn tls_context(
    settings: &CassandraSettings,
) -> Result<Option<scylla::client::session::OpenSsl010Config>> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    use openssl::x509::X509;
    use openssl::x509::store::X509StoreBuilder;
    if settings.tls_ca.is_none() && settings.tls_cert.is_none() {
        return Ok(None);
    }
    let mut b = SslConnector::builder(SslMethod::tls_client()).context("starting TLS (OpenSSL)")?;
    b.set_verify(SslVerifyMode::PEER);
    if let Some(ca) = &settings.tls_ca {
        let pem = std::fs::read(ca).with_context(|| format!("TLS CA {}", ca.display()))?;
        let certs = X509::stack_from_pem(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .with_context(|| format!("TLS CA {}: no PEM certificate in it", ca.display()))?;
        let mut store = X509StoreBuilder::new().context("starting TLS (OpenSSL)")?;
        for c in certs {
            store
                .add_cert(c)
                .with_context(|| format!("TLS CA {}", ca.display()))?;
        }
        b.set_cert_store(store.build());
    }
    if let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) {
        b.set_certificate_chain_file(cert)
            .map_err(|e| anyhow::anyhow!("TLS client certificate {}: {e}", cert.display()))?;
        let pem =
            std::fs::read(key).with_context(|| format!("TLS client key {}", key.display()))?;
        let pkey = openssl::pkey::PKey::private_key_from_pem(&pem).map_err(|_| {
            anyhow::anyhow!("TLS client key {}: not a PEM private key", key.display())
        })?;
        b.set_private_key(&pkey)
            .and_then(|()| b.check_private_key())
            .map_err(|_| {
                anyhow::anyhow!(
                    "TLS client key {} does not belong to the certificate {}",
                    key.display(),
                    cert.display()
                )
            })?;
    }
    Ok(Some(scylla::client::session::OpenSsl010Config::new(b)))
}

/// How every request runs: to the local datacenter's replicas first (token-aware)
/// when one is configured; the driver's default retry policy, which retries an
/// idempotent statement on timeouts and on another node when one is unavailable; and
/// speculative execution: a request still unanswered after 100 ms goes to the next
/// replica too (at most twice), the first answer wins. Only idempotent statements are
/// retried or sent twice, and every statement here is (see [`idempotent`]).
pub fn execution_profile(
    settings: &CassandraSettings,
) -> scylla::client::execution_profile::ExecutionProfile {
    use scylla::policies::speculative_execution::SimpleSpeculativeExecutionPolicy;
    let mut policy = scylla::policies::load_balancing::DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &settings.local_datacenter {
        policy = policy.prefer_datacenter(dc.clone());
    }
    scylla::client::execution_profile::ExecutionProfile::builder()
        .load_balancing_policy(policy.build())
        .speculative_execution_policy(Some(std::sync::Arc::new(
            SimpleSpeculativeExecutionPolicy {
                max_retry_count: 2,
                retry_interval: Duration::from_millis(100),
            },
        )))
        .build()
}

/// The serving store on Cassandra/ScyllaDB.
pub struct CassandraStore {
    rt: tokio::runtime::Runtime,
    session: scylla::client::session::Session,
    settings: CassandraSettings,
}

impl CassandraStore {
    /// Connects, and creates the keyspace and tables if they do not exist.
    pub fn connect(settings: CassandraSettings) -> Result<CassandraStore> {
        let tls = tls_context(&settings)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .enable_io()
            .build()
            .context("starting the Cassandra client runtime")?;
        let nodes = settings.url.nodes.join(",");
        let session = rt.block_on(async {
            let mut b = scylla::client::session_builder::SessionBuilder::new()
                .known_nodes(&settings.url.nodes)
                .tls_context(tls);
            if let (Some(u), Some(p)) = (&settings.username, &settings.password) {
                b = b.user(u.clone(), p.expose());
            }
            b = b.default_execution_profile_handle(execution_profile(&settings).into_handle());
            b.build().await
        });
        let session = session.with_context(|| format!("connecting to Cassandra at {nodes}"))?;
        let store = CassandraStore {
            rt,
            session,
            settings,
        };
        for stmt in schema_statements(&store.settings.url.keyspace, &store.settings.replication) {
            store
                .with_retries(|| async {
                    store
                        .session
                        .query_unpaged(idempotent(stmt.clone()), &[])
                        .await
                        .map(|_| ())
                })
                .with_context(|| format!("creating the schema: {stmt}"))?;
        }
        Ok(store)
    }

    /// Runs `op` until it succeeds, retrying as [`Backoff`] says.
    fn with_retries<F, Fut, E>(&self, op: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(), E>>,
        E: Retryable + std::error::Error + Send + Sync + 'static,
    {
        self.rt.block_on(retrying(&self.settings.backoff, op))
    }
}

async fn retrying<F, Fut, E>(backoff: &Backoff, op: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), E>>,
    E: Retryable + std::error::Error + Send + Sync + 'static,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Ok(()) => return Ok(()),
            Err(e) => match backoff.retry_after(e.failure(), attempt, jitter()) {
                Some(wait) => {
                    tracing::warn!(attempt, error = %e, ?wait, "Cassandra request failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                None => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "Cassandra request failed after {} attempt(s)",
                        attempt + 1
                    )));
                }
            },
        }
    }
}

impl crate::ServingStore for CassandraStore {
    /// Upserts every row, one batch per partition chunk, `concurrency` batches in
    /// flight. Rows are never deleted: every served mart only gains keys as the
    /// history grows, so an upsert of the new marts is their replacement. Real-time
    /// rows carry the configured TTL.
    fn replace_table(&self, table: &TableDef, rows: &[Row]) -> Result<()> {
        use futures::stream::{self, TryStreamExt};
        let ks = &self.settings.url.keyspace;
        let session = &self.session;
        let backoff = self.settings.backoff;
        let ttl =
            (table.name == crate::SPEED_DAILY.name).then_some(self.settings.speed_ttl_seconds);
        self.rt.block_on(async {
            let insert = session
                .prepare(idempotent(insert_cql(ks, table, ttl)))
                .await
                .with_context(|| format!("preparing the upsert of {}", table.name))?;
            let batches = partition_batches(table, rows, self.settings.batch_rows);
            stream::iter(batches.into_iter().map(Ok::<_, anyhow::Error>))
                .map_ok(|batch| {
                    let insert = insert.clone();
                    async move {
                        let values: Vec<Vec<Option<scylla::value::CqlValue>>> = batch
                            .iter()
                            .map(|r| bind_row(table, r))
                            .collect::<Result<_>>()?;
                        let b = upsert_batch(insert.clone(), values.len());
                        retrying(&backoff, || async {
                            session.batch(&b, &values).await.map(|_| ())
                        })
                        .await
                        .with_context(|| format!("upserting into {}", table.name))
                    }
                })
                .try_buffer_unordered(self.settings.concurrency.max(1))
                .try_collect::<Vec<()>>()
                .await?;
            Ok(())
        })
    }

    fn upsert(&self, table: &TableDef, rows: &[Row]) -> Result<()> {
        self.replace_table(table, rows)
    }

    fn scan(
        &self,
        table: &TableDef,
        partition: &[&str],
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<JsonRow>> {
        let ks = &self.settings.url.keyspace;
        let cql = select_cql(ks, table, from.is_some(), to.is_some());
        let values = scan_values(table, partition, from, to)?;
        self.rt
            .block_on(async {
                let prepared = self.session.prepare(idempotent(cql.clone())).await?;
                let result = self.session.execute_unpaged(&prepared, &values).await?;
                let rows = result.into_rows_result()?;
                let names: Vec<&str> = table.columns().map(|(c, _)| *c).collect();
                let mut out = Vec::new();
                for row in rows.rows::<scylla::value::Row>()? {
                    let row = row?;
                    out.push(
                        names
                            .iter()
                            .zip(row.columns)
                            .map(|(n, v)| ((*n).to_owned(), json_value(v)))
                            .collect(),
                    );
                }
                Ok::<_, anyhow::Error>(out)
            })
            .with_context(|| format!("reading {}", table.name))
    }

    fn put_meta(&self, name: &str, value: &str) -> Result<()> {
        let ks = &self.settings.url.keyspace;
        let cql = format!("INSERT INTO {ks}.serving_meta (name, value) VALUES (?, ?)");
        self.with_retries(|| async {
            self.session
                .query_unpaged(idempotent(cql.clone()), (name, value))
                .await
                .map(|_| ())
        })
    }

    fn meta(&self, name: &str) -> Result<Option<String>> {
        let ks = &self.settings.url.keyspace;
        let cql = format!("SELECT value FROM {ks}.serving_meta WHERE name = ?");
        self.rt.block_on(async {
            let r = self.session.query_unpaged(idempotent(cql), (name,)).await?;
            let rows = r.into_rows_result()?;
            let v = rows.maybe_first_row::<(Option<String>,)>()?;
            Ok(v.and_then(|(v,)| v))
        })
    }
}

/// The values a scan binds: the partition key, then the range's ends, each given as
/// text and typed as its column.
fn scan_values(
    table: &TableDef,
    partition: &[&str],
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Vec<Option<scylla::value::CqlValue>>> {
    let mut values = Vec::new();
    if partition.len() != table.partition.len() {
        bail!("{}: {} partition key values", table.name, partition.len());
    }
    for ((c, ty), v) in table.keys.iter().zip(partition) {
        values.push(cql_value(
            &Cell::from_text(*ty, v).with_context(|| format!("{}.{c}", table.name))?,
        ));
    }
    let (c, ty) = table
        .keys
        .get(table.partition.len())
        .context("a range on a table without clustering columns")?;
    for bound in [from, to].into_iter().flatten() {
        values.push(cql_value(
            &Cell::from_text(*ty, bound).with_context(|| format!("{}.{c}", table.name))?,
        ));
    }
    Ok(values)
}

#[cfg(test)]
#[path = "cassandra_tls_tests.rs"]
mod tls_tests;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{DAILY, REVENUE_ALL, TABLES, TICKETS};
    use chrono::NaiveDate;
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
    fn the_environment_overrides_the_config_file() {
        let section = eventlog::PipelineConfig::parse(
            "[serving]\nlocal_dc = \"dc-file\"\nusername = \"file-user\"\nconcurrency = 4\n",
        )
        .unwrap()
        .serving;
        let env = |k: &str| (k == "PIPELINE_CASSANDRA_LOCAL_DC").then(|| "dc-env".to_owned());
        let s = CassandraSettings::from_config("cassandra://h/ks", &section, env).unwrap();
        assert_eq!(s.local_datacenter.as_deref(), Some("dc-env"));
        assert_eq!(s.username.as_deref(), Some("file-user"));
        assert_eq!(s.concurrency, 4);
        assert_eq!(s.batch_rows, 100);
        // A password has no place in the file.
        assert!(eventlog::PipelineConfig::parse("[serving]\npassword = \"x\"\n").is_err());
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
            insert_cql("ks", &TICKETS, None),
            "INSERT INTO ks.tickets_by_severity_date (severity, created_date, tickets, \
             open_tickets, sla_breached, sla_breach_rate, csat_avg, csat_responses) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        );
        assert!(
            insert_cql("ks", &crate::SPEED_DAILY, Some(86_400))
                .ends_with(") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL 86400")
        );
        let q = select_cql("ks", &DAILY, true, true);
        assert!(q.starts_with("SELECT org_id, usage_date, service, org_name"));
        assert!(q.ends_with(
            "FROM ks.daily_usage_by_org WHERE org_id = ? AND usage_date >= ? AND usage_date <= ?"
        ));
        assert!(
            select_cql("ks", &REVENUE_ALL, false, false)
                .ends_with("FROM ks.revenue_by_month_bucket WHERE month = ? AND bucket = ?")
        );
    }

    #[test]
    fn rows_bind_typed_by_column() {
        use scylla::value::CqlValue;
        let row = crate::row::row_from_json(&TICKETS, &crate::row::ticket_json()).unwrap();
        let v = bind_row(&TICKETS, &row).unwrap();
        assert_eq!(v[0], Some(CqlValue::Text("critical".into())));
        assert_eq!(json_value(v[1].clone()), json!("2025-07-02"));
        assert_eq!(v[2], Some(CqlValue::BigInt(5)));
        assert_eq!(v[5], Some(CqlValue::Double(0.2)));
        assert_eq!(v[6], None);
        // A null key, or a row of another table's shape, is refused.
        let mut no_key = row.clone();
        no_key[0] = Cell::Null;
        assert!(bind_row(&TICKETS, &no_key).is_err());
        assert!(bind_row(&TICKETS, &row[..3]).is_err());
        // A scan binds the partition and the range typed as their columns.
        let v = scan_values(&REVENUE_ALL, &["2025-07-01", "3"], Some("org_a"), None).unwrap();
        assert_eq!(json_value(v[0].clone()), json!("2025-07-01"));
        assert_eq!(v[1], Some(CqlValue::Int(3)));
        assert_eq!(v[2], Some(CqlValue::Text("org_a".into())));
        assert!(scan_values(&REVENUE_ALL, &["2025-07-01", "x"], None, None).is_err());
        assert!(scan_values(&REVENUE_ALL, &["2025-07-01"], None, None).is_err());
    }

    #[test]
    fn batches_hold_one_partition() {
        let rows: Vec<Row> = (0..7)
            .map(|i| {
                let row = serde_json::from_value(json!({
                    "org_id": if i % 2 == 0 { "a" } else { "b" },
                    "usage_date": format!("2025-07-0{}", i + 1), "service": "compute"
                }))
                .unwrap();
                crate::row::row_from_json(&DAILY, &row).unwrap()
            })
            .collect();
        let batches = partition_batches(&DAILY, &rows, 3);
        // a: 4 rows -> 3 + 1; b: 3 rows -> 3.
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 1, 3]);
        for b in &batches {
            let org = &b[0][0];
            assert!(b.iter().all(|r| &r[0] == org));
        }
    }

    #[test]
    fn dates_cross_the_driver_unchanged() {
        let d = NaiveDate::from_ymd_opt(2025, 7, 2).unwrap();
        let v = cql_value(&Cell::Date(schemas::time::date_to_days(d)));
        assert_eq!(json_value(v), json!("2025-07-02"));
        assert_eq!(json_value(cql_value(&Cell::Null)), Value::Null);
        assert_eq!(json_value(cql_value(&Cell::Bigint(7))), json!(7));
        assert!((0.0..1.0).contains(&jitter()));
    }

    #[test]
    fn the_drivers_typed_errors_decide_what_is_retried() {
        use scylla::errors::{
            BadQuery, DbError, ExecutionError as E, OperationType, PrepareError,
            RequestAttemptError as A, WriteType,
        };
        use scylla::statement::Consistency;
        let db = |e: DbError| E::LastAttemptError(A::DbError(e, "message".into()));
        let cases = [
            (
                db(DbError::WriteTimeout {
                    consistency: Consistency::LocalQuorum,
                    received: 1,
                    required: 2,
                    write_type: WriteType::UnloggedBatch,
                }),
                Failure::Timeout,
            ),
            (
                db(DbError::ReadTimeout {
                    consistency: Consistency::LocalQuorum,
                    received: 1,
                    required: 2,
                    data_present: false,
                }),
                Failure::Timeout,
            ),
            (E::RequestTimeout(Duration::from_secs(12)), Failure::Timeout),
            (
                db(DbError::Unavailable {
                    consistency: Consistency::LocalQuorum,
                    required: 2,
                    alive: 1,
                }),
                Failure::Unavailable,
            ),
            (db(DbError::IsBootstrapping), Failure::Unavailable),
            (db(DbError::Overloaded), Failure::Overloaded),
            (
                db(DbError::RateLimitReached {
                    op_type: OperationType::Write,
                    rejected_by_coordinator: true,
                }),
                Failure::Overloaded,
            ),
            (db(DbError::SyntaxError), Failure::Fatal),
            (db(DbError::Invalid), Failure::Fatal),
            (db(DbError::AuthenticationError), Failure::Fatal),
            (db(DbError::Unauthorized), Failure::Fatal),
            (db(DbError::ConfigError), Failure::Fatal),
            (db(DbError::ServerError), Failure::Fatal),
            (
                E::BadQuery(BadQuery::PartitionKeyExtraction),
                Failure::Fatal,
            ),
            (E::EmptyPlan, Failure::Fatal),
        ];
        for (error, want) in cases {
            assert_eq!(error.failure(), want, "{error}");
        }
        // A message that merely mentions a timeout is not one.
        let worded = db(DbError::Invalid);
        assert!(matches!(&worded, E::LastAttemptError(A::DbError(_, m)) if m == "message"));
        let invalid_timeout = E::LastAttemptError(A::DbError(
            DbError::Invalid,
            "the table option default_time_to_live timed out".into(),
        ));
        assert_eq!(invalid_timeout.failure(), Failure::Fatal);
        // Preparing: the first attempt's error decides.
        let prepare = PrepareError::AllAttemptsFailed {
            first_attempt: A::DbError(DbError::Overloaded, String::new()),
        };
        assert_eq!(prepare.failure(), Failure::Overloaded);
        let prepare = PrepareError::AllAttemptsFailed {
            first_attempt: A::DbError(DbError::SyntaxError, String::new()),
        };
        assert_eq!(E::PrepareError(prepare).failure(), Failure::Fatal);
    }

    #[test]
    fn every_statement_is_idempotent() {
        assert!(idempotent("SELECT 1").get_is_idempotent());
        let batch = upsert_batch(idempotent(insert_cql("ks", &TICKETS, None)), 3);
        assert!(batch.get_is_idempotent());
        assert_eq!(batch.statements.len(), 3);
        // Retries and speculative executions apply to them through the profile.
        let s = CassandraSettings::from_env("cassandra://h/ks", |_| None).unwrap();
        let profile = execution_profile(&s);
        assert!(format!("{profile:?}").contains("SimpleSpeculativeExecutionPolicy"));
    }

    #[test]
    fn real_time_rows_expire_after_the_configured_ttl() {
        let s = CassandraSettings::from_env("cassandra://h/ks", |_| None).unwrap();
        assert_eq!(s.speed_ttl_seconds, 30 * 86_400);
        let section = eventlog::PipelineConfig::parse("[serving]\nspeed_ttl = \"12h\"\n")
            .unwrap()
            .serving;
        let s = CassandraSettings::from_config("cassandra://h/ks", &section, |_| None).unwrap();
        assert_eq!(s.speed_ttl_seconds, 12 * 3600);
        let section = eventlog::PipelineConfig::parse("[serving]\nspeed_ttl = \"soon\"\n")
            .unwrap()
            .serving;
        let e = CassandraSettings::from_config("cassandra://h/ks", &section, |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("speed_ttl"), "{e}");
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
