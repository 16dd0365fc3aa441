//! The compactor end to end: a hand-made landing directory whose gold rows are
//! computed by hand below, the sample data set (its counts, and DuckDB reading the
//! lake and recomputing every mart), idempotency, reprocessing, and SIGKILLs.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use e2e::*;
use eventlog::Log;
use processor::FromOffset;
use serde_json::{Value, json};

type Row = BTreeMap<String, Value>;

fn find<'a>(rows: &'a [Row], key: &[(&str, Value)]) -> &'a Row {
    let hits: Vec<&Row> = rows
        .iter()
        .filter(|r| key.iter().all(|(k, v)| r.get(*k) == Some(v)))
        .collect();
    assert_eq!(hits.len(), 1, "rows with {key:?}: {hits:?}");
    hits[0]
}

fn assert_close(row: &Row, field: &str, want: f64) {
    let got = row[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field}: {row:?}"));
    assert!(
        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
        "{field}: got {got}, want {want} in {row:?}"
    );
}

fn assert_fields(row: &Row, want: &[(&str, Value)]) {
    for (k, v) in want {
        match v {
            Value::Number(n) if n.is_f64() => assert_close(row, k, n.as_f64().unwrap()),
            _ => assert_eq!(&row[*k], v, "{k} in {row:?}"),
        }
    }
}

/// One usage event line.
#[allow(clippy::too_many_arguments)]
fn event(
    id: &str,
    date: &str,
    org: &str,
    service: &str,
    metric: &str,
    value: Value,
    unit: Option<&str>,
    cost: f64,
    version: u8,
    extra: Value,
) -> String {
    let mut e = json!({
        "event_id": id, "timestamp": format!("{date}T10:00:00Z"), "org_id": org,
        "resource_id": if org == "org_a" { "res_a" } else { "res_b" },
        "service": service, "region": "us-east", "metric": metric, "value": value,
        "cost_usd_increment": cost, "schema_version": version,
    });
    if let Some(u) = unit {
        e["unit"] = json!(u);
    }
    if let Value::Object(m) = extra {
        for (k, v) in m {
            e[k] = v;
        }
    }
    e.to_string()
}

fn day(start: &str, plus: i64) -> String {
    let d = chrono::NaiveDate::parse_from_str(start, "%Y-%m-%d").unwrap();
    (d + chrono::Duration::days(plus)).to_string()
}

