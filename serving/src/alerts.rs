//! Announcing the cost anomalies a publish finds new (SPEC section 10).
//!
//! Each anomaly of `cost_anomaly_mart` (key `org_id|usage_date|service`) is announced
//! once. A publish compares the mart with the keys announced before (kept in the
//! serving store), and writes, in the same batch as its high-water marks, the grown
//! set of announced keys and, when a webhook is configured, the new anomalies into an
//! outbox. Then it delivers the outbox: a JSON POST per batch of anomalies, retried
//! with backoff, each batch taken out of the outbox once the receiver answered 2xx.
//! A crash before the batch write announces nothing and the next publish finds the
//! same anomalies new; a crash after it leaves them in the outbox, which the next
//! publish delivers first. So no anomaly is dropped, and none is counted twice; a
//! POST is repeated only if the process dies between the receiver's answer and the
//! outbox write, which is why every anomaly carries its key as `id` and every POST an
//! `Idempotency-Key` header: a receiver that keeps the ids it has seen sees each once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::row::{Cell, Row};
use crate::{ANOMALY_ORG, ServingStore};

/// The keys of every anomaly announced so far (a JSON array).
pub const META_ANNOUNCED: &str = "anomalies_announced";
/// Anomalies announced but not yet delivered to the webhook (a JSON array).
pub const META_OUTBOX: &str = "alerts_outbox";
/// Anomalies announced, by method, since the store began (a JSON object).
pub const META_ANNOUNCED_COUNTS: &str = "anomalies_announced_by_method";

/// One anomaly as the webhook gets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// `org_id|usage_date|service`: the same for every announcement of it.
    pub id: String,
    pub org_id: String,
    pub usage_date: String,
    pub service: String,
    pub cost_usd: f64,
    pub anomaly_score: f64,
    pub methods: Vec<String>,
}

