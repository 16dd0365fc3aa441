//! The dashboard page: an org and a date range picked in a plain form, the five
//! queries drawn as SVG on the server (see [`crate::svg`]), and a small script that
//! redraws them every few seconds so that the real-time view shows as it arrives.

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::Result;
use chrono::NaiveDate;
use serde_json::Value;

use crate::query::{self, Answer, Q2_DAYS, Q2_TOP, Q3_DAYS, QueryArgs, num, text};
use crate::svg::{Axis, Chart, Marker, Series, Total, Unit, escape};
use crate::{JsonRow, META_BATCH_HIGH_WATER, META_ORGS, OrgRange, ServingStore};

/// How often the page redraws its charts, in seconds.
pub const REFRESH_SECONDS: u32 = 5;
/// The page's default range: the org's last 30 days with data.
const DEFAULT_DAYS: i64 = 30;

/// Every org with data and its first and last day, as `serving publish` recorded
/// them (empty before the first publish).
pub fn orgs(store: &impl ServingStore) -> Result<Vec<OrgRange>> {
    Ok(match store.meta(META_ORGS)? {
        Some(s) => serde_json::from_str(&s)?,
        None => Vec::new(),
    })
}

/// The page's selection: the org asked for (else the first), and the range asked
/// for (else that org's last 30 days with data). `q2`, `q3` keep their own windows.
pub fn selection(orgs: &[OrgRange], asked: &QueryArgs) -> QueryArgs {
    let org = asked
        .org
        .clone()
        .or_else(|| orgs.first().map(|o| o.org_id.clone()));
    let range = org
        .as_deref()
        .and_then(|id| orgs.iter().find(|o| o.org_id == id));
    let day = |s: &str| query::parse_day(s).ok();
    let to = asked.to.or_else(|| range.and_then(|r| day(&r.last_date)));
    let from = asked.from.or_else(|| {
        let first = range.and_then(|r| day(&r.first_date));
        let back = to.map(|t| t - chrono::Duration::days(DEFAULT_DAYS - 1));
        match (first, back) {
            (Some(f), Some(b)) => Some(f.max(b)),
            (f, b) => b.or(f),
        }
    });
    QueryArgs {
        org,
        from: from.filter(|f| to.is_none_or(|t| *f <= t)),
        to,
        days: None,
        top: None,
    }
}

/// The distinct values of `col`, sorted.
fn categories(rows: &[JsonRow], col: &str) -> Vec<String> {
    let mut v: Vec<String> = rows.iter().map(|r| text(r, col).to_owned()).collect();
    v.sort();
    v.dedup();
    v
}

/// The most days a date axis draws.
const MAX_AXIS_DAYS: i64 = 3660;