/// The hand-made landing directory. Every gold row asserted below follows from it.
fn golden_landing(dir: &Path) {
    let csv = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    csv(
        "customers_orgs.csv",
        "org_id,org_name,industry,hq_region,plan_tier,is_enterprise,signup_date,sales_rep,lifecycle_stage,marketing_source,nps_score\n\
         org_a,Org A,Media,us-east,pro,False,2024-12-01,rep1,active,ads,50\n\
         org_b,Org B,Retail,eu-west,free,False,2024-12-01,rep2,active,organic,\n",
    );
    csv(
        "resources.csv",
        "resource_id,org_id,service,region,created_at,state,tags_json\n\
         res_a,org_a,compute,us-east,2024-12-01,running,\n\
         res_b,org_b,networking,eu-west,2024-12-01,running,\n",
    );
    csv(
        "users.csv",
        "user_id,org_id,email,role,active,created_at,last_login\n\
         u1,org_a,u1@example.com,admin,True,2024-12-01,\n",
    );
    csv(
        "marketing_touches.csv",
        "touch_id,org_id,campaign,channel,timestamp,clicked,converted\n\
         m1,org_a,welcome,email,2024-12-02,True,False\n",
    );
    csv(
        "nps_surveys.csv",
        "org_id,survey_date,nps_score,comment\norg_a,2025-03-01,40.0,fine\n",
    );
    csv(
        "billing_monthly.csv",
        "invoice_id,org_id,month,subtotal,credits,taxes,currency,exchange_rate_to_usd\n\
         inv_1,org_a,2025-03-01,100.0,10.0,21.0,USD,1.0\n\
         inv_2,org_a,2025-04-01,200.0,,42.0,USD,0.97\n\
         inv_3,org_b,2025-03-01,50.0,5.0,-2.0,EUR,1.1\n",
    );
    csv(
        "support_tickets.csv",
        "ticket_id,org_id,category,severity,created_at,resolved_at,csat,sla_breached\n\
         t1,org_a,billing,high,2025-03-02,2025-03-03,4.0,True\n\
         t2,org_a,billing,high,2025-03-02,,2.0,False\n\
         t3,org_a,security,critical,2025-03-02,2025-03-05,9.0,True\n\
         t4,org_b,usability,high,2025-03-02,2025-03-02,,False\n",
    );
    let mut lines = Vec::new();
    let none = Value::Null;
    // compute, org_a: ten days at 1.0, then 100.0 (the z-score anomaly).
    for i in 0..11 {
        let cost = if i == 10 { 100.0 } else { 1.0 };
        lines.push(event(
            &format!("c{i}"),
            &day("2025-03-01", i),
            "org_a",
            "compute",
            "cpu_hours",
            json!(2.0),
            Some("hours"),
            cost,
            1,
            none.clone(),
        ));
    }
    // storage, org_a: 1, 2, 3, 4, 20 (the MAD anomaly).
    for (i, cost) in [1.0, 2.0, 3.0, 4.0, 20.0].iter().enumerate() {
        lines.push(event(
            &format!("s{i}"),
            &day("2025-03-01", i as i64),
            "org_a",
            "storage",
            "storage_gb_hours",
            json!(10.0),
            Some("gb_hours"),
            *cost,
            1,
            none.clone(),
        ));
    }
    // networking: org_a 100 days at 1.0; org_b 1.0 then 10.0 (the percentile anomaly).
    for i in 0..100 {
        lines.push(event(
            &format!("na{i}"),
            &day("2025-01-01", i),
            "org_a",
            "networking",
            "requests",
            json!(1.0),
            Some("count"),
            1.0,
            1,
            none.clone(),
        ));
    }
    for (i, cost) in [1.0, 10.0].iter().enumerate() {
        lines.push(event(
            &format!("nb{i}"),
            &day("2025-03-01", i as i64),
            "org_b",
            "networking",
            "requests",
            json!(1.0),
            Some("count"),
            *cost,
            1,
            none.clone(),
        ));
    }
    // genai, org_a, 2025-03-01: the sum rules on one daily row.
    let g1 = event(
        "g1",
        "2025-03-01",
        "org_a",
        "genai",
        "requests",
        json!(5),
        Some("count"),
        2.0,
        2,
        json!({"carbon_kg": 0.5, "genai_tokens": 1000}),
    );
    lines.push(g1.clone());
    // null value (counts 0), negative cost (left out of cost, counted as negative).
    lines.push(event(
        "g2",
        "2025-03-01",
        "org_a",
        "genai",
        "requests",
        Value::Null,
        Some("count"),
        -5.0,
        2,
        json!({"carbon_kg": 0.25, "genai_tokens": 300}),
    ));
    // v1 with tokens: tokens_misplaced; a numeric string value; unit imputed.
    lines.push(event(
        "g3",
        "2025-03-01",
        "org_a",
        "genai",
        "requests",
        json!("7"),
        None,
        1.5,
        1,
        json!({"genai_tokens": 50}),
    ));
    // Quarantined: the same line again (duplicate) and an unknown org.
    lines.push(g1);
    lines.push(event(
        "x1",
        "2025-03-01",
        "org_zzz",
        "compute",
        "cpu_hours",
        json!(1.0),
        Some("hours"),
        1.0,
        1,
        none,
    ));
    let events = dir.join("usage_events_stream");
    std::fs::create_dir_all(&events).unwrap();
    let mut text = String::new();
    for l in &lines {
        writeln!(text, "{l}").unwrap();
    }
    std::fs::write(events.join("events_part_0000.jsonl"), text).unwrap();
}