/// The anomalies of `cost_anomaly_mart`'s rows (as [`ANOMALY_ORG`] holds them).
pub fn alerts_of(rows: &[Row]) -> Result<Vec<Alert>> {
    let col = |c: &str| {
        ANOMALY_ORG
            .index(c)
            .with_context(|| format!("no column {c}"))
    };
    let (org, day, service) = (col("org_id")?, col("usage_date")?, col("service")?);
    let (cost, score, methods) = (col("cost_usd")?, col("anomaly_score")?, col("methods")?);
    let num = |c: &Cell| match c {
        Cell::Double(v) => *v,
        _ => 0.0,
    };
    rows.iter()
        .map(|r| {
            let (o, d, s) = (r[org].key_text(), r[day].key_text(), r[service].key_text());
            Ok(Alert {
                id: format!("{o}|{d}|{s}"),
                org_id: o,
                usage_date: d,
                service: s,
                cost_usd: num(&r[cost]),
                anomaly_score: num(&r[score]),
                methods: r[methods]
                    .key_text()
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

/// What a publish found and did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AlertReport {
    /// Anomalies announced by this publish (new since the last one).
    pub announced: usize,
    /// ... by method (an anomaly flagged by two methods counts in both).
    pub by_method: BTreeMap<String, u64>,
    /// Anomalies POSTed and acknowledged.
    pub delivered: usize,
    /// Anomalies left in the outbox for the next publish.
    pub pending: usize,
}

fn read_json<T: for<'de> Deserialize<'de> + Default>(
    store: &impl ServingStore,
    name: &str,
) -> Result<T> {
    Ok(match store.meta(name)? {
        Some(s) => serde_json::from_str(&s).with_context(|| format!("serving_meta {name}"))?,
        None => T::default(),
    })
}

/// The metas that announce the anomalies of `alerts` that were not announced before:
/// the grown set of announced keys, the counts by method, and (with a webhook) the
/// outbox with them added. Written by the caller with its last batch of metas.
pub fn announce(
    store: &impl ServingStore,
    alerts: &[Alert],
    webhook: bool,
) -> Result<(Vec<(&'static str, String)>, AlertReport)> {
    let mut announced: BTreeSet<String> = read_json(store, META_ANNOUNCED)?;
    let mut outbox: Vec<Alert> = read_json(store, META_OUTBOX)?;
    let mut counts: BTreeMap<String, u64> = read_json(store, META_ANNOUNCED_COUNTS)?;
    let mut report = AlertReport::default();
    for a in alerts {
        if !announced.insert(a.id.clone()) {
            continue;
        }
        report.announced += 1;
        for m in &a.methods {
            *counts.entry(m.clone()).or_default() += 1;
            *report.by_method.entry(m.clone()).or_default() += 1;
        }
        if webhook {
            outbox.push(a.clone());
        }
    }
    report.pending = outbox.len();
    let metas = vec![
        (META_ANNOUNCED, serde_json::to_string(&announced)?),
        (META_ANNOUNCED_COUNTS, serde_json::to_string(&counts)?),
        (META_OUTBOX, serde_json::to_string(&outbox)?),
    ];
    Ok((metas, report))
}

/// Delivers the outbox to the webhook, a batch at a time, each batch taken out of
/// the outbox once acknowledged; stops at the first batch that still fails after
/// its attempts (the rest waits for the next publish). Returns how many were
/// delivered and how many wait.
pub fn deliver(store: &impl ServingStore, webhook: &Webhook) -> Result<(usize, usize)> {
    let mut outbox: Vec<Alert> = read_json(store, META_OUTBOX)?;
    let mut delivered = 0;
    while !outbox.is_empty() {
        let n = webhook.batch.min(outbox.len());
        let body = serde_json::to_vec(&serde_json::json!({ "alerts": &outbox[..n] }))?;
        let key = idempotency_key(&outbox[..n]);
        match webhook.post_with_retries(&body, &key) {
            Ok(()) => {
                outbox.drain(..n);
                store.put_meta(META_OUTBOX, &serde_json::to_string(&outbox)?)?;
                delivered += n;
            }
            Err(e) => {
                tracing::warn!(
                    webhook = %webhook.shown,
                    pending = outbox.len(),
                    "anomaly alerts not delivered, kept for the next publish: {e:#}"
                );
                break;
            }
        }
    }
    Ok((delivered, outbox.len()))
}

/// The same for the same batch of anomalies: CRC32C of their ids.
fn idempotency_key(batch: &[Alert]) -> String {
    let ids: Vec<&str> = batch.iter().map(|a| a.id.as_str()).collect();
    format!(
        "{:08x}-{}",
        crc32c::crc32c(ids.join("\n").as_bytes()),
        batch.len()
    )
}

/// A webhook: an `http://` or `https://` URL (TLS through OpenSSL), POSTed JSON.
pub struct Webhook {
    tls: bool,
    host: String,
    port: u16,
    /// The path and query (which may hold a secret).
    target: String,
    /// The URL as logs show it: scheme, host and port only.
    pub shown: String,
    pub batch: usize,
    pub attempts: u32,
    pub timeout: Duration,
    /// The wait before the second attempt, doubled for each next one.
    pub backoff: Duration,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("url", &self.shown).finish()
    }
}

impl Webhook {
    /// From the config's `[alerts]`; `None` when no URL is set.
    pub fn from_config(section: &eventlog::config::AlertsSection) -> Result<Option<Webhook>> {
        let Some(url) = &section.webhook_url else {
            return Ok(None);
        };
        let mut w = Webhook::parse(url.expose())?;
        w.batch = section.batch.max(1);
        w.attempts = section.attempts.max(1);
        w.timeout = Duration::from_millis(section.timeout_ms.max(1));
        Ok(Some(w))
    }

    pub fn parse(url: &str) -> Result<Webhook> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            bail!("alerts webhook: expected an http:// or https:// URL");
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') || authority.is_empty() {
            bail!("alerts webhook: expected http(s)://host[:port]/path, without credentials");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>()
                    .map_err(|_| anyhow::anyhow!("alerts webhook: bad port {p:?}"))?,
            ),
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let target = if target.starts_with('?') {
            format!("/{target}")
        } else {
            target.to_owned()
        };
        Ok(Webhook {
            tls,
            host: host.to_owned(),
            port,
            target,
            shown: format!("{}://{authority}/…", if tls { "https" } else { "http" }),
            batch: 100,
            attempts: 4,
            timeout: Duration::from_secs(5),
            backoff: Duration::from_millis(200),
        })
    }

    /// POSTs `body`, retrying a failure (no answer, or not 2xx) with exponential
    /// backoff; the last error after every attempt.
    pub fn post_with_retries(&self, body: &[u8], key: &str) -> Result<()> {
        let mut wait = self.backoff;
        let mut attempt = 1;
        loop {
            match self.post(body, key) {
                Ok(status) if (200..300).contains(&status) => return Ok(()),
                Ok(status) if attempt >= self.attempts => {
                    bail!("{} answered {status} ({attempt} attempts)", self.shown)
                }
                Err(e) if attempt >= self.attempts => {
                    return Err(e.context(format!("{} ({attempt} attempts)", self.shown)));
                }
                _ => {}
            }
            std::thread::sleep(wait);
            wait *= 2;
            attempt += 1;
        }
    }

    /// One POST; the status code of the answer.
    pub fn post(&self, body: &[u8], key: &str) -> Result<u16> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .with_context(|| format!("resolving {}", self.shown))?
            .next()
            .with_context(|| format!("{} has no address", self.shown))?;
        let tcp = TcpStream::connect_timeout(&addr, self.timeout)
            .with_context(|| format!("connecting to {}", self.shown))?;
        tcp.set_read_timeout(Some(self.timeout))?;
        tcp.set_write_timeout(Some(self.timeout))?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nIdempotency-Key: {key}\r\nUser-Agent: usage-pipeline\r\nConnection: close\r\n\r\n",
            self.target,
            self.host,
            body.len()
        );
        let status_line = if self.tls {
            let connector = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
                .context("starting TLS (OpenSSL)")?
                .build();
            let mut s = connector
                .connect(&self.host, tcp)
                .map_err(|e| anyhow::anyhow!("TLS to {}: {e}", self.shown))?;
            exchange(&mut s, head.as_bytes(), body)
        } else {
            let mut s = tcp;
            exchange(&mut s, head.as_bytes(), body)
        }
        .with_context(|| format!("POST to {}", self.shown))?;
        status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("{} answered {status_line:?}", self.shown))
    }
}

