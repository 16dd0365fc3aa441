//! The dashboard end to end on the sample, with the real binaries: `producer
//! replay`, `processor`, `compactor --once` and `serving publish` build the serving
//! store; `serving serve` answers over HTTP. Every API endpoint returns exactly what
//! `serving query --format json` prints; every bad parameter is a 400; a running
//! server sees what is published after it started; headless Chromium renders the
//! five charts with the totals of the API's rows.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::*;
use serde_json::Value;
use serving::ServingStore;

/// A `serving serve` child, killed when dropped.
struct Served {
    child: Child,
    /// `127.0.0.1:<port>`
    addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sample through the real binaries, then `serving serve` on a free port.
fn pipeline_and_server(data: &Path) -> Served {
    let mut replay = pipeline_command("producer", data);
    replay.arg("replay").arg(landing());
    run_ok(replay);
    catch_up(data);

    let mut serve = pipeline_command("serving", data);
    serve
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped());
    let mut child = serve.spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // "dashboard: http://127.0.0.1:PORT/"
    let addr = first
        .trim()
        .strip_prefix("dashboard: http://")
        .and_then(|s| s.strip_suffix('/'))
        .unwrap_or_else(|| panic!("serving serve printed {first:?}"))
        .to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    Served { child, addr }
}