#[test]
fn golden_fixture_gives_the_hand_computed_gold() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    golden_landing(&landing);
    let data = dir.path().join("data");
    let log = open_log(&data);
    replay(&log, &data, &landing);
    process(&log, &data, FromOffset::Committed);
    let s = compact(&log, &data, &compactor_settings(), false);
    assert_eq!(s.generation, Some(1));
    let lake = data.join("lake");

    // org_daily_usage_by_service: 11 compute + 5 storage + 102 networking + 1 genai.
    let daily = lake_rows(&lake, "gold/org_daily_usage_by_service");
    assert_eq!(daily.len(), 11 + 5 + 100 + 2 + 1);
    let genai_day = find(
        &daily,
        &[
            ("org_id", json!("org_a")),
            ("usage_date", json!("2025-03-01")),
            ("service", json!("genai")),
        ],
    );
    // g1 + g2 + g3: requests 5 + 0 (null) + 7 ("7"); cost 2.0 + 1.5 (g2 is
    // cost_negative); tokens 1000 + 300 (g3 is v1: misplaced); carbon 0.5 + 0.25.
    assert_fields(
        genai_day,
        &[
            ("org_name", json!("Org A")),
            ("industry", json!("Media")),
            ("plan_tier", json!("pro")),
            ("events", json!(3)),
            ("requests", json!(12.0)),
            ("cpu_hours", json!(0.0)),
            ("storage_gb_hours", json!(0.0)),
            ("cost_usd", json!(3.5)),
            ("negative_cost_events", json!(1)),
            ("genai_tokens", json!(1300)),
            ("carbon_kg", json!(0.75)),
        ],
    );
    let compute_day = find(
        &daily,
        &[
            ("org_id", json!("org_a")),
            ("usage_date", json!("2025-03-11")),
            ("service", json!("compute")),
        ],
    );
    assert_fields(
        compute_day,
        &[
            ("events", json!(1)),
            ("cpu_hours", json!(2.0)),
            ("cost_usd", json!(100.0)),
            ("genai_tokens", json!(0)),
            ("carbon_kg", json!(0.0)),
        ],
    );

    // genai_tokens_by_org_date: the one genai day.
    let genai = lake_rows(&lake, "gold/genai_tokens_by_org_date");
    assert_eq!(genai.len(), 1);
    assert_fields(
        &genai[0],
        &[
            ("org_id", json!("org_a")),
            ("usage_date", json!("2025-03-01")),
            ("genai_events", json!(3)),
            ("total_tokens", json!(1300)),
            ("genai_cost_usd", json!(3.5)),
        ],
    );

    // cost_anomaly_mart: one row per method.
    let anomalies = lake_rows(&lake, "gold/cost_anomaly_mart");
    assert_eq!(anomalies.len(), 3, "{anomalies:?}");
    // compute: x = 100 among ten 1.0s. mean = 110/11 = 10; sample variance =
    // (10 x 81 + 8100)/10 = 891; z = 90/sqrt(891) = 3.0151 > 3. median 1, mad 0 (no
    // MAD score). p99 of the 11 daily rows: rank 9.9, 1 + 0.9 x 99 = 90.1; 100 is not
    // above 1.5 x 90.1.
    let z = find(&anomalies, &[("service", json!("compute"))]);
    assert_fields(
        z,
        &[
            ("org_id", json!("org_a")),
            ("usage_date", json!("2025-03-11")),
            ("cost_usd", json!(100.0)),
            ("mean", json!(10.0)),
            ("stddev", json!(891f64.sqrt())),
            ("z_score", json!(90.0 / 891f64.sqrt())),
            ("z_flag", json!(true)),
            ("median", json!(1.0)),
            ("mad", json!(0.0)),
            ("mad_score", Value::Null),
            ("mad_flag", json!(false)),
            ("p99_service", json!(90.1)),
            ("pctl_flag", json!(false)),
            ("anomaly_score", json!(90.0 / 891f64.sqrt())),
            ("methods", json!("z")),
        ],
    );
    // storage: 1, 2, 3, 4, 20. mean 6, variance (25+16+9+4+196)/4 = 62.5, z(20) =
    // 14/7.906 = 1.77. median 3; |x - 3| = 2,1,0,1,17 -> mad 1; mad_score(20) =
    // 0.6745 x 17 = 11.4665. p99: rank 3.96, 4 + 0.96 x 16 = 19.36; 20 < 29.04.
    let mad = find(&anomalies, &[("service", json!("storage"))]);
    assert_fields(
        mad,
        &[
            ("usage_date", json!("2025-03-05")),
            ("cost_usd", json!(20.0)),
            ("mean", json!(6.0)),
            ("stddev", json!(62.5f64.sqrt())),
            ("z_score", json!(14.0 / 62.5f64.sqrt())),
            ("z_flag", json!(false)),
            ("median", json!(3.0)),
            ("mad", json!(1.0)),
            ("mad_score", json!(0.6745 * 17.0)),
            ("mad_flag", json!(true)),
            ("p99_service", json!(19.36)),
            ("pctl_flag", json!(false)),
            ("anomaly_score", json!(0.6745 * 17.0)),
            ("methods", json!("mad")),
        ],
    );
    // networking: 102 daily rows, 101 at 1.0 and one at 10.0: p99 rank 99.99 falls
    // between two 1.0s, so p99 = 1 and 10 > 1.5. org_b's series [1, 10]: mean 5.5,
    // stddev 6.364, z = 0.7071; median 5.5, mad 4.5, mad_score = 0.6745.
    let pctl = find(&anomalies, &[("service", json!("networking"))]);
    assert_fields(
        pctl,
        &[
            ("org_id", json!("org_b")),
            ("usage_date", json!("2025-03-02")),
            ("cost_usd", json!(10.0)),
            ("mean", json!(5.5)),
            ("stddev", json!(40.5f64.sqrt())),
            ("z_score", json!(4.5 / 40.5f64.sqrt())),
            ("z_flag", json!(false)),
            ("median", json!(5.5)),
            ("mad", json!(4.5)),
            ("mad_score", json!(0.6745)),
            ("mad_flag", json!(false)),
            ("p99_service", json!(1.0)),
            ("pctl_flag", json!(true)),
            ("anomaly_score", json!(4.5 / 40.5f64.sqrt())),
            ("methods", json!("pctl")),
        ],
    );

    // revenue_by_org_month.
    let revenue = lake_rows(&lake, "gold/revenue_by_org_month");
    assert_eq!(revenue.len(), 3);
    assert_fields(
        find(&revenue, &[("invoice_id", json!("inv_1"))]),
        &[
            ("org_id", json!("org_a")),
            ("month", json!("2025-03-01")),
            ("currency", json!("USD")),
            ("credits", json!(10.0)),
            ("fx_applied", json!(1.0)),
            ("revenue_usd", json!(90.0)),
            ("taxes_usd", json!(21.0)),
            ("total_usd", json!(111.0)),
            ("sign_mismatch", json!(false)),
            ("fx_overridden", json!(false)),
        ],
    );
    // USD at 0.97: the rate is overridden to 1; empty credits are 0.
    assert_fields(
        find(&revenue, &[("invoice_id", json!("inv_2"))]),
        &[
            ("credits", json!(0.0)),
            ("exchange_rate_to_usd", json!(0.97)),
            ("fx_applied", json!(1.0)),
            ("revenue_usd", json!(200.0)),
            ("taxes_usd", json!(42.0)),
            ("total_usd", json!(242.0)),
            ("fx_overridden", json!(true)),
        ],
    );
    // EUR at 1.1, taxes of the other sign: (50 - 5) x 1.1 = 49.5, -2 x 1.1 = -2.2.
    assert_fields(
        find(&revenue, &[("invoice_id", json!("inv_3"))]),
        &[
            ("org_id", json!("org_b")),
            ("fx_applied", json!(1.1)),
            ("revenue_usd", json!(49.5)),
            ("taxes_usd", json!(-2.2)),
            ("total_usd", json!(47.3)),
            ("sign_mismatch", json!(true)),
            ("fx_overridden", json!(false)),
        ],
    );

    // tickets_by_org_date: CSAT 9 is out of range (not averaged); t2 is open.
    let by_org = lake_rows(&lake, "gold/tickets_by_org_date");
    assert_eq!(by_org.len(), 3);
    assert_fields(
        find(
            &by_org,
            &[("org_id", json!("org_a")), ("severity", json!("high"))],
        ),
        &[
            ("created_date", json!("2025-03-02")),
            ("tickets", json!(2)),
            ("open_tickets", json!(1)),
            ("sla_breached", json!(1)),
            ("sla_breach_rate", json!(0.5)),
            ("csat_avg", json!(3.0)),
            ("csat_responses", json!(2)),
        ],
    );
    assert_fields(
        find(
            &by_org,
            &[("org_id", json!("org_a")), ("severity", json!("critical"))],
        ),
        &[
            ("tickets", json!(1)),
            ("open_tickets", json!(0)),
            ("sla_breached", json!(1)),
            ("sla_breach_rate", json!(1.0)),
            ("csat_avg", Value::Null),
            ("csat_responses", json!(0)),
        ],
    );
    let by_severity = lake_rows(&lake, "gold/tickets_by_severity_date");
    assert_eq!(by_severity.len(), 2);
    assert_fields(
        find(&by_severity, &[("severity", json!("high"))]),
        &[
            ("tickets", json!(3)),
            ("open_tickets", json!(1)),
            ("sla_breached", json!(1)),
            ("sla_breach_rate", json!(1.0 / 3.0)),
            ("csat_avg", json!(3.0)),
            ("csat_responses", json!(2)),
        ],
    );

    // Silver: the one cost_spike (networking p99 of event costs is 1.0; 10 > 1.5).
    let silver = lake_rows(&lake, "silver/usage_events");
    assert_eq!(silver.len(), 121);
    let spikes: Vec<_> = silver
        .iter()
        .filter(|r| r["cost_spike"] == json!(true))
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(spikes, ["nb1"]);
    assert_eq!(find(&silver, &[("event_id", json!("g3"))])["unit"], "count");
    assert_eq!(
        find(&silver, &[("event_id", json!("g3"))])["service"],
        "genai",
        "the service comes back from the Hive path"
    );

    // Accounting: read = silver + quarantine, per source.
    let acc: Value =
        serde_json::from_slice(&std::fs::read(lake.join("gold/_accounting.json")).unwrap())
            .unwrap();
    assert_eq!(
        acc["usage_events"],
        json!({"read": 123, "silver": 121, "quarantine": {"duplicate": 1, "unknown_org": 1}})
    );
    assert_eq!(
        acc["billing_monthly"],
        json!({"read": 3, "silver": 3, "quarantine": {}})
    );
    // Bronze: everything typed except the duplicate (the unknown org is typed).
    assert_eq!(lake_rows(&lake, "bronze/usage_events").len(), 122);
    let q = lake_rows(&lake, "quarantine/usage_events");
    let reasons: Vec<_> = q.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 2);
    assert!(reasons.contains(&"duplicate") && reasons.contains(&"unknown_org"));
}

