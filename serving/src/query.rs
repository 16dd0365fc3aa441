//! The five dashboard queries (SPEC section 7), each one or two partition reads, and
//! their output as a table, CSV or JSON Lines.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use serde_json::Value;

use crate::{
    ANOMALY_ALL, ANOMALY_ORG, DAILY, GENAI, JsonRow, META_ANOMALY_PARTITIONS,
    META_BATCH_HIGH_WATER, META_REVENUE_PARTITIONS, META_TICKETS_LATEST, REVENUE_ALL, REVENUE_ORG,
    SPEED_DAILY, ServingStore, TICKETS, TICKETS_ORG,
};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryArgs {
    pub org: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub days: Option<i64>,
    pub top: Option<usize>,
}

/// SPEC section 7's defaults: q2's window and how many services it ranks, q3's window.
pub const Q2_DAYS: i64 = 14;
pub const Q2_TOP: usize = 3;
pub const Q3_DAYS: i64 = 30;

/// The longest window q2 and q3 accept, in days (ten years).
pub const MAX_DAYS: i64 = 3660;
/// The most services q2 returns.
pub const MAX_TOP: usize = 1000;

/// An org id as the pipeline writes them: letters, digits, `_ - . :`, at most 128.
pub fn valid_org(org: &str) -> bool {
    (1..=128).contains(&org.len())
        && org
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

impl QueryArgs {
    /// The checks every caller shares (the CLI and the HTTP API): a bad value is an
    /// error with a one-line reason, never a query.
    pub fn validate(&self) -> Result<()> {
        if let Some(org) = &self.org
            && !valid_org(org)
        {
            bail!("bad org {org:?}: expected 1 to 128 letters, digits, '_', '-', '.' or ':'");
        }
        if let (Some(f), Some(t)) = (self.from, self.to)
            && f > t
        {
            bail!("from {f} is after to {t}");
        }
        if let Some(d) = self.days
            && !(1..=MAX_DAYS).contains(&d)
        {
            bail!("bad days {d}: expected 1 to {MAX_DAYS}");
        }
        if let Some(n) = self.top
            && !(1..=MAX_TOP).contains(&n)
        {
            bail!("bad top {n}: expected 1 to {MAX_TOP}");
        }
        Ok(())
    }

    /// [`QueryArgs::validate`], plus what query `q` itself needs: an org for q1, q2
    /// and q5.
    pub fn check(&self, q: &str) -> Result<()> {
        self.validate()?;
        if matches!(q, "q1" | "q2" | "q5" | "tickets") && self.org.is_none() {
            bail!("{q} needs --org ORG_ID");
        }
        Ok(())
    }
}

/// Every row of a `..._by_month_bucket` table, its partitions read from the list in
/// `serving_meta` `partitions_meta` (`month/bucket`, comma-separated): those of the
/// months `from`..`to` touches, each scanned over that range of its first
/// clustering column.
fn scan_month_buckets(
    store: &impl ServingStore,
    table: &crate::TableDef,
    partitions_meta: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Vec<JsonRow>> {
    let (first, last) = (from.and_then(|d| d.get(..7)), to.and_then(|d| d.get(..7)));
    let partitions = store.meta(partitions_meta)?.unwrap_or_default();
    let mut rows = Vec::new();
    for p in partitions.split(',').filter(|p| !p.is_empty()) {
        let (m, bucket) = p.split_once('/').unwrap_or((p, ""));
        let this = m.get(..7).unwrap_or(m);
        if first.is_some_and(|f| this < f) || last.is_some_and(|l| this > l) {
            continue;
        }
        rows.extend(store.scan(table, &[m, bucket], from, to)?);
    }
    Ok(rows)
}

/// A query's answer: its columns (the mart's names) and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub columns: Vec<&'static str>,
    pub rows: Vec<JsonRow>,
}

fn date_text(d: Option<NaiveDate>) -> Option<String> {
    d.map(|d| d.to_string())
}

fn org(args: &QueryArgs) -> String {
    args.org.clone().unwrap_or_default()
}

fn project(rows: Vec<JsonRow>, columns: &[&'static str]) -> Vec<JsonRow> {
    rows.into_iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| ((*c).to_owned(), r.get(*c).cloned().unwrap_or(Value::Null)))
                .collect()
        })
        .collect()
}