/// Writes the request and reads the answer's status line (and drains the rest).
fn exchange<S: Read + Write>(s: &mut S, head: &[u8], body: &[u8]) -> std::io::Result<String> {
    s.write_all(head)?;
    s.write_all(body)?;
    s.flush()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut rest = Vec::new();
    let _ = r.take(1 << 20).read_to_end(&mut rest);
    Ok(line.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn webhook_urls_and_what_logs_show_of_them() {
        let w = Webhook::parse("https://hooks.example.com/services/T0/B0/s3cret?x=1").unwrap();
        assert!(w.tls);
        assert_eq!((w.host.as_str(), w.port), ("hooks.example.com", 443));
        assert_eq!(w.target, "/services/T0/B0/s3cret?x=1");
        assert_eq!(w.shown, "https://hooks.example.com/…");
        assert!(!format!("{w:?}").contains("s3cret"));
        let w = Webhook::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            (w.host.as_str(), w.port, w.target.as_str()),
            ("127.0.0.1", 9000, "/")
        );
        for bad in [
            "ftp://x/",
            "http://",
            "https://user:pw@host/x",
            "http://h:port/",
        ] {
            let e = Webhook::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("pw"), "{e}");
        }
    }

    #[test]
    fn idempotency_keys_follow_the_batch() {
        let a = |id: &str| Alert {
            id: id.into(),
            org_id: "o".into(),
            usage_date: "2025-07-01".into(),
            service: "s".into(),
            cost_usd: 1.0,
            anomaly_score: 4.0,
            methods: vec!["z".into()],
        };
        assert_eq!(
            idempotency_key(&[a("x"), a("y")]),
            idempotency_key(&[a("x"), a("y")])
        );
        assert_ne!(
            idempotency_key(&[a("x"), a("y")]),
            idempotency_key(&[a("x")])
        );
    }
}
