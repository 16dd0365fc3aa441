//! The pipeline's one config file (`config/pipeline.toml` by default) and its
//! environment overrides. Every binary reads it the same way, so it lives with the
//! log, which every binary opens.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, FsyncPolicy, KafkaConfig, LogConfig, Result};

pub const DEFAULT_CONFIG_PATH: &str = "config/pipeline.toml";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    pub pipeline: PipelineSection,
    pub log: LogSection,
    pub producer: ProducerSection,
    pub processor: ProcessorSection,
    pub compactor: CompactorSection,
    pub serving: ServingSection,
    pub alerts: AlertsSection,
}

/// `[alerts]`: where the cost anomalies a publish finds new are announced.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsSection {
    /// An `http://` or `https://` URL that gets a JSON POST of the new anomalies
    /// (`PIPELINE_ALERTS_WEBHOOK_URL` overrides it). Webhook URLs often carry a secret
    /// in their path: it is never logged.
    pub webhook_url: Option<Secret>,
    /// Anomalies per POST (default 100).
    pub batch: usize,
    /// Attempts per POST before the rest waits for the next publish (default 4).
    pub attempts: u32,
    /// How long one POST may take, in milliseconds (default 5000).
    pub timeout_ms: u64,
}

impl Default for AlertsSection {
    fn default() -> Self {
        AlertsSection {
            webhook_url: None,
            batch: 100,
            attempts: 4,
            timeout_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// Root of the embedded log, the processor state, the lake and the embedded
    /// serving store. Env: `PIPELINE_DATA_DIR`.
    pub data_dir: PathBuf,
    /// Env: `PIPELINE_LOG_URL`; default `embedded:<data_dir>/log`.
    pub log_url: Option<String>,
    /// Env: `PIPELINE_SERVING_URL`; default `embedded:<data_dir>/serving`.
    pub serving_url: Option<String>,
}

impl Default for PipelineSection {
    fn default() -> Self {
        PipelineSection {
            data_dir: PathBuf::from("./data"),
            log_url: None,
            serving_url: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `always`, `never` or an interval (`100ms`). Env: `PIPELINE_LOG_FSYNC`.
    pub fsync: String,
    pub segment_bytes: u64,
    pub index_interval_bytes: u64,
    /// Partitions of `raw.usage_events` and the derived event topics.
    pub event_partitions: u32,
    /// Replication factor of the topics the Kafka backend creates.
    pub kafka_replication: i32,
    /// Extra librdkafka properties for the Kafka backend (`[log.kafka]`), e.g.
    /// `"security.protocol" = "SASL_SSL"`. Env: `PIPELINE_KAFKA_<NAME>` with the dots
    /// written as underscores (`PIPELINE_KAFKA_SASL_PASSWORD` sets `sasl.password`),
    /// which is where a password belongs.
    pub kafka: KafkaProperties,
}

/// librdkafka properties by name. `Debug` shows the names only: values may be
/// passwords.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct KafkaProperties(pub BTreeMap<String, String>);

impl std::fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Default for LogSection {
    fn default() -> Self {
        let d = LogConfig::default();
        LogSection {
            fsync: "100ms".into(),
            segment_bytes: d.segment_bytes,
            index_interval_bytes: d.index_interval_bytes,
            event_partitions: 4,
            kafka_replication: 1,
            kafka: KafkaProperties::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerSection {
    /// Records per appended batch (per topic partition).
    pub batch_records: usize,
    /// Entries of the event-time sort kept in memory before a sorted run spills to disk.
    pub sort_chunk_entries: usize,
    /// How often `--follow` looks for new landing files, in milliseconds.
    pub follow_poll_ms: u64,
}

impl Default for ProducerSection {
    fn default() -> Self {
        ProducerSection {
            batch_records: 2000,
            sort_chunk_entries: 4_000_000,
            follow_poll_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorSection {
    /// Watermark = highest event time seen minus this many seconds.
    pub lateness_seconds: u64,
    /// How long, in event time, an event id is remembered for dedup.
    pub dedup_horizon_days: u64,
    pub poll_records: usize,
    /// A commit every this many input records...
    pub commit_records: usize,
    /// ...or this many milliseconds, whichever comes first...
    pub commit_interval_ms: u64,
    /// ...or, while the input is behind (a step read a whole poll's worth of records),
    /// this many.
    pub commit_interval_behind_ms: u64,
    /// The Prometheus endpoint (loopback unless configured otherwise).
    pub metrics_addr: String,
    /// Processing threads, each owning a share of the event partitions with its own
    /// state (`--threads`, env `PIPELINE_PROCESSOR_THREADS`).
    pub threads: u32,
    /// Bytes of each output partition's newest data the processor keeps in the
    /// page cache once fsynced ([`LogConfig::cache_behind`]); 0 leaves it all to
    /// the kernel. Embedded log only.
    pub output_cache_bytes: u64,
}

impl Default for ProcessorSection {
    fn default() -> Self {
        ProcessorSection {
            lateness_seconds: 600,
            dedup_horizon_days: 90,
            poll_records: 5_000,
            commit_records: 50_000,
            commit_interval_ms: 10,
            commit_interval_behind_ms: 200,
            metrics_addr: "127.0.0.1:9101".into(),
            // One per event partition (see config/pipeline.toml).
            threads: 4,
            output_cache_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactorSection {
    /// Where the lake lives; default `<data_dir>/lake`.
    pub lake_dir: Option<PathBuf>,
    /// `--every` when no `--once` is given, e.g. `60s` or `5m`.
    pub every: String,
    /// Rows buffered across all partition directories before they are written out.
    pub flush_rows: usize,
    /// A partition directory holding more files than this is merged into one.
    pub max_files_per_partition: usize,
    /// `cost_spike`: cost > factor x p99 of the service's costs.
    pub spike_factor: f64,
    /// `cost_anomaly_mart` thresholds: |z| > z, |mad_score| > mad, x > pctl x p99.
    pub z_threshold: f64,
    pub mad_threshold: f64,
    pub pctl_factor: f64,
}

impl Default for CompactorSection {
    fn default() -> Self {
        CompactorSection {
            lake_dir: None,
            every: "60s".into(),
            flush_rows: 1_000_000,
            max_files_per_partition: 4,
            spike_factor: 1.5,
            z_threshold: 3.0,
            mad_threshold: 3.0,
            pctl_factor: 1.5,
        }
    }
}

/// Settings of the Cassandra/ScyllaDB serving backend (the embedded store needs none).
/// Each may be overridden by `PIPELINE_CASSANDRA_<NAME>` in the environment, which is
/// where the password belongs.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ServingSection {
    pub local_dc: Option<String>,
    pub username: Option<String>,
    /// A CQL replication map, e.g. `{'class': 'NetworkTopologyStrategy', 'dc1': 3}`.
    pub replication: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Batches in flight at once (default 16).
    pub concurrency: Option<usize>,
    /// Rows per batch, each batch one partition (default 100).
    pub batch_rows: Option<usize>,
    /// The bearer token the dashboard server requires when it listens anywhere but
    /// on loopback (`PIPELINE_DASHBOARD_TOKEN` overrides it; never logged).
    pub dashboard_token: Option<Secret>,
    /// How long a real-time row (`speed_daily_usage_by_org`) lives on Cassandra after
    /// its last upsert, e.g. `30d` (the default): longer than the batch path ever
    /// lags, after which batch rows answer for its day.
    pub speed_ttl: Option<String>,
}

/// A secret from the config file or the environment: its `Debug` never shows it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl PipelineConfig {
    /// Reads the config file (a missing default file means defaults; a missing file
    /// named explicitly is an error), then applies the environment overrides.
    pub fn load(path: Option<&Path>) -> Result<PipelineConfig> {
        let (path, explicit) = match path {
            Some(p) => (p.to_owned(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let mut config = match std::fs::read_to_string(&path) {
            Ok(text) => PipelineConfig::parse(&text)
                .map_err(|e| Error::Config(format!("config {}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                PipelineConfig::default()
            }
            Err(e) => return Err(Error::Config(format!("config {}: {e}", path.display()))),
        };
        config.apply_env(|k| std::env::var(k).ok());
        config.apply_kafka_env(std::env::vars());
        config.log_config()?;
        Ok(config)
    }

    pub fn parse(text: &str) -> std::result::Result<PipelineConfig, String> {
        let config: PipelineConfig = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        if config.log.event_partitions == 0 {
            return Err("log.event_partitions must be at least 1".into());
        }
        if config.producer.batch_records == 0 {
            return Err("producer.batch_records must be at least 1".into());
        }
        Ok(config)
    }

    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(v) = var("PIPELINE_DATA_DIR").filter(|v| !v.is_empty()) {
            self.pipeline.data_dir = PathBuf::from(v);
        }
        if let Some(v) = var("PIPELINE_LOG_URL").filter(|v| !v.is_empty()) {
            self.pipeline.log_url = Some(v);
        }
        if let Some(v) = var("PIPELINE_SERVING_URL").filter(|v| !v.is_empty()) {
            self.pipeline.serving_url = Some(v);
        }
        if let Some(v) = var("PIPELINE_LOG_FSYNC").filter(|v| !v.is_empty()) {
            self.log.fsync = v;
        }
        if let Some(v) = var("PIPELINE_DASHBOARD_TOKEN").filter(|v| !v.is_empty()) {
            self.serving.dashboard_token = Some(Secret(v));
        }
        if let Some(v) = var("PIPELINE_ALERTS_WEBHOOK_URL").filter(|v| !v.is_empty()) {
            self.alerts.webhook_url = Some(Secret(v));
        }
    }

    /// `PIPELINE_KAFKA_SASL_PASSWORD=x` sets the librdkafka property `sasl.password`.
    pub fn apply_kafka_env(&mut self, vars: impl Iterator<Item = (String, String)>) {
        for (k, v) in vars {
            if let Some(name) = k.strip_prefix("PIPELINE_KAFKA_").filter(|n| !n.is_empty()) {
                let property = name.to_ascii_lowercase().replace('_', ".");
                self.log.kafka.0.insert(property, v);
            }
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.pipeline.data_dir
    }

    pub fn lake_dir(&self) -> PathBuf {
        self.compactor
            .lake_dir
            .clone()
            .unwrap_or_else(|| self.data_dir().join("lake"))
    }

    pub fn log_url(&self) -> String {
        self.pipeline
            .log_url
            .clone()
            .unwrap_or_else(|| format!("embedded:{}", self.data_dir().join("log").display()))
    }

    pub fn serving_url(&self) -> String {
        self.pipeline
            .serving_url
            .clone()
            .unwrap_or_else(|| format!("embedded:{}", self.data_dir().join("serving").display()))
    }

    pub fn log_config(&self) -> Result<LogConfig> {
        Ok(LogConfig {
            fsync: self.log.fsync.parse::<FsyncPolicy>()?,
            segment_bytes: self.log.segment_bytes.max(1),
            index_interval_bytes: self.log.index_interval_bytes.max(1),
            cache_behind: None,
            kafka: KafkaConfig {
                replication: self.log.kafka_replication.max(1),
                properties: self
                    .log
                    .kafka
                    .0
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
        })
    }

    /// Opens the log this config names.
    pub fn open_log(&self) -> Result<crate::AnyLog> {
        crate::open(&self.log_url(), self.log_config()?)
    }

    /// Opens the log for the processor: as [`open_log`](Self::open_log), with its
    /// writers keeping only `processor.output_cache_bytes` of each output partition
    /// in the page cache.
    pub fn open_processor_log(&self) -> Result<crate::AnyLog> {
        crate::open(&self.log_url(), self.processor_log_config()?)
    }

    /// The log settings the processor opens its log with: [`log_config`](Self::log_config)
    /// and its `output_cache_bytes` (0: none).
    pub fn processor_log_config(&self) -> Result<LogConfig> {
        let bytes = self.processor.output_cache_bytes;
        Ok(LogConfig {
            cache_behind: (bytes > 0).then_some(bytes),
            ..self.log_config()?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_env_overrides() {
        let mut c = PipelineConfig::default();
        // What listens binds to loopback unless configured otherwise.
        let metrics: std::net::SocketAddr = c.processor.metrics_addr.parse().unwrap();
        assert!(metrics.ip().is_loopback());
        assert_eq!(c.log_url(), "embedded:./data/log");
        assert_eq!(c.serving_url(), "embedded:./data/serving");
        c.apply_env(|k| match k {
            "PIPELINE_DATA_DIR" => Some("/srv/p".into()),
            "PIPELINE_LOG_FSYNC" => Some("always".into()),
            _ => None,
        });
        assert_eq!(c.log_url(), "embedded:/srv/p/log");
        assert_eq!(c.log_config().unwrap().fsync, FsyncPolicy::Always);
        c.apply_env(|k| (k == "PIPELINE_LOG_URL").then(|| "kafka://127.0.0.1:9092".into()));
        assert_eq!(c.log_url(), "kafka://127.0.0.1:9092");
    }

    #[test]
    fn file_is_strict() {
        let c = PipelineConfig::parse("[pipeline]\ndata_dir = \"/x\"\n[log]\nfsync = \"always\"\n")
            .unwrap();
        assert_eq!(c.data_dir(), Path::new("/x"));
        assert!(
            PipelineConfig::parse("[pipeline]\ndata_dri = \"/x\"\n")
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(PipelineConfig::parse("[log]\nevent_partitions = 0\n").is_err());
        assert!(PipelineConfig::parse("not toml [").is_err());
    }

    #[test]
    fn the_shipped_config_file_says_what_the_defaults_are() {
        let shipped = PipelineConfig::parse(include_str!("../../config/pipeline.toml")).unwrap();
        let d = PipelineConfig::default();
        assert_eq!(format!("{shipped:?}"), format!("{d:?}"));
    }

    #[test]
    fn only_the_processor_drops_its_output_pages_and_zero_turns_it_off() {
        let d = PipelineConfig::default();
        assert_eq!(d.log_config().unwrap().cache_behind, None);
        assert_eq!(
            d.processor_log_config().unwrap().cache_behind,
            Some(4 * 1024 * 1024)
        );
        let c = PipelineConfig::parse("[processor]\noutput_cache_bytes = 0\n").unwrap();
        assert_eq!(c.processor_log_config().unwrap().cache_behind, None);
        let c = PipelineConfig::parse("[processor]\noutput_cache_bytes = 1000\n").unwrap();
        assert_eq!(c.processor_log_config().unwrap().cache_behind, Some(1000));
    }

    #[test]
    fn kafka_properties_from_the_file_and_the_environment() {
        let mut c = PipelineConfig::parse(
            "[log]\nkafka_replication = 3\n[log.kafka]\n\"security.protocol\" = \"SASL_SSL\"\n",
        )
        .unwrap();
        c.apply_kafka_env(
            [
                (
                    "PIPELINE_KAFKA_SASL_PASSWORD".to_owned(),
                    "hunter2".to_owned(),
                ),
                ("PIPELINE_KAFKA_".to_owned(), "ignored".to_owned()),
                ("OTHER".to_owned(), "x".to_owned()),
            ]
            .into_iter(),
        );
        let k = c.log_config().unwrap().kafka;
        assert_eq!(k.replication, 3);
        assert_eq!(
            k.properties,
            [
                ("sasl.password".to_owned(), "hunter2".to_owned()),
                ("security.protocol".to_owned(), "SASL_SSL".to_owned())
            ]
        );
        assert!(!format!("{:?}", c.log_config().unwrap()).contains("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn the_dashboard_token_comes_from_the_file_or_the_environment_and_never_shows() {
        let mut c =
            PipelineConfig::parse("[serving]\ndashboard_token = \"from-file-s3cret\"\n").unwrap();
        assert_eq!(
            c.serving.dashboard_token.as_ref().map(Secret::expose),
            Some("from-file-s3cret")
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        c.apply_env(|k| (k == "PIPELINE_DASHBOARD_TOKEN").then(|| "from-env-s3cret".into()));
        assert_eq!(
            c.serving.dashboard_token.as_ref().map(Secret::expose),
            Some("from-env-s3cret")
        );
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        assert!(PipelineConfig::load(Some(Path::new("/nonexistent/pipeline.toml"))).is_err());
    }
}