fn count_true(lake: &Path, table: &str, column: &str) -> usize {
    use arrow_array::cast::AsArray;
    let mut n = 0;
    for f in compactor::table::parquet_files(&lake.join(table)).unwrap() {
        for b in compactor::table::read_parquet(&f, Some(&[column])).unwrap() {
            n += b.column(0).as_boolean().true_count();
        }
    }
    n
}

fn rows_in(lake: &Path, table: &str) -> u64 {
    compactor::table::parquet_files(&lake.join(table))
        .unwrap()
        .iter()
        .map(|f| compactor::table::parquet_rows(f).unwrap())
        .sum()
}

/// The gold row counts the sample data set must give (issue 4).
const SAMPLE_GOLD: [(&str, u64); 6] = [
    ("org_daily_usage_by_service", 11_050),
    ("revenue_by_org_month", 240),
    ("cost_anomaly_mart", 199),
    ("tickets_by_org_date", 984),
    ("tickets_by_severity_date", 364),
    ("genai_tokens_by_org_date", 1_131),
];

#[test]
fn sample_lake_counts_idempotency_reprocessing_and_duckdb_agree() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let log = open_log(data);
    replay(&log, data, &landing());
    process(&log, data, FromOffset::Committed);
    let settings = compactor_settings();
    let first = compact(&log, data, &settings, false);
    assert_eq!(first.generation, Some(1));
    assert_eq!(first.events_in, 43_200);
    let lake = data.join("lake");

    assert_eq!(rows_in(&lake, "silver/usage_events"), 43_163);
    assert_eq!(rows_in(&lake, "quarantine/usage_events"), 37);
    for (flag, n) in [
        ("unit_imputed", 2_038),
        ("cost_negative", 210),
        ("before_resource", 7_362),
        ("cost_spike", 94),
    ] {
        assert_eq!(count_true(&lake, "silver/usage_events", flag), n, "{flag}");
    }
    for (mart, n) in SAMPLE_GOLD {
        assert_eq!(rows_in(&lake, &format!("gold/{mart}")), n, "{mart}");
    }
    let acc: Value =
        serde_json::from_slice(&std::fs::read(lake.join("gold/_accounting.json")).unwrap())
            .unwrap();
    assert_eq!(
        acc["usage_events"],
        json!({"read": 43_200, "silver": 43_163, "quarantine": {"no_measure": 37}})
    );
    assert_eq!(acc.as_object().unwrap().len(), 8);

    // Another engine reads the lake and recomputes every mart from silver.
    if let Some(python) = duckdb_python() {
        let check = duckdb_check(&python, &lake);
        for (mart, n) in SAMPLE_GOLD {
            let m = &check["marts"][mart];
            assert_eq!(m["gold_rows"], json!(n), "{mart}: {m}");
            assert_eq!(m["expected_rows"], json!(n), "{mart}: {m}");
            assert_eq!(m["mismatches"], json!(0), "{mart}: {m}");
        }
        assert_eq!(check["silver"]["events"], json!(43_163));
        assert_eq!(check["silver"]["cost_spike"], json!(94));
        assert_eq!(check["silver"]["cost_spike_expected"], json!(94));
        assert_eq!(check["bronze_events"], json!(43_200));
    }

    // Again on unchanged input: no new generation, not one file touched.
    let gold = gold_files(&lake);
    let target = std::fs::read_link(&lake).unwrap();
    let again = compact(&log, data, &settings, false);
    assert_eq!(again.generation, None);
    assert_eq!(std::fs::read_link(&lake).unwrap(), target);
    assert!(gold_files(&lake) == gold);

    // --reprocess-all: from offset 0 of the raw topics, the same gold, byte for byte.
    let re = compact(&log, data, &settings, true);
    assert_eq!(re.generation, Some(2));
    assert!(gold_files(&lake) == gold, "reprocess-all changed gold");

    // The landing directory again: every gold value unchanged; the copies are
    // accounted for as duplicates.
    replay(&log, data, &landing());
    process(&log, data, FromOffset::Committed);
    let third = compact(&log, data, &settings, false);
    assert_eq!(third.generation, Some(3));
    assert!(
        gold_marts(&lake) == gold_marts_of(&gold),
        "a second replay changed gold"
    );
    let acc: Value =
        serde_json::from_slice(&std::fs::read(lake.join("gold/_accounting.json")).unwrap())
            .unwrap();
    assert_eq!(
        acc["usage_events"],
        json!({"read": 86_400, "silver": 43_163,
               "quarantine": {"no_measure": 74, "duplicate": 43_163}})
    );
}

