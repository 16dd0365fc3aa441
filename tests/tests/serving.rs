//! The serving layer end to end on the sample: each dashboard query against values
//! computed from the gold Parquet files directly, idempotent publishing, and the
//! real-time merge (speed rows for the days batch has not covered, then batch).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use e2e::*;
use processor::FromOffset;
use serde_json::{Value, json};
use serving::ServingStore;
use serving::query::{Answer, QueryArgs, run};

type Row = BTreeMap<String, Value>;

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn text<'a>(r: &'a Row, c: &str) -> &'a str {
    r[c].as_str().unwrap()
}

fn pick(rows: &[Row], columns: &[&str]) -> Vec<Vec<Value>> {
    rows.iter()
        .map(|r| columns.iter().map(|c| r[*c].clone()).collect())
        .collect()
}

fn answer_values(a: &Answer) -> Vec<Vec<Value>> {
    pick(&a.rows, &a.columns)
}

fn all_answers(store: &serving::embedded::EmbeddedStore, org: &str) -> Vec<Answer> {
    let with_org = QueryArgs {
        org: Some(org.to_owned()),
        ..Default::default()
    };
    ["q1", "q2", "q3", "q4", "q5"]
        .iter()
        .map(|q| run(store, q, &with_org).unwrap())
        .chain([run(store, "q4", &QueryArgs::default()).unwrap()])
        .collect()
}

/// The sample through the whole pipeline, published to an embedded store.
fn published_sample(
    data: &Path,
) -> (
    eventlog::EmbeddedLog,
    std::path::PathBuf,
    serving::embedded::EmbeddedStore,
) {
    let log = open_log(data);
    replay(&log, data, &landing());
    process(&log, data, FromOffset::Committed);
    compact(&log, data, &compactor_settings(), false);
    let lake = data.join("lake");
    let store = serving::embedded::EmbeddedStore::open(&data.join("serving")).unwrap();
    serving::publish::publish(&store, &lake, &log).unwrap();
    (log, lake, store)
}