/// A continuous date axis: every day from `from` (else the first day of the rows'
/// `col`) to `to` (else their last day), so that a day without rows is drawn as
/// zero, never skipped.
fn day_axis(
    rows: &[JsonRow],
    col: &str,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Vec<String> {
    let days: Vec<NaiveDate> = rows
        .iter()
        .filter_map(|r| query::parse_day(text(r, col)).ok())
        .collect();
    let (Some(first), Some(last)) = (
        from.or_else(|| days.iter().min().copied()),
        to.or_else(|| days.iter().max().copied()),
    ) else {
        return Vec::new();
    };
    let n = (last - first).num_days().clamp(-1, MAX_AXIS_DAYS - 1);
    (0..=n)
        .map(|i| (first + chrono::Duration::days(i)).to_string())
        .collect()
}

/// `value` summed per category of `col` (rows matching `keep`).
fn per_category(
    rows: &[JsonRow],
    col: &str,
    cats: &[String],
    value: &str,
    keep: impl Fn(&JsonRow) -> bool,
) -> Vec<f64> {
    let index: BTreeMap<&str, usize> = cats
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let mut out = vec![0.0; cats.len()];
    for r in rows.iter().filter(|r| keep(r)) {
        if let Some(i) = index.get(text(r, col)) {
            out[*i] += num(r, value);
        }
    }
    out
}

fn total(rows: &[JsonRow], metric: &'static str, label: &'static str, unit: Unit) -> Total {
    Total {
        metric,
        label,
        value: rows.iter().map(|r| num(r, metric)).sum(),
        unit,
    }
}

fn series(name: &str, values: Vec<f64>) -> Series {
    Series {
        name: name.to_owned(),
        values,
    }
}

fn range_text(sel: &QueryArgs) -> String {
    match (sel.from, sel.to) {
        (Some(f), Some(t)) => format!("{f} to {t}"),
        (Some(f), None) => format!("from {f}"),
        (None, Some(t)) => format!("to {t}"),
        (None, None) => "all days".to_owned(),
    }
}

/// q1: cost per service per day, stacked, with the day's requests on the right.
pub fn q1_chart(a: &Answer, sel: &QueryArgs) -> Chart {
    let days = day_axis(&a.rows, "usage_date", sel.from, sel.to);
    let mut services: Vec<(String, f64)> = categories(&a.rows, "service")
        .into_iter()
        .map(|s| {
            let cost = a
                .rows
                .iter()
                .filter(|r| text(r, "service") == s)
                .map(|r| num(r, "cost_usd"))
                .sum();
            (s, cost)
        })
        .collect();
    services.sort_by(|x, y| y.1.total_cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
    let bars = services
        .iter()
        .map(|(s, _)| {
            series(
                s,
                per_category(&a.rows, "usage_date", &days, "cost_usd", |r| {
                    text(r, "service") == s
                }),
            )
        })
        .collect();
    let requests = per_category(&a.rows, "usage_date", &days, "requests", |_| true);
    Chart {
        query: "q1",
        title: format!(
            "Daily cost per service, {}, {}",
            sel.org.as_deref().unwrap_or_default(),
            range_text(sel)
        ),
        categories: days,
        bars,
        left_unit: Unit::Usd,
        lines: vec![(series("requests", requests), Axis::Right)],
        right_unit: Unit::Count,
        totals: vec![
            total(&a.rows, "cost_usd", "cost", Unit::Usd),
            total(&a.rows, "requests", "requests", Unit::Count),
        ],
        markers: Vec::new(),
    }
}

/// q2: the top services by cost over the org's last days, as bars.
pub fn q2_chart(a: &Answer, sel: &QueryArgs) -> Chart {
    let services: Vec<String> = a
        .rows
        .iter()
        .map(|r| text(r, "service").to_owned())
        .collect();
    let costs = a.rows.iter().map(|r| num(r, "cost_usd")).collect();
    Chart {
        query: "q2",
        title: format!(
            "Top {} services by cost, {}'s last {} days with data",
            sel.top.unwrap_or(Q2_TOP),
            sel.org.as_deref().unwrap_or_default(),
            sel.days.unwrap_or(Q2_DAYS)
        ),
        categories: services,
        bars: vec![series("cost_usd", costs)],
        left_unit: Unit::Usd,
        lines: Vec::new(),
        right_unit: Unit::Usd,
        totals: vec![total(&a.rows, "cost_usd", "top services' cost", Unit::Usd)],
        markers: Vec::new(),
    }
}

/// q3: critical tickets per day and their SLA breach rate (all orgs).
pub fn q3_chart(a: &Answer, sel: &QueryArgs) -> Chart {
    // The window's every day, ending at its latest day with tickets.
    let window = sel.days.unwrap_or(Q3_DAYS);
    let last = a
        .rows
        .iter()
        .filter_map(|r| query::parse_day(text(r, "created_date")).ok())
        .max();
    let days = day_axis(
        &a.rows,
        "created_date",
        last.map(|l| l - chrono::Duration::days(window - 1)),
        last,
    );
    let tickets = per_category(&a.rows, "created_date", &days, "tickets", |_| true);
    let rate = per_category(&a.rows, "created_date", &days, "sla_breach_rate", |_| true);
    let t = total(&a.rows, "tickets", "critical tickets", Unit::Count);
    let b = total(&a.rows, "sla_breached", "SLA breached", Unit::Count);
    let overall = Total {
        metric: "sla_breach_rate",
        label: "breach rate",
        value: schemas::stats::sla_breach_rate(b.value, t.value),
        unit: Unit::Ratio,
    };
    Chart {
        query: "q3",
        title: format!(
            "Critical tickets per day, all orgs, the {window} days to the latest ticket"
        ),
        categories: days,
        bars: Vec::new(),
        left_unit: Unit::Count,
        lines: vec![
            (series("critical tickets", tickets), Axis::Left),
            (series("SLA breach rate", rate), Axis::Right),
        ],
        right_unit: Unit::Ratio,
        totals: vec![t, b, overall],
        markers: Vec::new(),
    }
}

/// The org's support tickets per day, stacked by severity, over the selected range.
pub fn tickets_chart(a: &Answer, sel: &QueryArgs) -> Chart {
    let days = day_axis(&a.rows, "created_date", sel.from, sel.to);
    let bars = ["critical", "high", "medium", "low"]
        .iter()
        .filter(|sev| a.rows.iter().any(|r| text(r, "severity") == **sev))
        .map(|sev| {
            series(
                sev,
                per_category(&a.rows, "created_date", &days, "tickets", |r| {
                    text(r, "severity") == *sev
                }),
            )
        })
        .collect();
    Chart {
        query: "tickets",
        title: format!(
            "Support tickets per day by severity, {}, {}",
            sel.org.as_deref().unwrap_or_default(),
            range_text(sel)
        ),
        categories: days,
        bars,
        left_unit: Unit::Count,
        lines: Vec::new(),
        right_unit: Unit::Count,
        totals: vec![
            total(&a.rows, "tickets", "tickets", Unit::Count),
            total(&a.rows, "open_tickets", "open", Unit::Count),
            total(&a.rows, "sla_breached", "SLA breached", Unit::Count),
        ],
        markers: Vec::new(),
    }
}

/// q4: monthly revenue in USD, a bar per month.
pub fn q4_chart(a: &Answer, sel: &QueryArgs) -> Chart {
    let months = categories(&a.rows, "month");
    let revenue = per_category(&a.rows, "month", &months, "revenue_usd", |_| true);
    Chart {
        query: "q4",
        title: format!(
            "Monthly revenue (USD), {}",
            sel.org.as_deref().unwrap_or("all orgs")
        ),
        categories: months,
        bars: vec![series("revenue_usd", revenue)],
        left_unit: Unit::Usd,
        lines: Vec::new(),
        right_unit: Unit::Usd,
        totals: vec![
            total(&a.rows, "revenue_usd", "revenue", Unit::Usd),
            total(&a.rows, "taxes_usd", "taxes", Unit::Usd),
            total(&a.rows, "total_usd", "total", Unit::Usd),
        ],
        markers: Vec::new(),
    }
}

/// q5: GenAI tokens per day as bars, their estimated cost on the right.
pub fn q5_chart(a: &Answer, sel: &QueryArgs) -> Chart {
    let days = day_axis(&a.rows, "usage_date", sel.from, sel.to);
    let tokens = per_category(&a.rows, "usage_date", &days, "total_tokens", |_| true);
    let cost = per_category(&a.rows, "usage_date", &days, "genai_cost_usd", |_| true);
    Chart {
        query: "q5",
        title: format!(
            "GenAI tokens and cost per day, {}, {}",
            sel.org.as_deref().unwrap_or_default(),
            range_text(sel)
        ),
        categories: days,
        bars: vec![series("tokens", tokens)],
        left_unit: Unit::Count,
        lines: vec![(series("cost", cost), Axis::Right)],
        right_unit: Unit::Usd,
        totals: vec![
            total(&a.rows, "total_tokens", "tokens", Unit::Count),
            total(&a.rows, "genai_cost_usd", "cost", Unit::Usd),
        ],
        markers: Vec::new(),
    }
}

/// The monthly revenue rows as a table beside q4's bars.
fn revenue_table(a: &Answer) -> String {
    let cols = [
        ("month", None),
        ("org_id", None),
        ("invoice_id", None),
        ("currency", None),
        ("subtotal", Some(Unit::Count)),
        ("credits", Some(Unit::Count)),
        ("taxes", Some(Unit::Count)),
        ("revenue_usd", Some(Unit::Usd)),
        ("total_usd", Some(Unit::Usd)),
    ];
    let mut s = String::from(r#"<table class="revenue"><thead><tr>"#);
    for (c, _) in cols {
        let _ = write!(s, "<th>{c}</th>");
    }
    s.push_str("</tr></thead><tbody>");
    for r in &a.rows {
        s.push_str("<tr>");
        for (c, unit) in cols {
            let cell = match (unit, r.get(c)) {
                (Some(Unit::Count), Some(Value::Number(n))) => {
                    format!("{:.2}", n.as_f64().unwrap_or_default())
                }
                (Some(u), Some(Value::Number(n))) => u.full(n.as_f64().unwrap_or_default()),
                (_, v) => crate::key_text(v),
            };
            let class = if unit.is_some() { " class=\"num\"" } else { "" };
            let _ = write!(s, "<td{class}>{}</td>", escape(&cell));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

/// q6's rows as marks on q1's days: one per anomaly, its service, cost, score and
/// methods as the tooltip.
pub fn anomaly_markers(q6: &Answer) -> Vec<Marker> {
    q6.rows
        .iter()
        .map(|r| Marker {
            category: text(r, "usage_date").to_owned(),
            key: format!("{}/{}", text(r, "usage_date"), text(r, "service")),
            label: format!(
                "anomaly {} {}: cost {}, score {:.2} ({})",
                text(r, "usage_date"),
                text(r, "service"),
                Unit::Usd.full(num(r, "cost_usd")),
                num(r, "anomaly_score"),
                text(r, "methods")
            ),
        })
        .collect()
}

/// q6 as a table: the org's anomalies over the range, highest score first.
fn anomaly_table(q6: &Answer) -> String {
    if q6.rows.is_empty() {
        return r#"<p class="empty" data-query="q6">no cost anomalies in this selection</p>"#
            .to_owned();
    }
    let mut s = String::from(
        r#"<table class="anomalies" data-query="q6"><thead><tr><th>day</th><th>service</th><th>cost</th><th>score</th><th>methods</th><th>z</th><th>MAD</th><th>p99 of the service</th></tr></thead><tbody>"#,
    );
    let score = |r: &JsonRow, c: &str| match r.get(c).and_then(Value::as_f64) {
        Some(v) => format!("{v:.2}"),
        None => "–".to_owned(),
    };
    for r in &q6.rows {
        let _ = write!(
            s,
            r#"<tr class="anomaly"><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            escape(text(r, "usage_date")),
            escape(text(r, "service")),
            escape(&Unit::Usd.full(num(r, "cost_usd"))),
            score(r, "anomaly_score"),
            escape(text(r, "methods")),
            score(r, "z_score"),
            score(r, "mad_score"),
            escape(&Unit::Usd.full(num(r, "p99_service"))),
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// The panels (what the page's script redraws).
pub fn panels(store: &impl ServingStore, sel: &QueryArgs) -> Result<String> {
    let windowed = QueryArgs {
        org: sel.org.clone(),
        ..QueryArgs::default()
    };
    let org_only = windowed.clone();
    let anomalies = query::run(store, "q6", sel)?;
    let mut q1 = q1_chart(&query::run(store, "q1", sel)?, sel);
    q1.markers = anomaly_markers(&anomalies);
    let panels: [(&str, &str, Chart, Option<String>); 6] = [
        (
            "q1",
            "Daily cost and requests per service, cost anomalies marked",
            q1,
            Some(anomaly_table(&anomalies)),
        ),
        (
            "q2",
            "Top services by cost",
            q2_chart(&query::run(store, "q2", &windowed)?, &windowed),
            None,
        ),
        (
            "q3",
            "Critical tickets and SLA breach rate",
            q3_chart(&query::run(store, "q3", &QueryArgs::default())?, sel),
            None,
        ),
        (
            "tickets",
            "The org's support tickets",
            tickets_chart(&query::run(store, "tickets", sel)?, sel),
            None,
        ),
        {
            let a = query::run(store, "q4", &org_only)?;
            let table = revenue_table(&a);
            (
                "q4",
                "Monthly revenue",
                q4_chart(&a, &org_only),
                Some(table),
            )
        },
        (
            "q5",
            "GenAI tokens and estimated cost",
            q5_chart(&query::run(store, "q5", sel)?, sel),
            None,
        ),
    ];
    let mut s = String::new();
    for (id, heading, chart, extra) in panels {
        let _ = write!(
            s,
            r#"<section class="panel" id="{id}"><h2>{id}: {heading}</h2>{}{}</section>"#,
            chart.render(),
            extra.unwrap_or_default()
        );
    }
    Ok(s)
}

/// The whole page.
pub fn page(store: &impl ServingStore, asked: &QueryArgs) -> Result<String> {
    let orgs = orgs(store)?;
    let sel = selection(&orgs, asked);
    let panels = panels(store, &sel)?;
    let high_water = store.meta(META_BATCH_HIGH_WATER)?;
    let mut options = String::new();
    for o in &orgs {
        let selected = if sel.org.as_deref() == Some(o.org_id.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            options,
            r#"<option value="{}"{selected}>{} ({})</option>"#,
            escape(&o.org_id),
            escape(&o.org_name),
            escape(&o.org_id)
        );
    }
    let date = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
    let ranges = relative_ranges(&orgs, &sel);
    let status = match &high_water {
        Some(h) => format!("batch marts through {h}; later days from the real-time view"),
        None => "nothing published yet: run `serving publish`".to_owned(),
    };
    Ok(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Usage analytics{title_org}</title>
<link rel="stylesheet" href="/dashboard.css">
<script src="/dashboard.js" defer></script>
</head><body>
<header><h1>Usage analytics</h1>
<form method="get" action="/">
<label>Org <select name="org">{options}</select></label>
<label>From <input type="date" name="from" value="{from}"></label>
<label>To <input type="date" name="to" value="{to}"></label>
<button type="submit">Show</button>
</form>
<nav class="ranges">{ranges}</nav>
<p class="status">{status}. Redrawn every {REFRESH_SECONDS} s. Data as JSON: <a href="/api/orgs">/api/orgs</a>, /api/q1 .. /api/q6.</p>
</header>
<main id="charts" data-refresh-seconds="{REFRESH_SECONDS}">{panels}</main>
</body></html>
"#,
        title_org = sel
            .org
            .as_deref()
            .map(|o| format!(" \u{2014} {}", escape(o)))
            .unwrap_or_default(),
        from = date(sel.from),
        to = date(sel.to),
        status = escape(&status),
    ))
}

/// Links to the selected org's last 7, 30 and 90 days with data, beside the date
/// pickers (the one shown marked as current).
fn relative_ranges(orgs: &[OrgRange], sel: &QueryArgs) -> String {
    let Some(org) = sel.org.as_deref() else {
        return String::new();
    };
    let Some(last) = orgs
        .iter()
        .find(|o| o.org_id == org)
        .and_then(|o| query::parse_day(&o.last_date).ok())
    else {
        return String::new();
    };
    let mut s = String::new();
    for days in [7, 30, 90] {
        let from = last - chrono::Duration::days(days - 1);
        let current = if sel.from == Some(from) && sel.to == Some(last) {
            r#" aria-current="true""#
        } else {
            ""
        };
        let _ = write!(
            s,
            r#"<a class="range" data-days="{days}"{current} href="/?org={}&amp;from={from}&amp;to={last}">last {days} days</a>"#,
            escape(org)
        );
    }
    s
}

/// The page's script: redraw the panels every few seconds, keeping the last ones
/// if the server does not answer.
pub const SCRIPT: &str = r#"// Redraws the dashboard's panels so that the real-time view shows as it arrives.
(function () {
  const main = document.getElementById('charts');
  const every = 1000 * Number(main.dataset.refreshSeconds || 5);
  setInterval(async function () {
    try {
      const r = await fetch('/panels' + window.location.search, { cache: 'no-store' });
      if (r.ok) { main.innerHTML = await r.text(); }
    } catch (e) { /* keep what is shown */ }
  }, every);
})();
"#;

pub const STYLE: &str = r#"body { font: 14px/1.4 system-ui, sans-serif; margin: 0 24px 24px; color: #222; background: #fafafa; }
header { position: sticky; top: 0; background: #fafafa; padding: 8px 0; border-bottom: 1px solid #ddd; }
h1 { font-size: 20px; margin: 4px 0 8px; }
form label { margin-right: 12px; }
nav.ranges { margin-top: 6px; }
nav.ranges a { margin-right: 12px; }
nav.ranges a[aria-current] { font-weight: bold; text-decoration: none; color: #222; }
.status { color: #666; margin: 6px 0 0; }
.panel { background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; margin: 16px 0; padding: 8px 12px; max-width: 980px; }
.panel h2 { font-size: 15px; margin: 4px 0; }
svg.chart { max-width: 100%; height: auto; font: 12px system-ui, sans-serif; }
svg .title { font-weight: 600; font-size: 13px; }
svg .total { font-weight: 600; fill: #333; }
svg .tick, svg .legend { fill: #555; font-size: 11px; }
svg .empty { fill: #888; }
table.revenue, table.anomalies { border-collapse: collapse; margin-top: 8px; font-size: 12px; }
table.revenue th, table.revenue td, table.anomalies th, table.anomalies td { border-bottom: 1px solid #eee; padding: 2px 8px; text-align: left; }
table.revenue td.num, table.anomalies td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.anomalies tr.anomaly td:first-child { border-left: 3px solid #d62728; }
"#;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn range(id: &str, first: &str, last: &str) -> OrgRange {
        OrgRange {
            org_id: id.into(),
            org_name: format!("{id} name"),
            first_date: first.into(),
            last_date: last.into(),
        }
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_default_selection_is_the_first_orgs_last_30_days() {
        let orgs = [
            range("a", "2025-06-01", "2025-07-31"),
            range("b", "2025-07-20", "2025-07-25"),
        ];
        let s = selection(&orgs, &QueryArgs::default());
        assert_eq!(s.org.as_deref(), Some("a"));
        assert_eq!(
            (s.from, s.to),
            (Some(day("2025-07-02")), Some(day("2025-07-31")))
        );
        // A short history starts at its first day.
        let s = selection(
            &orgs,
            &QueryArgs {
                org: Some("b".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            (s.from, s.to),
            (Some(day("2025-07-20")), Some(day("2025-07-25")))
        );
        // What was asked for stays.
        let asked = QueryArgs {
            org: Some("zz".into()),
            from: Some(day("2025-01-01")),
            to: Some(day("2025-01-02")),
            ..Default::default()
        };
        assert_eq!(selection(&orgs, &asked), asked);
        // Nothing published: no org, no range.
        assert_eq!(selection(&[], &QueryArgs::default()), QueryArgs::default());
    }

    fn rows(v: serde_json::Value) -> Vec<JsonRow> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn q1_stacks_services_per_day_and_totals_every_row() {
        let a = Answer {
            columns: vec!["usage_date", "service", "cost_usd", "requests"],
            rows: rows(serde_json::json!([
                {"usage_date": "2025-07-01", "service": "compute", "cost_usd": 2.0, "requests": 10.0},
                {"usage_date": "2025-07-01", "service": "storage", "cost_usd": 5.0, "requests": 1.0},
                {"usage_date": "2025-07-02", "service": "compute", "cost_usd": 4.0, "requests": 3.0},
            ])),
        };
        let c = q1_chart(&a, &QueryArgs::default());
        assert_eq!(c.categories, ["2025-07-01", "2025-07-02"]);
        // Services by total cost, highest first: compute 6, storage 5.
        assert_eq!(c.bars[0].name, "compute");
        assert_eq!(c.bars[0].values, [2.0, 4.0]);
        assert_eq!(c.bars[1].values, [5.0, 0.0]);
        assert_eq!(c.lines[0].0.values, [11.0, 3.0]);
        assert_eq!(c.totals[0].value, 11.0);
        assert_eq!(c.totals[1].value, 14.0);
    }

    #[test]
    fn relative_ranges_end_at_the_orgs_last_day() {
        let orgs = [range("org_a", "2025-07-01", "2025-08-31")];
        let sel = QueryArgs {
            org: Some("org_a".into()),
            from: Some(day("2025-08-02")),
            to: Some(day("2025-08-31")),
            ..QueryArgs::default()
        };
        let links = relative_ranges(&orgs, &sel);
        assert!(
            links.contains(
                r#"data-days="7" href="/?org=org_a&amp;from=2025-08-25&amp;to=2025-08-31""#
            ),
            "{links}"
        );
        assert!(links.contains(r#"data-days="30" aria-current="true" href="/?org=org_a&amp;from=2025-08-02&amp;to=2025-08-31""#), "{links}");
        assert!(
            links.contains(
                r#"data-days="90" href="/?org=org_a&amp;from=2025-06-03&amp;to=2025-08-31""#
            ),
            "{links}"
        );
        assert_eq!(links.matches("aria-current").count(), 1);
        let nobody = QueryArgs::default();
        assert!(relative_ranges(&orgs, &nobody).is_empty());
    }

    #[test]
    fn date_axes_are_continuous() {
        let a = Answer {
            columns: vec!["org_id", "usage_date", "service", "cost_usd", "requests"],
            rows: rows(serde_json::json!([
                {"org_id": "o", "usage_date": "2025-08-09", "service": "compute", "cost_usd": 1.0, "requests": 2.0},
                {"org_id": "o", "usage_date": "2025-08-12", "service": "compute", "cost_usd": 3.0, "requests": 4.0},
            ])),
        };
        // The days between the rows are drawn, at zero.
        let c = q1_chart(&a, &QueryArgs::default());
        assert_eq!(
            c.categories,
            ["2025-08-09", "2025-08-10", "2025-08-11", "2025-08-12"]
        );
        assert_eq!(c.bars[0].values, [1.0, 0.0, 0.0, 3.0]);
        // A selected range is drawn whole, rows or not.
        let sel = QueryArgs {
            from: Some(day("2025-08-08")),
            to: Some(day("2025-08-13")),
            ..QueryArgs::default()
        };
        assert_eq!(q1_chart(&a, &sel).categories.len(), 6);
        // q3: the window's days, ending at the latest day with tickets.
        let t = Answer {
            columns: vec!["created_date", "tickets", "sla_breached", "sla_breach_rate"],
            rows: rows(serde_json::json!([
                {"created_date": "2025-08-09", "tickets": 2, "sla_breached": 1, "sla_breach_rate": 0.5},
                {"created_date": "2025-08-12", "tickets": 1, "sla_breached": 0, "sla_breach_rate": 0.0},
            ])),
        };
        let sel = QueryArgs {
            days: Some(10),
            ..QueryArgs::default()
        };
        let c = q3_chart(&t, &sel);
        assert_eq!(c.categories.len(), 10);
        assert_eq!(c.categories.first().map(String::as_str), Some("2025-08-03"));
        assert_eq!(c.categories.last().map(String::as_str), Some("2025-08-12"));
        assert!(day_axis(&[], "usage_date", None, None).is_empty());
    }

    #[test]
    fn q3_breach_rate_is_breached_over_tickets() {
        let a = Answer {
            columns: vec![],
            rows: rows(serde_json::json!([
                {"created_date": "2025-07-01", "tickets": 4, "sla_breached": 1, "sla_breach_rate": 0.25},
                {"created_date": "2025-07-02", "tickets": 6, "sla_breached": 4, "sla_breach_rate": 0.6667},
            ])),
        };
        let c = q3_chart(&a, &QueryArgs::default());
        assert_eq!(c.totals[0].value, 10.0);
        assert_eq!(c.totals[1].value, 5.0);
        assert_eq!(c.totals[2].value, 0.5);
    }
}