fn gold_marts_of(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The sample split into `n` landing directories: the CSVs in the first, the event
/// files dealt out in turn.
fn split_landing(dir: &Path, n: usize) -> Vec<std::path::PathBuf> {
    let parts: Vec<_> = (0..n).map(|i| dir.join(format!("part{i}"))).collect();
    for d in &parts {
        std::fs::create_dir_all(d.join("usage_events_stream")).unwrap();
    }
    for e in std::fs::read_dir(landing()).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), parts[0].join(e.file_name())).unwrap();
        }
    }
    let mut files: Vec<_> = std::fs::read_dir(landing().join("usage_events_stream"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for (i, f) in files.iter().enumerate() {
        let to = parts[i % n].join("usage_events_stream");
        std::fs::copy(f, to.join(f.file_name().unwrap())).unwrap();
    }
    parts
}

/// The sample split in two landing directories (the CSVs and half the event files,
/// then the other half), compacted after each with merges forced on every run: the
/// same gold as one `--reprocess-all` over everything.
#[test]
fn incremental_runs_with_merges_equal_reprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let parts = split_landing(dir.path(), 2);
    let (a, b) = (&parts[0], &parts[1]);
    let data = dir.path().join("data");
    let log = open_log(&data);
    let settings = compactor::Settings {
        max_files_per_partition: 1,
        flush_rows: 20_000,
        ..compactor_settings()
    };
    replay(&log, &data, a);
    process(&log, &data, FromOffset::Committed);
    let s1 = compact(&log, &data, &settings, false);
    replay(&log, &data, b);
    process(&log, &data, FromOffset::Committed);
    let s2 = compact(&log, &data, &settings, false);
    assert!(s1.events_in > 0 && s2.events_in > 0);
    assert_eq!(s1.events_in + s2.events_in, 43_200);
    assert!(s2.files_merged > 0, "no merge happened: {s2:?}");
    let lake = data.join("lake");
    // No partition directory holds more than one file after the merges.
    let mut per_dir: BTreeMap<_, usize> = BTreeMap::new();
    for f in compactor::table::parquet_files(&lake.join("silver")).unwrap() {
        *per_dir.entry(f.parent().unwrap().to_owned()).or_default() += 1;
    }
    assert!(per_dir.values().all(|n| *n == 1), "{per_dir:?}");
    for (mart, n) in SAMPLE_GOLD {
        assert_eq!(rows_in(&lake, &format!("gold/{mart}")), n, "{mart}");
    }
    assert_eq!(count_true(&lake, "silver/usage_events", "cost_spike"), 94);
    let incremental = gold_files(&lake);
    compact(&log, &data, &settings, true);
    assert!(
        gold_files(&lake) == incremental,
        "reprocess-all differs from the incremental runs"
    );
    assert_eq!(count_true(&lake, "silver/usage_events", "cost_spike"), 94);
}