pub fn parse_day(s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").with_context(|| format!("bad date {s:?}"))
}

/// The org's daily rows in `[from, to]`: batch rows up to the batch high-water mark,
/// real-time rows after it (once batch covers a day, batch rows win).
fn daily_rows(
    store: &impl ServingStore,
    org: &str,
    from: Option<String>,
    to: Option<String>,
) -> Result<Vec<JsonRow>> {
    let hw = store.meta(META_BATCH_HIGH_WATER)?;
    let batch_to = match (&to, &hw) {
        (Some(t), Some(h)) => Some(t.min(h).clone()),
        (None, h) => h.clone(),
        (t, None) => t.clone(),
    };
    let mut rows = match &hw {
        Some(_) => store.scan(&DAILY, &[org], from.as_deref(), batch_to.as_deref())?,
        None => Vec::new(),
    };
    let speed_from = match &hw {
        Some(h) => {
            let next = (parse_day(h)? + chrono::Duration::days(1)).to_string();
            Some(match &from {
                Some(f) if f > &next => f.clone(),
                _ => next,
            })
        }
        None => from.clone(),
    };
    rows.extend(store.scan(&SPEED_DAILY, &[org], speed_from.as_deref(), to.as_deref())?);
    Ok(rows)
}

pub(crate) fn text<'r>(r: &'r JsonRow, c: &str) -> &'r str {
    r.get(c).and_then(Value::as_str).unwrap_or_default()
}

pub(crate) fn num(r: &JsonRow, c: &str) -> f64 {
    r.get(c).and_then(Value::as_f64).unwrap_or(0.0)
}