#[test]
fn queries_equal_the_gold_marts_and_publishing_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (log, lake, store) = published_sample(data);

    // The gold marts as read straight from the Parquet files.
    let daily = lake_rows(&lake, "gold/org_daily_usage_by_service");
    let tickets = lake_rows(&lake, "gold/tickets_by_severity_date");
    let revenue = lake_rows(&lake, "gold/revenue_by_org_month");
    let genai = lake_rows(&lake, "gold/genai_tokens_by_org_date");
    // An org with GenAI usage, so that every query has rows.
    let org = text(&genai[0], "org_id").to_owned();

    // q1: the org's daily rows in the range, ordered by date and service.
    let (from, to) = ("2025-07-10", "2025-07-20");
    let mut want: Vec<&Row> = daily
        .iter()
        .filter(|r| text(r, "org_id") == org)
        .filter(|r| (from..=to).contains(&text(r, "usage_date")))
        .collect();
    want.sort_by_key(|r| {
        (
            text(r, "usage_date").to_owned(),
            text(r, "service").to_owned(),
        )
    });
    assert!(!want.is_empty());
    let q1 = run(
        &store,
        "q1",
        &QueryArgs {
            org: Some(org.clone()),
            from: Some(day(from)),
            to: Some(day(to)),
            ..Default::default()
        },
    )
    .unwrap();
    let cols = ["usage_date", "service", "cost_usd", "requests"];
    assert_eq!(
        answer_values(&q1),
        want.iter()
            .map(|r| cols.iter().map(|c| r[*c].clone()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );

    // q2: top 3 services by cost over the org's last 14 days, ending at its latest day.
    let org_rows: Vec<&Row> = daily.iter().filter(|r| text(r, "org_id") == org).collect();
    let latest = org_rows
        .iter()
        .map(|r| text(r, "usage_date"))
        .max()
        .unwrap();
    let first = (day(latest) - chrono::Duration::days(13)).to_string();
    let mut sums: BTreeMap<&str, f64> = BTreeMap::new();
    for r in org_rows
        .iter()
        .filter(|r| text(r, "usage_date") >= first.as_str())
    {
        *sums.entry(text(r, "service")).or_default() += r["cost_usd"].as_f64().unwrap();
    }
    let mut ranked: Vec<_> = sums.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(3);
    let q2 = run(
        &store,
        "q2",
        &QueryArgs {
            org: Some(org.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(q2.rows.len(), 3);
    for (got, (service, cost)) in q2.rows.iter().zip(&ranked) {
        assert_eq!(text(got, "service"), *service);
        assert!((got["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-9);
    }

    // q3: the critical rows of the last 30 days of tickets_by_severity_date.
    let latest = tickets
        .iter()
        .map(|r| text(r, "created_date"))
        .max()
        .unwrap();
    let first = (day(latest) - chrono::Duration::days(29)).to_string();
    let mut want: Vec<&Row> = tickets
        .iter()
        .filter(|r| text(r, "severity") == "critical")
        .filter(|r| text(r, "created_date") >= first.as_str())
        .collect();
    want.sort_by_key(|r| text(r, "created_date").to_owned());
    let q3 = run(&store, "q3", &QueryArgs::default()).unwrap();
    assert!(!want.is_empty());
    assert_eq!(
        answer_values(&q3),
        want.iter()
            .map(|r| q3.columns.iter().map(|c| r[*c].clone()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );

    // q4: the org's invoices; all orgs: every invoice.
    let q4 = run(
        &store,
        "q4",
        &QueryArgs {
            org: Some(org.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let mut want: Vec<&Row> = revenue
        .iter()
        .filter(|r| text(r, "org_id") == org)
        .collect();
    want.sort_by_key(|r| text(r, "month").to_owned());
    assert_eq!(
        answer_values(&q4),
        want.iter()
            .map(|r| q4.columns.iter().map(|c| r[*c].clone()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    let q4_all = run(&store, "q4", &QueryArgs::default()).unwrap();
    assert_eq!(q4_all.rows.len(), revenue.len());

    // q5: the org's genai days.
    let q5 = run(
        &store,
        "q5",
        &QueryArgs {
            org: Some(org.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let mut want: Vec<&Row> = genai.iter().filter(|r| text(r, "org_id") == org).collect();
    want.sort_by_key(|r| text(r, "usage_date").to_owned());
    assert!(!want.is_empty());
    assert_eq!(
        answer_values(&q5),
        want.iter()
            .map(|r| q5.columns.iter().map(|c| r[*c].clone()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );

    // Publishing again, and after a replay of the same data, leaves the same answers.
    let before = all_answers(&store, &org);
    let again = serving::publish::publish(&store, &lake, &log).unwrap();
    assert!(again.speed_incremental, "{again:?}");
    assert_eq!(
        again.rows["speed_daily_usage_by_org"], 0,
        "nothing new to read"
    );
    assert_eq!(all_answers(&store, &org), before);
    // The processor rebuilt from offset 0 (its daily upserts may fall differently):
    // the publish notices and reads the real-time view again; same answers.
    process(&log, data, FromOffset::Earliest);
    serving::publish::publish(&store, &lake, &log).unwrap();
    assert_eq!(all_answers(&store, &org), before);
    replay(&log, data, &landing());
    process(&log, data, FromOffset::Committed);
    compact(&log, data, &compactor_settings(), false);
    serving::publish::publish(&store, &lake, &log).unwrap();
    assert_eq!(all_answers(&store, &org), before);
}

/// One more usage event, for an org and resource of the sample, on `date`.
fn extra_event(landing: &Path, id: &str, date: &str, cost: f64) -> String {
    let resources = std::fs::read_to_string(landing.join("resources.csv")).unwrap();
    let first: Vec<&str> = resources.lines().nth(1).unwrap().split(',').collect();
    let (resource, org) = (first[0], first[1]);
    json!({
        "event_id": id, "timestamp": format!("{date}T12:00:00Z"), "org_id": org,
        "resource_id": resource, "service": "compute", "region": "us-east",
        "metric": "requests", "value": 10, "unit": "count",
        "cost_usd_increment": cost, "schema_version": 2, "carbon_kg": 0.1
    })
    .to_string()
}

#[test]
fn days_after_the_batch_come_from_the_speed_view_until_batch_covers_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (log, lake, store) = published_sample(&data);
    let high_water = store.meta(serving::META_BATCH_HIGH_WATER).unwrap().unwrap();

    // Two events on the day after the batch's last day.
    let next = (day(&high_water) + chrono::Duration::days(1)).to_string();
    let extra = dir.path().join("extra");
    std::fs::create_dir_all(extra.join("usage_events_stream")).unwrap();
    let lines = [
        extra_event(&landing(), "evt_extra_1", &next, 2.5),
        extra_event(&landing(), "evt_extra_2", &next, 1.5),
    ];
    std::fs::write(
        extra.join("usage_events_stream/late.jsonl"),
        lines.join("\n") + "\n",
    )
    .unwrap();
    let resources = std::fs::read_to_string(landing().join("resources.csv")).unwrap();
    let org = resources
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(1)
        .unwrap()
        .to_owned();
    replay(&log, &data, &extra);
    process(&log, &data, FromOffset::Committed);
    serving::publish::publish(&store, &lake, &log).unwrap();

    let q1 = |store: &serving::embedded::EmbeddedStore| {
        run(
            store,
            "q1",
            &QueryArgs {
                org: Some(org.clone()),
                from: Some(day(&next)),
                to: Some(day(&next)),
                ..Default::default()
            },
        )
        .unwrap()
    };
    // Not compacted yet: the day comes from the real-time view.
    let speed = q1(&store);
    assert_eq!(speed.rows.len(), 1, "{:?}", speed.rows);
    assert_eq!(speed.rows[0]["service"], json!("compute"));
    assert!((speed.rows[0]["cost_usd"].as_f64().unwrap() - 4.0).abs() < 1e-9);
    assert_eq!(speed.rows[0]["requests"], json!(20.0));

    // After a compaction and a publish, the batch covers the day and its rows win.
    compact(&log, &data, &compactor_settings(), false);
    serving::publish::publish(&store, &lake, &log).unwrap();
    assert_eq!(
        store.meta(serving::META_BATCH_HIGH_WATER).unwrap().unwrap(),
        next
    );
    let batch = q1(&store);
    let gold: Vec<Row> = lake_rows(&lake, "gold/org_daily_usage_by_service")
        .into_iter()
        .filter(|r| text(r, "org_id") == org && text(r, "usage_date") == next)
        .collect();
    assert_eq!(gold.len(), 1);
    assert_eq!(
        answer_values(&batch),
        pick(&gold, &["usage_date", "service", "cost_usd", "requests"])
    );
}

/// The Cassandra/ScyllaDB backend against a live cluster: the same answers as the
/// embedded store. Runs when `CASSANDRA_URI` is set (e.g.
/// `cassandra://127.0.0.1:9042/analytics_test`).
#[test]
fn cassandra_backend_answers_like_the_embedded_store() {
    let Ok(uri) = std::env::var("CASSANDRA_URI") else {
        eprintln!(
            "SKIPPED: set CASSANDRA_URI=cassandra://host:9042/keyspace to run against a live cluster"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (log, lake, embedded) = published_sample(data);
    let cassandra = serving::open(&uri).unwrap();
    serving::publish::publish(&cassandra, &lake, &log).unwrap();
    // Twice: upserts leave the same rows.
    serving::publish::publish(&cassandra, &lake, &log).unwrap();
    let genai = lake_rows(&lake, "gold/genai_tokens_by_org_date");
    let org = text(&genai[0], "org_id").to_owned();
    let with_org = QueryArgs {
        org: Some(org.clone()),
        ..Default::default()
    };
    for q in ["q1", "q2", "q3", "q4", "q5"] {
        let a = run(&embedded, q, &with_org).unwrap();
        let b = run(&cassandra, q, &with_org).unwrap();
        assert_eq!(answer_values(&a), answer_values(&b), "{q}");
    }
}