fn run_compactor(data: &Path) -> Command {
    pipeline_command("compactor", data)
}

/// What a reader of the lake sees must always be complete: the manifest parses, every
/// Parquet file reads, and the accounting adds up against the files.
fn assert_lake_readable(lake: &Path) {
    if std::fs::symlink_metadata(lake).is_err() {
        return; // no generation committed yet
    }
    compactor::lake::read_manifest(lake).unwrap();
    for f in compactor::table::parquet_files(lake).unwrap() {
        compactor::table::read_parquet(&f, None)
            .unwrap_or_else(|e| panic!("{}: {e:#}", f.display()));
    }
    let acc: BTreeMap<String, compactor::gold::SourceAccount> =
        serde_json::from_slice(&std::fs::read(lake.join("gold/_accounting.json")).unwrap())
            .unwrap();
    for (source, a) in acc {
        assert_eq!(
            rows_in(lake, &format!("silver/{source}")),
            a.silver,
            "{source}"
        );
        assert_eq!(a.read, a.silver + a.quarantine.values().sum::<u64>());
    }
}

/// Kills `compactor` runs at random moments: the first half incremental runs, each
/// over a new part of the sample (so every run has work: new files, links of the
/// previous generation, merges, `cost_spike` corrections), the second half
/// `--reprocess-all` runs. After every kill the lake is complete and consistent; at
/// the end, gold equals an uninterrupted run's.
#[test]
fn sigkill_at_random_moments_leaves_a_readable_lake_and_the_same_gold() {
    let dir = tempfile::tempdir().unwrap();
    let kills: usize = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .max(2);
    let incremental = kills / 2;
    let parts = split_landing(dir.path(), incremental);

    // The uninterrupted run, for reference: the same parts replayed in the same order
    // (so the log is the same, record for record), compacted once at the end.
    let clean = dir.path().join("clean");
    {
        let log = open_log(&clean);
        for part in &parts {
            replay(&log, &clean, part);
            process(&log, &clean, FromOffset::Committed);
        }
        compact(&log, &clean, &compactor_settings(), false);
    }
    let reference = gold_marts(&clean.join("lake"));

    let data = dir.path().join("data");
    // Merges on every run, so kills land in them too.
    let config = dir.path().join("merge-often.toml");
    std::fs::write(&config, "[compactor]\nmax_files_per_partition = 2\n").unwrap();
    let lake = data.join("lake");
    let mut mid_run = 0;
    for (i, d) in delays(kills, 11, 10, 1_500).into_iter().enumerate() {
        let args: &[&str] = if i < incremental {
            let log = open_log(&data);
            replay(&log, &data, &parts[i]);
            process(&log, &data, FromOffset::Committed);
            &["--once"]
        } else {
            &["--once", "--reprocess-all"]
        };
        let before = compactor::Lake::new(&lake).current().unwrap();
        let mut child = run_compactor(&data)
            .arg("--config")
            .arg(&config)
            .args(args)
            .spawn()
            .unwrap();
        std::thread::sleep(d);
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap();
        }
        child.wait().unwrap();
        assert_lake_readable(&lake);
        let after = compactor::Lake::new(&lake).current().unwrap();
        if !finished && before == after {
            mid_run += 1;
        }
    }
    eprintln!("{mid_run} of {kills} kills landed before their run switched generations");
    assert!(mid_run >= kills / 2, "only {mid_run} kills landed mid-run");
    // The next run completes the work.
    let mut next = run_compactor(&data);
    next.arg("--config").arg(&config).arg("--once");
    run_ok(next);
    assert_lake_readable(&lake);
    let gold = gold_marts(&lake);
    let differing: Vec<_> = reference
        .keys()
        .chain(gold.keys())
        .filter(|k| reference.get(*k) != gold.get(*k))
        .collect();
    if !differing.is_empty() && std::env::var_os("KEEP_CRASH_DIR").is_some() {
        eprintln!("kept {}", dir.keep().display());
    }
    assert!(
        differing.is_empty(),
        "gold differs from the uninterrupted run's: {differing:?}"
    );
    assert_eq!(count_true(&lake, "silver/usage_events", "cost_spike"), 94);
    // Unfinished generations were cleaned up: the current one and the one before.
    let gens = std::fs::read_dir(data.join("lake.gen"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert!(gens <= 2, "{gens} generations left behind");
}

/// `--every`: a running compactor picks up what the processor commits later.
#[test]
fn every_interval_compacts_new_input_as_it_comes() {
    let dir = tempfile::tempdir().unwrap();
    let parts = split_landing(dir.path(), 2);
    let data = dir.path().join("data");
    let events_read = |data: &Path| -> u64 {
        let acc = data.join("lake/gold/_accounting.json");
        std::fs::read(acc)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["usage_events"]["read"].as_u64())
            .unwrap_or(0)
    };
    let wait_for = |want: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while events_read(&data) != want {
            assert!(
                std::time::Instant::now() < deadline,
                "the lake never reached {want} events read (has {})",
                events_read(&data)
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let log = open_log(&data);
    replay(&log, &data, &parts[0]);
    process(&log, &data, FromOffset::Committed);
    let first: u64 = (0..4)
        .map(|p| log.end_offset("raw.usage_events", p).unwrap())
        .sum();
    /// Ends the compactor also when an assertion fails first.
    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Running(
        run_compactor(&data)
            .args(["--every", "200ms"])
            .spawn()
            .unwrap(),
    );
    wait_for(first);
    replay(&log, &data, &parts[1]);
    process(&log, &data, FromOffset::Committed);
    wait_for(43_200);
    drop(child);
    assert_eq!(rows_in(&data.join("lake"), "silver/usage_events"), 43_163);
}

/// A Parquet file deleted and another cut short from outside: the next run notices
/// (the manifest lists every file with its size) and rebuilds the lake from the log,
/// to the same tables and gold as before.
#[test]
fn a_damaged_lake_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = open_log(&data);
    replay(&log, &data, &landing());
    process(&log, &data, FromOffset::Committed);
    drop(log);
    let mut once = run_compactor(&data);
    once.arg("--once");
    run_ok(once);
    let lake = data.join("lake");
    let (tables, gold) = (lake_tables(&lake), gold_marts(&lake));

    let find = |under: &str| {
        let mut stack = vec![lake.join(under)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "parquet") {
                    return p;
                }
            }
        }
        panic!("no parquet file under {under}");
    };
    let deleted = find("silver/usage_events");
    std::fs::remove_file(&deleted).unwrap();
    let cut = find("gold/org_daily_usage_by_service");
    let len = std::fs::metadata(&cut).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert_eq!(damaged(&lake).len(), 2);

    let out = run_compactor(&data).arg("--once").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let name = deleted.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        stderr.contains("missing or damaged") && stderr.contains(&name),
        "{stderr}"
    );
    assert!(damaged(&lake).is_empty());
    assert!(lake_tables(&lake) == tables, "the rebuilt lake differs");
    assert!(gold_marts(&lake) == gold, "the rebuilt gold differs");
}

fn damaged(lake: &Path) -> Vec<String> {
    let lake = compactor::lake::Lake::new(lake);
    lake.damaged(&lake.manifest().unwrap()).unwrap()
}