pub fn run(store: &impl ServingStore, q: &str, args: &QueryArgs) -> Result<Answer> {
    args.check(q)?;
    match q {
        // q1: daily cost and requests per service for one org over a date range.
        "q1" => {
            let org = org(args);
            let columns = vec!["usage_date", "service", "cost_usd", "requests"];
            let rows = daily_rows(store, &org, date_text(args.from), date_text(args.to))?;
            Ok(Answer {
                rows: project(rows, &columns),
                columns,
            })
        }
        // q2: top-N services by summed cost over the org's last N days, ending at its
        // latest usage_date and including it.
        "q2" => {
            let org = org(args);
            let days = args.days.unwrap_or(Q2_DAYS);
            let top = args.top.unwrap_or(Q2_TOP);
            let rows = daily_rows(store, &org, None, None)?;
            let mut sums: BTreeMap<String, f64> = BTreeMap::new();
            if let Some(latest) = rows.iter().map(|r| text(r, "usage_date")).max() {
                let first = (parse_day(latest)? - chrono::Duration::days(days - 1)).to_string();
                for r in rows
                    .iter()
                    .filter(|r| text(r, "usage_date") >= first.as_str())
                {
                    *sums.entry(text(r, "service").to_owned()).or_default() += num(r, "cost_usd");
                }
            }
            let mut ranked: Vec<(String, f64)> = sums.into_iter().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            ranked.truncate(top);
            Ok(Answer {
                columns: vec!["service", "cost_usd"],
                rows: ranked
                    .into_iter()
                    .map(|(s, c)| {
                        [
                            ("service".to_owned(), Value::from(s)),
                            ("cost_usd".to_owned(), Value::from(c)),
                        ]
                        .into_iter()
                        .collect()
                    })
                    .collect(),
            })
        }
        // q3: critical tickets and SLA breach rate per day over the last N days,
        // ending at the latest created_date of tickets_by_severity_date.
        "q3" => {
            let days = args.days.unwrap_or(Q3_DAYS);
            let columns = vec![
                "severity",
                "created_date",
                "tickets",
                "open_tickets",
                "sla_breached",
                "sla_breach_rate",
                "csat_avg",
                "csat_responses",
            ];
            let rows = match store.meta(META_TICKETS_LATEST)? {
                Some(latest) => {
                    let first =
                        (parse_day(&latest)? - chrono::Duration::days(days - 1)).to_string();
                    store.scan(&TICKETS, &["critical"], Some(&first), Some(&latest))?
                }
                None => Vec::new(),
            };
            Ok(Answer {
                rows: project(rows, &columns),
                columns,
            })
        }
        // q4: monthly revenue with credits and taxes, in USD, for one org or all.
        "q4" => {
            let columns = vec![
                "org_id",
                "month",
                "invoice_id",
                "currency",
                "subtotal",
                "credits",
                "taxes",
                "fx_applied",
                "revenue_usd",
                "taxes_usd",
                "total_usd",
            ];
            let rows = match &args.org {
                Some(org) => store.scan(&REVENUE_ORG, &[org], None, None)?,
                None => {
                    let mut rows = scan_month_buckets(
                        store,
                        &REVENUE_ALL,
                        META_REVENUE_PARTITIONS,
                        None,
                        None,
                    )?;
                    // By month, then org, whatever bucket an org fell in.
                    rows.sort_by(|a, b| {
                        (text(a, "month"), text(a, "org_id"))
                            .cmp(&(text(b, "month"), text(b, "org_id")))
                    });
                    rows
                }
            };
            Ok(Answer {
                rows: project(rows, &columns),
                columns,
            })
        }
        // q5: GenAI tokens and estimated cost per day for one org.
        "q5" => {
            let org = org(args);
            let columns = vec![
                "org_id",
                "usage_date",
                "genai_events",
                "total_tokens",
                "genai_cost_usd",
            ];
            let (from, to) = (date_text(args.from), date_text(args.to));
            let hw = store.meta(META_BATCH_HIGH_WATER)?;
            let mut rows = match &hw {
                Some(h) => {
                    let batch_to = to.as_ref().map_or(h.clone(), |t| t.min(h).clone());
                    store.scan(&GENAI, &[&org], from.as_deref(), Some(&batch_to))?
                }
                None => Vec::new(),
            };
            // Days after the batch: the real-time view's genai rows.
            for r in daily_rows(store, &org, from, to)? {
                let date = text(&r, "usage_date");
                if text(&r, "service") != "genai" || hw.as_deref().is_some_and(|h| date <= h) {
                    continue;
                }
                rows.push(
                    [
                        ("org_id", Value::from(org.as_str())),
                        ("usage_date", Value::from(date)),
                        ("genai_events", r["events"].clone()),
                        ("total_tokens", r["genai_tokens"].clone()),
                        ("genai_cost_usd", r["cost_usd"].clone()),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
                );
            }
            Ok(Answer {
                rows: project(rows, &columns),
                columns,
            })
        }
        // q6: cost anomalies of one org, or of every org, over a date range, highest
        // anomaly_score first.
        "q6" => {
            let columns = vec![
                "org_id",
                "usage_date",
                "service",
                "cost_usd",
                "anomaly_score",
                "methods",
                "z_score",
                "mad_score",
                "p99_service",
            ];
            let (from, to) = (date_text(args.from), date_text(args.to));
            let mut rows = match &args.org {
                Some(org) => store.scan(&ANOMALY_ORG, &[org], from.as_deref(), to.as_deref())?,
                None => scan_month_buckets(
                    store,
                    &ANOMALY_ALL,
                    META_ANOMALY_PARTITIONS,
                    from.as_deref(),
                    to.as_deref(),
                )?,
            };
            let score = |r: &JsonRow| {
                r.get("anomaly_score")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
            };
            rows.sort_by(|a, b| {
                score(b).total_cmp(&score(a)).then_with(|| {
                    ["org_id", "usage_date", "service"]
                        .iter()
                        .map(|c| text(a, c).cmp(text(b, c)))
                        .find(|o| o.is_ne())
                        .unwrap_or(std::cmp::Ordering::Equal)
                })
            });
            Ok(Answer {
                rows: project(rows, &columns),
                columns,
            })
        }
        // The tickets panel: one org's tickets per day and severity over a range.
        "tickets" => {
            let org = org(args);
            let columns = vec![
                "org_id",
                "created_date",
                "severity",
                "tickets",
                "open_tickets",
                "sla_breached",
                "sla_breach_rate",
                "csat_avg",
            ];
            let (from, to) = (date_text(args.from), date_text(args.to));
            let rows = store.scan(&TICKETS_ORG, &[&org], from.as_deref(), to.as_deref())?;
            Ok(Answer {
                rows: project(rows, &columns),
                columns,
            })
        }
        other => bail!("unknown query {other:?}: expected q1, q2, q3, q4, q5, q6 or tickets"),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Answer {
    /// One row as a JSON object whose fields are in the query's column order.
    fn json_object(&self, row: &JsonRow) -> Result<String> {
        let fields = self
            .columns
            .iter()
            .map(|c| {
                let v = row.get(*c).unwrap_or(&Value::Null);
                Ok(format!(
                    "{}:{}",
                    serde_json::to_string(c)?,
                    serde_json::to_string(v)?
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(format!("{{{}}}", fields.join(",")))
    }

    /// The rows as one JSON array of objects (the HTTP API's shape, which Grafana's
    /// JSON and Infinity data sources read as a table).
    pub fn json_array(&self) -> Result<String> {
        let rows = self
            .rows
            .iter()
            .map(|r| self.json_object(r))
            .collect::<Result<Vec<_>>>()?;
        Ok(format!("[{}]", rows.join(",")))
    }
}

/// The answer as `table`, `csv` or `json` (JSON Lines, the mart's column names).
pub fn render(a: &Answer, format: &str) -> Result<String> {
    let mut out = String::new();
    match format {
        "json" => {
            for r in &a.rows {
                out.push_str(&a.json_object(r)?);
                out.push('\n');
            }
        }
        "csv" => {
            out.push_str(&a.columns.join(","));
            out.push('\n');
            for r in &a.rows {
                let cells: Vec<String> = a
                    .columns
                    .iter()
                    .map(|c| {
                        let s = cell(r.get(*c).unwrap_or(&Value::Null));
                        if s.contains([',', '"', '\n']) {
                            format!("\"{}\"", s.replace('"', "\"\""))
                        } else {
                            s
                        }
                    })
                    .collect();
                out.push_str(&cells.join(","));
                out.push('\n');
            }
        }
        "table" => {
            // For people: decimals rounded to 4 places (csv and json keep every digit).
            let shown = |v: &Value| match v {
                Value::Number(n) if n.is_f64() => {
                    let s = format!("{:.4}", n.as_f64().unwrap_or_default());
                    s.trim_end_matches('0').trim_end_matches('.').to_owned()
                }
                other => cell(other),
            };
            let cells: Vec<Vec<String>> = a
                .rows
                .iter()
                .map(|r| {
                    a.columns
                        .iter()
                        .map(|c| shown(r.get(*c).unwrap_or(&Value::Null)))
                        .collect()
                })
                .collect();
            let widths: Vec<usize> = a
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| cells.iter().map(|r| r[i].len()).fold(c.len(), usize::max))
                .collect();
            let line = |vals: Vec<&str>| {
                vals.iter()
                    .zip(&widths)
                    .map(|(v, w)| format!("{v:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_owned()
            };
            out.push_str(&line(a.columns.clone()));
            out.push('\n');
            for r in &cells {
                out.push_str(&line(r.iter().map(String::as_str).collect()));
                out.push('\n');
            }
            out.push_str(&format!("({} rows)\n", a.rows.len()));
        }
        other => bail!("unknown format {other:?}: expected table, csv or json"),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn formats() {
        let a = Answer {
            columns: vec!["service", "cost_usd"],
            rows: vec![
                serde_json::from_value(serde_json::json!({"service": "a,b", "cost_usd": 1.5}))
                    .unwrap(),
            ],
        };
        assert_eq!(
            render(&a, "csv").unwrap(),
            "service,cost_usd\n\"a,b\",1.5\n"
        );
        assert_eq!(
            render(&a, "json").unwrap(),
            "{\"service\":\"a,b\",\"cost_usd\":1.5}\n"
        );
        let t = render(&a, "table").unwrap();
        assert!(t.contains("(1 rows)") && t.contains("a,b      1.5"), "{t}");
        assert!(render(&a, "xml").is_err());
    }
}