/// A response: status and body (chunked bodies joined).
fn request(addr: &str, method: &str, target: &str) -> (u16, String) {
    let text = raw_request(addr, method, target, "");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    if !chunked {
        return (status, body.to_owned());
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return (status, out);
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

fn get(addr: &str, target: &str) -> (u16, String) {
    request(addr, "GET", target)
}

/// `serving query ... --format json`, as the API's one JSON array.
fn cli_json(data: &Path, args: &[&str]) -> String {
    let mut c = pipeline_command("serving", data);
    c.arg("query").args(args).args(["--format", "json"]);
    let lines: Vec<String> = run_ok(c).lines().map(str::to_owned).collect();
    format!("[{}]", lines.join(","))
}

fn rows(body: &str) -> Vec<serde_json::Map<String, Value>> {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn sum(rows: &[serde_json::Map<String, Value>], col: &str) -> f64 {
    rows.iter().map(|r| r[col].as_f64().unwrap()).sum()
}

/// The org the checks look at (one with GenAI usage, so that every chart has
/// data), and its last 30 days with data.
fn an_org(data: &Path, addr: &str) -> (String, String, String) {
    let genai = lake_rows(&data.join("lake"), "gold/genai_tokens_by_org_date");
    let org = genai[0]["org_id"].as_str().unwrap().to_owned();
    let (status, body) = get(addr, "/api/orgs");
    assert_eq!(status, 200, "{body}");
    let orgs = rows(&body);
    let me = orgs.iter().find(|o| o["org_id"] == org.as_str()).unwrap();
    let to = me["last_date"].as_str().unwrap().to_owned();
    let from = (chrono::NaiveDate::parse_from_str(&to, "%Y-%m-%d").unwrap()
        - chrono::Duration::days(29))
    .to_string();
    (org, from, to)
}

fn check_api_equals_cli(data: &Path, addr: &str, org: &str, from: &str, to: &str) {
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("q1", vec![("org", org)]),
        ("q1", vec![("org", org), ("from", from), ("to", to)]),
        ("q2", vec![("org", org)]),
        ("q2", vec![("org", org), ("days", "7"), ("top", "2")]),
        ("q3", vec![]),
        ("q3", vec![("days", "10")]),
        ("q4", vec![]),
        ("q4", vec![("org", org)]),
        ("q5", vec![("org", org)]),
        ("tickets", vec![("org", org)]),
        ("tickets", vec![("org", org), ("from", from), ("to", to)]),
        ("q5", vec![("org", org), ("from", from), ("to", to)]),
    ];
    for (q, params) in cases {
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let target = format!("/api/{q}?{}", query.join("&"));
        let (status, body) = get(addr, &target);
        assert_eq!(status, 200, "{target}: {body}");
        let mut args = vec![q.to_owned()];
        for (k, v) in &params {
            args.push(format!("--{k}"));
            args.push((*v).to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let cli = cli_json(data, &args);
        assert_eq!(body, cli, "{target} differs from serving query {args:?}");
        assert!(!rows(&body).is_empty(), "{target} has no rows");
    }

    // The orgs and their date ranges, against the gold daily mart read directly.
    let daily = lake_rows(&data.join("lake"), "gold/org_daily_usage_by_service");
    let mut want: std::collections::BTreeMap<String, (String, String)> = Default::default();
    for r in &daily {
        let (o, d) = (
            r["org_id"].as_str().unwrap(),
            r["usage_date"].as_str().unwrap(),
        );
        let e = want
            .entry(o.to_owned())
            .or_insert_with(|| (d.to_owned(), d.to_owned()));
        e.0 = e.0.clone().min(d.to_owned());
        e.1 = e.1.clone().max(d.to_owned());
    }
    let (_, body) = get(addr, "/api/orgs");
    let got: std::collections::BTreeMap<String, (String, String)> = rows(&body)
        .iter()
        .map(|o| {
            let t = |c: &str| o[c].as_str().unwrap().to_owned();
            (t("org_id"), (t("first_date"), t("last_date")))
        })
        .collect();
    assert_eq!(got, want);

    let (status, body) = get(addr, "/healthz");
    assert_eq!(status, 200);
    let hw = daily
        .iter()
        .map(|r| r["usage_date"].as_str().unwrap())
        .max()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["batch_high_water"],
        hw
    );
}

fn check_bad_input(addr: &str, org: &str) {
    let long_org = "o".repeat(200);
    let bad: Vec<String> = vec![
        "/api/q1".into(), // q1 needs an org
        "/api/q2".into(),
        "/api/q5".into(),
        format!("/api/q1?org={org}&from=2025-13-01"),
        format!("/api/q1?org={org}&from=yesterday"),
        format!("/api/q1?org={org}&to=2025-02-30"),
        format!("/api/q1?org={org}&from=2025-08-02&to=2025-08-01"),
        format!("/api/q5?org={org}&from=%27%20OR%201%3D1%20--"),
        "/api/q1?org=%27%20OR%201%3D1%20--".into(),
        "/api/q1?org=a%00b".into(),
        "/api/q1?org=%3Cscript%3E".into(),
        format!("/api/q1?org={long_org}"),
        "/api/q1?org=%zz".into(),
        "/api/q1?org=%ff".into(),
        format!("/api/q2?org={org}&days=0"),
        format!("/api/q2?org={org}&days=-3"),
        format!("/api/q2?org={org}&days=99999999999999999999999"),
        format!("/api/q2?org={org}&days=1.5"),
        format!("/api/q2?org={org}&top=0"),
        format!("/api/q2?org={org}&top=x"),
        format!("/api/q2?org={org}&top=18446744073709551616"),
        "/api/q3?days=100000".into(),
        format!("/api/q4?org={org}&org={org}"),
        format!("/api/q4?org={org}&limit=5"),
        "/api/orgs?x=1".into(),
        "/?org=%3Cscript%3E".into(),
        "/?days=3".into(),
        "/panels?from=2025-99-01".into(),
    ];
    for target in &bad {
        let (status, body) = get(addr, target);
        assert_eq!(status, 400, "{target}: {body}");
        assert_eq!(body.trim_end().lines().count(), 1, "{target}: {body}");
        if target.starts_with("/api/") {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
        }
    }
    assert_eq!(get(addr, "/api/q9").0, 404);
    assert_eq!(get(addr, "/nowhere").0, 404);
    assert_eq!(request(addr, "POST", "/api/q3").0, 405);
    assert_eq!(request(addr, "DELETE", "/").0, 405);
    let (status, _) = get(addr, &format!("/api/q3?days={}", "9".repeat(5000)));
    assert!(matches!(status, 400 | 414), "{status}");
    // Still answering.
    assert_eq!(get(addr, "/healthz").0, 200);
}

/// A running server sees rows published after it started: a day past the batch
/// high-water mark, written to the real-time view, shows in q1 within seconds.
fn check_live(data: &Path, addr: &str, org: &str) {
    let (_, health) = get(addr, "/healthz");
    let hw = serde_json::from_str::<Value>(&health).unwrap()["batch_high_water"]
        .as_str()
        .unwrap()
        .to_owned();
    let next = (chrono::NaiveDate::parse_from_str(&hw, "%Y-%m-%d").unwrap()
        + chrono::Duration::days(1))
    .to_string();
    let row: serving::JsonRow = serde_json::from_value(serde_json::json!({
        "org_id": org, "usage_date": next, "service": "compute", "org_name": "x",
        "industry": "x", "plan_tier": "x", "events": 1, "requests": 7.0, "cpu_hours": 0.0,
        "storage_gb_hours": 0.0, "cost_usd": 12.5, "negative_cost_events": 0,
        "genai_tokens": 0, "carbon_kg": 0.0
    }))
    .unwrap();
    {
        // The writer, beside the running server (which only reads).
        let writer = serving::embedded::EmbeddedStore::open(&data.join("serving")).unwrap();
        let row = serving::row::row_from_json(&serving::SPEED_DAILY, &row).unwrap();
        writer.upsert(&serving::SPEED_DAILY, &[row]).unwrap();
    }
    let target = format!("/api/q1?org={org}&from={next}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = get(addr, &target);
        assert_eq!(status, 200, "{body}");
        let got = rows(&body);
        if !got.is_empty() {
            assert_eq!(got.len(), 1, "{body}");
            assert_eq!(got[0]["cost_usd"], 12.5);
            break;
        }
        assert!(Instant::now() < deadline, "the new day never showed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, panels) = get(addr, &format!("/panels?org={org}&from={next}&to={next}"));
    assert!(panels.contains(r#"data-metric="cost_usd" data-value="12.5""#));
}

fn chromium() -> Option<PathBuf> {
    let candidates = [
        std::env::var("PIPELINE_TEST_CHROMIUM").unwrap_or_default(),
        "/usr/bin/chromium".into(),
        "/usr/bin/chromium-browser".into(),
    ];
    let found = candidates
        .iter()
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have Chromium for the dashboard test (.ci/run installs Debian's chromium)"
        );
        eprintln!("SKIPPED: the browser test (no Chromium; apt-get install chromium)");
    }
    found
}

/// Chromium, headless, on `url`: its stdout (the DOM with `--dump-dom`).
fn headless(chromium: &Path, profile: &Path, extra: &[String], url: &str) -> String {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        stdout.read_to_string(&mut out).unwrap();
        out
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

/// The `data-value` of each labelled total in the chart of `query`.
fn totals(dom: &str, query: &str) -> Vec<(String, f64)> {
    let start = dom
        .find(&format!(r#"data-query="{query}""#))
        .unwrap_or_else(|| panic!("no {query} chart in the rendered page"));
    let svg = &dom[start..start + dom[start..].find("</svg>").unwrap()];
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find(r#"data-metric=""#) {
        rest = &rest[i + 13..];
        let metric = rest[..rest.find('"').unwrap()].to_owned();
        let j = rest.find(r#"data-value=""#).unwrap() + 12;
        let value = rest[j..j + rest[j..].find('"').unwrap()].parse().unwrap();
        out.push((metric, value));
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn check_browser(data: &Path, addr: &str, org: &str, from: &str, to: &str) {
    let Some(chromium) = chromium() else { return };
    let url = format!("http://{addr}/?org={org}&from={from}&to={to}");
    let profile = data.join("chromium-profile");
    let dom = headless(&chromium, &profile, &["--dump-dom".into()], &url);
    assert!(
        dom.contains("<main id=\"charts\""),
        "not the dashboard: {dom}"
    );

    let api = |q: &str, params: &str| rows(&get(addr, &format!("/api/{q}?{params}")).1);
    let range = format!("org={org}&from={from}&to={to}");
    let q1 = api("q1", &range);
    let q2 = api("q2", &format!("org={org}"));
    let q3 = api("q3", "");
    let q4 = api("q4", &format!("org={org}"));
    let q5 = api("q5", &range);
    let (tickets, breached) = (sum(&q3, "tickets"), sum(&q3, "sla_breached"));
    let want: Vec<(&str, Vec<(&str, f64)>)> = vec![
        (
            "q1",
            vec![
                ("cost_usd", sum(&q1, "cost_usd")),
                ("requests", sum(&q1, "requests")),
            ],
        ),
        ("q2", vec![("cost_usd", sum(&q2, "cost_usd"))]),
        (
            "q3",
            vec![
                ("tickets", tickets),
                ("sla_breached", breached),
                ("sla_breach_rate", breached / tickets),
            ],
        ),
        (
            "q4",
            vec![
                ("revenue_usd", sum(&q4, "revenue_usd")),
                ("taxes_usd", sum(&q4, "taxes_usd")),
                ("total_usd", sum(&q4, "total_usd")),
            ],
        ),
        (
            "q5",
            vec![
                ("total_tokens", sum(&q5, "total_tokens")),
                ("genai_cost_usd", sum(&q5, "genai_cost_usd")),
            ],
        ),
    ];
    for (q, expected) in want {
        let got = totals(&dom, q);
        assert_eq!(got.len(), expected.len(), "{q}: {got:?}");
        for ((gm, gv), (wm, wv)) in got.iter().zip(&expected) {
            assert_eq!(gm, wm, "{q}");
            assert!(
                close(*gv, *wv),
                "{q} {gm}: the page shows {gv}, the API's rows sum to {wv}"
            );
        }
        // (The sample's recent critical tickets breached no SLA: only the first
        // total of each chart must be non-zero.)
        assert!(
            expected[0].1 > 0.0,
            "{q}: the sample should give this chart data: {expected:?}"
        );
    }
    // The org's tickets panel: its totals are the API's sums (the org may have had
    // no tickets in these days: then zeros).
    let tickets = api("tickets", &range);
    let got = totals(&dom, "tickets");
    let want = [
        ("tickets", sum(&tickets, "tickets")),
        ("open_tickets", sum(&tickets, "open_tickets")),
        ("sla_breached", sum(&tickets, "sla_breached")),
    ];
    assert_eq!(got.len(), want.len(), "tickets: {got:?}");
    for ((gm, gv), (wm, wv)) in got.iter().zip(&want) {
        assert_eq!(gm, wm);
        assert!(
            close(*gv, *wv),
            "tickets {gm}: the page shows {gv}, the API {wv}"
        );
    }
    // One bar group per day of the range on q1, with or without rows (a continuous
    // axis), and a bar per service of q2.
    let day = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    let range_days = (day(to) - day(from)).num_days() + 1;
    assert!(dom.contains(&format!(
        r#"data-query="q1" data-categories="{range_days}""#
    )));
    assert!(dom.contains(&format!(
        r#"data-query="q2" data-categories="{}""#,
        q2.len()
    )));

    // q6 on the page: a mark on q1's chart and a row of the list per anomaly of the
    // selection, as many as the API gives. The selected org, and the org with the
    // most anomalies over the days it has them.
    let anomalies_on = |dom: &str| {
        (
            dom.matches(r#"<path class="anomaly""#).count(),
            dom.matches(r#"<tr class="anomaly">"#).count(),
        )
    };
    let q6 = api("q6", &range);
    assert_eq!(anomalies_on(&dom), (q6.len(), q6.len()), "q6 for {org}");
    let all = api("q6", "");
    let mut per_org: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for r in &all {
        per_org
            .entry(r["org_id"].as_str().unwrap())
            .or_default()
            .push(r["usage_date"].as_str().unwrap());
    }
    let (busiest, days) = per_org.iter().max_by_key(|(_, d)| d.len()).unwrap();
    let (first, last) = (days.iter().min().unwrap(), days.iter().max().unwrap());
    let page = headless(
        &chromium,
        &profile,
        &["--dump-dom".into()],
        &format!("http://{addr}/?org={busiest}&from={first}&to={last}"),
    );
    let marked = api("q6", &format!("org={busiest}&from={first}&to={last}"));
    assert!(marked.len() >= 2, "{busiest}: {marked:?}");
    assert_eq!(
        anomalies_on(&page),
        (marked.len(), marked.len()),
        "q6 for {busiest}"
    );
    for r in &marked {
        let key = format!(
            r#"data-key="{}/{}""#,
            r["usage_date"].as_str().unwrap(),
            r["service"].as_str().unwrap()
        );
        assert!(page.contains(&key), "no mark {key}");
    }

    // The screenshot, kept as a CI artifact.
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &chromium,
        &profile,
        &[
            "--window-size=1040,2400".into(),
            format!("--screenshot={}", shot.display()),
        ],
        &url,
    );
    assert!(
        std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0) > 10_000,
        "no screenshot at {}",
        shot.display()
    );
    eprintln!("dashboard screenshot: {}", shot.display());
}

/// q6 through the CLI and the API equals DuckDB's cost_anomaly_mart, computed from
/// silver with SQL of its own: for all orgs, for three orgs, and over a date range.
fn check_anomalies(data: &Path, addr: &str) {
    let Some(python) = duckdb_python() else {
        return;
    };
    let expected: Vec<serde_json::Map<String, Value>> =
        serde_json::from_value(duckdb_lake(&python, &data.join("lake"), &["anomalies"])).unwrap();
    assert!(
        expected.len() > 10,
        "the sample has anomalies: {}",
        expected.len()
    );
    let same = |got: &[serde_json::Map<String, Value>],
                want: &[&serde_json::Map<String, Value>],
                what: &str| {
        assert_eq!(got.len(), want.len(), "{what}: rows");
        for (g, w) in got.iter().zip(want) {
            for c in ["org_id", "usage_date", "service", "methods"] {
                assert_eq!(g[c], w[c], "{what}: {c} of {g:?} vs {w:?}");
            }
            for c in [
                "cost_usd",
                "anomaly_score",
                "z_score",
                "mad_score",
                "p99_service",
            ] {
                match (g[c].as_f64(), w[c].as_f64()) {
                    (Some(a), Some(b)) => assert!(
                        (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                        "{what}: {c} {a} vs {b}"
                    ),
                    (a, b) => assert_eq!(a, b, "{what}: {c} of {g:?}"),
                }
            }
        }
    };
    let all: Vec<&serde_json::Map<String, Value>> = expected.iter().collect();
    same(&rows(&cli_json(data, &["q6"])), &all, "q6, all orgs (CLI)");
    let (status, body) = get(addr, "/api/q6");
    assert_eq!(status, 200, "{body}");
    same(&rows(&body), &all, "q6, all orgs (API)");
    // Three orgs with anomalies.
    let mut orgs: Vec<&str> = expected
        .iter()
        .map(|r| r["org_id"].as_str().unwrap())
        .collect();
    orgs.sort();
    orgs.dedup();
    for org in orgs.iter().take(3) {
        let want: Vec<&serde_json::Map<String, Value>> =
            expected.iter().filter(|r| r["org_id"] == *org).collect();
        same(
            &rows(&cli_json(data, &["q6", "--org", org])),
            &want,
            &format!("q6 {org} (CLI)"),
        );
        let (status, body) = get(addr, &format!("/api/q6?org={org}"));
        assert_eq!(status, 200, "{body}");
        same(&rows(&body), &want, &format!("q6 {org} (API)"));
    }
    // A date range across a month's end, for all orgs.
    let (from, to) = ("2025-07-25", "2025-08-10");
    let want: Vec<&serde_json::Map<String, Value>> = expected
        .iter()
        .filter(|r| (from..=to).contains(&r["usage_date"].as_str().unwrap()))
        .collect();
    same(
        &rows(&cli_json(data, &["q6", "--from", from, "--to", to])),
        &want,
        "q6 over a range (CLI)",
    );
    let (status, body) = get(addr, &format!("/api/q6?from={from}&to={to}"));
    assert_eq!(status, 200, "{body}");
    same(&rows(&body), &want, "q6 over a range (API)");
}

#[test]
fn the_dashboard_and_its_api_on_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = pipeline_and_server(&data);
    let (org, from, to) = an_org(&data, &served.addr);
    check_api_equals_cli(&data, &served.addr, &org, &from, &to);
    check_anomalies(&data, &served.addr);
    check_bad_input(&served.addr, &org);
    check_browser(&data, &served.addr, &org, &from, &to);
    // Last: it adds a real-time day the other checks do not expect.
    check_live(&data, &served.addr, &org);
}

/// A request with extra header lines (each ending in CRLF): the whole response.
fn raw_request(addr: &str, method: &str, target: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    String::from_utf8(raw).unwrap()
}

/// A GET with extra header lines: the status code and the whole response.
fn request_with(addr: &str, target: &str, headers: &str) -> (u16, String) {
    let text = raw_request(addr, "GET", target, headers);
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text)
}

/// SPEC section 10: off loopback the server refuses to start without a token; with
/// one, every route but `/healthz` needs it (a bearer header, or the cookie a page
/// opened with `?token=` sets), and the token never reaches the log.
#[test]
fn off_loopback_the_dashboard_needs_a_token_and_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let out = pipeline_command("serving", &data)
        .args(["serve", "--addr", "0.0.0.0:0"])
        .env_remove("PIPELINE_DASHBOARD_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success(), "served off loopback without a token");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("refusing to serve on 0.0.0.0:0 without a token"),
        "{err}"
    );

    let token = "t0ken-Zq9-s3cret";
    let log = dir.path().join("serve.log");
    let mut serve = pipeline_command("serving", &data);
    serve
        .args(["serve", "--addr", "0.0.0.0:0"])
        .env("PIPELINE_DASHBOARD_TOKEN", token)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let mut child = serve.spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port = first
        .trim()
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let served = Served {
        child,
        addr: format!("127.0.0.1:{port}"),
    };
    let addr = &served.addr;
    assert_eq!(request_with(addr, "/healthz", "").0, 200);
    for target in ["/", "/api/orgs", "/api/q3", "/dashboard.js"] {
        let (status, text) = request_with(addr, target, "");
        assert_eq!(status, 401, "{target}: {text}");
        let wrong = request_with(addr, target, "Authorization: Bearer t0ken-Zq9-s3creT\r\n");
        assert_eq!(wrong.0, 401, "{target} with a wrong token");
        let right = request_with(addr, target, &format!("Authorization: Bearer {token}\r\n"));
        assert_ne!(right.0, 401, "{target} with the token: {}", right.1);
        let cookie = request_with(addr, target, &format!("Cookie: pipeline_token={token}\r\n"));
        assert_eq!(cookie.0, right.0, "{target} with the cookie");
    }
    let (status, head) = request_with(addr, &format!("/?token={token}&org=a"), "");
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("Location: /?org=a"), "{head}");
    assert!(
        head.contains(&format!(
            "Set-Cookie: pipeline_token={token}; Path=/; HttpOnly; SameSite=Strict"
        )),
        "{head}"
    );
    assert_eq!(
        request_with(addr, &format!("/api/q3?token={token}"), "").0,
        401
    );
    drop(served);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("status=401"),
        "requests are logged at debug: {logged}"
    );
    assert!(
        !logged.contains(token),
        "the token reached the log: {logged}"
    );
}
