//! `producer generate`: a landing directory of the sample's shape, of any size.
//!
//! Deterministic for a seed (one SplitMix64 stream, fixed iteration order). Streams:
//! events are written as they are drawn, to a fixed number of open files, so memory
//! does not grow with the event count. Every defect class of SPEC section 4 appears
//! in small numbers, and so do the tricky-but-valid forms (offsets, fractional
//! seconds, numeric strings, CRLF line ends, quoted CSV fields).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate};
use schemas::Source;
use schemas::domain::{
    CAMPAIGNS, CHANNELS, CURRENCIES, INDUSTRIES, LIFECYCLE_STAGES, MARKETING_SOURCES, PLAN_TIERS,
    REGIONS, RESOURCE_STATES, ROLES, SERVICES, SEVERITIES, TICKET_CATEGORIES,
};

use crate::error::{Error, IoContext, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSpec {
    pub orgs: u32,
    pub days: u32,
    pub events_per_day: u64,
    pub seed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenSummary {
    pub events: u64,
    pub event_files: u32,
    pub master_rows: u64,
}

/// SplitMix64: tiny, fast, and the same on every platform and version.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn id(&mut self, prefix: &str, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut s = String::with_capacity(prefix.len() + len);
        s.push_str(prefix);
        for _ in 0..len {
            s.push(ALPHABET[self.below(36) as usize] as char);
        }
        s
    }
}

/// SplitMix64's finalizer: a bijection on u64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A unique event id for the n-th event (a bijection of n, so never a collision).
fn event_id(seed: u64, n: u64) -> String {
    let mut x = mix(n ^ mix(seed));
    let mut digits = [0u8; 13];
    for d in digits.iter_mut().rev() {
        *d = b"0123456789abcdefghijklmnopqrstuvwxyz"[(x % 36) as usize];
        x /= 36;
    }
    format!("evt_{}", String::from_utf8_lossy(&digits))
}

const START: NaiveDate = match NaiveDate::from_ymd_opt(2025, 7, 1) {
    Some(d) => d,
    None => unreachable!(),
};

struct GenOrg {
    id: String,
    resources: Vec<GenResource>,
}

struct GenResource {
    id: String,
    service: &'static str,
    region: &'static str,
}

/// A CSV file written under a temporary name and renamed into place when complete,
/// so that a `--follow` replay never reads half of it.
struct CsvOut {
    tmp: PathBuf,
    path: PathBuf,
    writer: csv::Writer<BufWriter<File>>,
    rows: u64,
}

impl CsvOut {
    fn create(dir: &Path, source: Source) -> Result<CsvOut> {
        let path = dir.join(format!("{}.csv", source.name()));
        let tmp = dir.join(format!(".{}.csv.tmp", source.name()));
        let file = File::create(&tmp).io("create", &tmp)?;
        let mut writer = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(BufWriter::new(file));
        writer
            .write_record(source.columns())
            .map_err(|e| Error::Usage(format!("{}: {e}", tmp.display())))?;
        Ok(CsvOut {
            tmp,
            path,
            writer,
            rows: 0,
        })
    }

    fn row(&mut self, fields: &[String]) -> Result<()> {
        self.rows += 1;
        self.writer
            .write_record(fields)
            .map_err(|e| Error::Usage(format!("{}: {e}", self.tmp.display())))
    }

    fn finish(self) -> Result<u64> {
        let inner = self
            .writer
            .into_inner()
            .map_err(|e| Error::Usage(format!("{}: {e}", self.tmp.display())))?;
        inner
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .io("write", &self.tmp)?;
        std::fs::rename(&self.tmp, &self.path).io("rename", &self.path)?;
        Ok(self.rows)
    }
}

fn s(x: impl ToString) -> String {
    x.to_string()
}

fn bool_text(b: bool) -> String {
    if b { "True".into() } else { "False".into() }
}

/// Numbers the way the sample writes them: integers as `12.0`.
fn num(x: f64, decimals: usize) -> String {
    let t = format!("{x:.decimals$}");
    if t.contains('.') { t } else { format!("{t}.0") }
}

fn date_in(rng: &mut Rng, from: NaiveDate, days: i64) -> NaiveDate {
    from + Duration::days(rng.below(days.max(1) as u64) as i64)
}

/// Writes the landing directory. `out` must not exist or be empty.
pub fn generate(out: &Path, spec: &GenSpec) -> Result<GenSummary> {
    if spec.orgs == 0 || spec.days == 0 {
        return Err(Error::Usage("--orgs and --days must be at least 1".into()));
    }
    if out.exists() && std::fs::read_dir(out).io("list", out)?.next().is_some() {
        return Err(Error::Usage(format!(
            "{} is not empty: generate writes a fresh landing directory",
            out.display()
        )));
    }
    let events_dir = out.join("usage_events_stream");
    std::fs::create_dir_all(&events_dir).io("create directory", &events_dir)?;
    let mut rng = Rng::new(spec.seed);
    let mut summary = GenSummary::default();
    let orgs = write_master(out, spec, &mut rng, &mut summary)?;
    write_events(&events_dir, spec, &orgs, &mut rng, &mut summary)?;
    Ok(summary)
}

fn write_master(
    out: &Path,
    spec: &GenSpec,
    rng: &mut Rng,
    summary: &mut GenSummary,
) -> Result<Vec<GenOrg>> {
    const ADJ: [&str; 8] = [
        "Nimbus", "Nova", "Blue", "Quantum", "Vertex", "Bright", "Atlas", "Zenith",
    ];
    const NOUN: [&str; 6] = ["Labs", "Tech", "Cloud", "Data", "Systems", "Works"];
    let end = START + Duration::days(i64::from(spec.days));
    let mut orgs = Vec::with_capacity(spec.orgs as usize);

    let mut w = CsvOut::create(out, Source::CustomersOrgs)?;
    for i in 0..spec.orgs {
        let id = rng.id("org_", 8);
        // Some names need quoting: commas, quotes and non-ASCII text.
        let name = match i % 17 {
            3 => format!("{} {}, Inc. {i}", rng.pick(&ADJ), rng.pick(&NOUN)),
            7 => format!("Café \"{}\" {i}", rng.pick(&NOUN)),
            _ => format!("{} {} {i}", rng.pick(&ADJ), rng.pick(&NOUN)),
        };
        let nps = if rng.chance(0.15) {
            String::new()
        } else if i % 41 == 40 {
            num(150.0, 1) // nps_out_of_range
        } else {
            num(rng.below(201) as f64 - 100.0, 1)
        };
        let row = vec![
            id.clone(),
            name,
            s(rng.pick(&INDUSTRIES)),
            s(rng.pick(&REGIONS)),
            s(rng.pick(&PLAN_TIERS)),
            bool_text(rng.chance(0.2)),
            s(date_in(rng, START - Duration::days(60), 60)),
            format!("rep_{}", rng.pick(&["a", "b", "c", "d", "e"])),
            s(rng.pick(&LIFECYCLE_STAGES)),
            s(rng.pick(&MARKETING_SOURCES)),
            nps,
        ];
        w.row(&row)?;
        if i == 1 {
            // duplicate: the same org again, later in the file.
            let mut dup = row.clone();
            dup[1] = format!("{} (dup)", dup[1]);
            w.row(&dup)?;
        }
        let n_res = 3 + rng.below(4) as usize;
        let resources = (0..n_res)
            .map(|_| GenResource {
                id: rng.id("res_", 8),
                service: SERVICES[rng.below(SERVICES.len() as u64) as usize],
                region: REGIONS[rng.below(REGIONS.len() as u64) as usize],
            })
            .collect();
        orgs.push(GenOrg { id, resources });
    }
    // bad_domain and missing_key rows, with ids no event uses.
    w.row(&[
        rng.id("org_", 8),
        "Odd Industry".into(),
        "Mining".into(),
        "us-east".into(),
        "pro".into(),
        bool_text(false),
        s(START),
        "rep_a".into(),
        "active".into(),
        "ads".into(),
        String::new(),
    ])?;
    w.row(&[
        String::new(),
        "No Key".into(),
        "Media".into(),
        "us-east".into(),
        "pro".into(),
        bool_text(false),
        s(START),
        "rep_a".into(),
        "active".into(),
        "ads".into(),
        String::new(),
    ])?;
    summary.master_rows += w.finish()?;

    let org_ids: Vec<&str> = orgs.iter().map(|o| o.id.as_str()).collect();
    let mut w = CsvOut::create(out, Source::Users)?;
    for (i, org) in org_ids.iter().enumerate() {
        for _ in 0..10 {
            let id = rng.id("user_", 8);
            let last_login = if rng.chance(0.17) {
                String::new()
            } else {
                s(date_in(rng, START, i64::from(spec.days)))
            };
            w.row(&[
                id.clone(),
                (*org).to_owned(),
                format!("{id}@example.com"),
                s(rng.pick(&ROLES)),
                bool_text(rng.chance(0.9)),
                s(date_in(rng, START - Duration::days(30), 60)),
                last_login,
            ])?;
        }
        if i == 0 {
            // parse_error (a column missing), unknown_org, and a bad date.
            w.row(&[
                "user_short".into(),
                (*org).to_owned(),
                "x@example.com".into(),
                "admin".into(),
                bool_text(true),
                s(START),
            ])?;
            w.row(&[
                "user_orphan".into(),
                "org_missing0".into(),
                "o@example.com".into(),
                "admin".into(),
                bool_text(true),
                s(START),
                String::new(),
            ])?;
            w.row(&[
                "user_baddate".into(),
                (*org).to_owned(),
                "b@example.com".into(),
                "admin".into(),
                bool_text(true),
                "2025-02-30".into(),
                String::new(),
            ])?;
        }
    }
    summary.master_rows += w.finish()?;

    let mut w = CsvOut::create(out, Source::Resources)?;
    for org in &orgs {
        for r in &org.resources {
            let tags = match rng.below(4) {
                0 => String::new(),
                1 => "[\"env:prod\"]".into(),
                2 => "[\"team:data\", \"env:dev\"]".into(),
                _ => "[\"cost-center:42\"]".into(),
            };
            // Most resources exist before the window; some are created inside it, so
            // earlier events on them are flagged before_resource.
            let created = if rng.chance(0.3) {
                date_in(rng, START, i64::from(spec.days))
            } else {
                date_in(rng, START - Duration::days(90), 90)
            };
            w.row(&[
                r.id.clone(),
                org.id.clone(),
                s(r.service),
                s(r.region),
                s(created),
                s(rng.pick(&RESOURCE_STATES)),
                tags,
            ])?;
        }
    }
    w.row(&[
        rng.id("res_", 8),
        orgs[0].id.clone(),
        "compute".into(),
        "us-east".into(),
        s(START),
        "deleted".into(),
        String::new(),
    ])?;
    summary.master_rows += w.finish()?;

    let mut w = CsvOut::create(out, Source::BillingMonthly)?;
    let mut month = START - Duration::days(30);
    month = NaiveDate::from_ymd_opt(
        chrono::Datelike::year(&month),
        chrono::Datelike::month(&month),
        1,
    )
    .unwrap_or(START);
    let mut months = Vec::new();
    while month < end {
        months.push(month);
        month = month
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(end);
    }
    for (i, org) in orgs.iter().enumerate() {
        for m in &months {
            let currency = *rng.pick(&["USD", "USD", "USD", "ARS", "EUR"]);
            debug_assert!(CURRENCIES.contains(&currency));
            let rate = match currency {
                "USD" if rng.chance(0.5) => 1.0,
                "USD" => 0.97 + rng.unit() * 0.06, // fx_overridden
                "ARS" => 0.001 + rng.unit() * 0.0005,
                _ => 1.05 + rng.unit() * 0.06,
            };
            let subtotal = 200.0 + rng.unit() * 9000.0;
            let taxes = if i == 2 && *m == months[0] {
                -21.0
            } else {
                subtotal * 0.21
            }; // sign_mismatch once
            let credits = if rng.chance(0.55) {
                String::new()
            } else {
                num(rng.unit() * 100.0, 2)
            };
            w.row(&[
                rng.id("inv_", 8),
                org.id.clone(),
                s(m),
                num(subtotal, 2),
                credits,
                num(taxes, 2),
                currency.into(),
                format!("{rate:.5}"),
            ])?;
        }
    }
    summary.master_rows += w.finish()?;

    let mut w = CsvOut::create(out, Source::SupportTickets)?;
    let mut first_ticket: Option<Vec<String>> = None;
    for org in &orgs {
        for _ in 0..(6 + rng.below(13)) {
            let created = date_in(rng, START, i64::from(spec.days));
            let resolved = if rng.chance(0.24) {
                String::new()
            } else {
                s(created + Duration::days(rng.below(8) as i64))
            };
            let csat = if rng.chance(0.25) {
                String::new()
            } else {
                num(rng.below(8) as f64, 1)
            }; // 0, 6, 7: out of range
            let row = vec![
                rng.id("tkt_", 8),
                org.id.clone(),
                s(rng.pick(&TICKET_CATEGORIES)),
                s(*rng.pick(&["low", "low", "medium", "medium", "high", "critical"])),
                s(created),
                resolved,
                csat,
                bool_text(rng.chance(0.1)),
            ];
            debug_assert!(SEVERITIES.contains(&row[3].as_str()));
            w.row(&row)?;
            first_ticket.get_or_insert(row);
        }
    }
    if let Some(mut t) = first_ticket {
        w.row(&t)?; // duplicate
        t[0] = "tkt_baddates".into();
        t[4] = s(START + Duration::days(5));
        t[5] = s(START + Duration::days(2)); // bad_dates
        w.row(&t)?;
    }
    summary.master_rows += w.finish()?;

    let mut w = CsvOut::create(out, Source::MarketingTouches)?;
    for org in &orgs {
        for _ in 0..(12 + rng.below(15)) {
            w.row(&[
                rng.id("mkt_", 8),
                org.id.clone(),
                s(rng.pick(&CAMPAIGNS)),
                s(rng.pick(&CHANNELS)),
                s(date_in(rng, START, i64::from(spec.days))),
                bool_text(rng.chance(0.3)),
                bool_text(rng.chance(0.1)),
            ])?;
        }
    }
    w.row(&[
        rng.id("mkt_", 8),
        orgs[0].id.clone(),
        "welcome".into(),
        "fax".into(),
        s(START),
        bool_text(false),
        bool_text(false),
    ])?;
    summary.master_rows += w.finish()?;

    let mut w = CsvOut::create(out, Source::NpsSurveys)?;
    const COMMENTS: [&str; 6] = [
        "Great support",
        "Too expensive",
        "Stable but slow",
        "Missing features",
        "Love genAI features",
        "",
    ];
    for (i, org) in orgs.iter().enumerate() {
        if i % 4 == 3 {
            continue;
        }
        let score = if i == 5 {
            num(-120.0, 1)
        } else if rng.chance(0.2) {
            String::new()
        } else {
            num(rng.below(201) as f64 - 100.0, 1)
        };
        let row = vec![
            org.id.clone(),
            s(date_in(rng, START, i64::from(spec.days))),
            score,
            s(rng.pick(&COMMENTS)),
        ];
        w.row(&row)?;
        if i == 0 {
            w.row(&row)?; // duplicate (org_id, survey_date)
        }
    }
    summary.master_rows += w.finish()?;
    Ok(orgs)
}

/// How many event files: about 360 events each like the sample, at most 256 open.
fn event_file_count(total: u64) -> u32 {
    (total / 360).clamp(1, 256) as u32
}

struct EventFiles {
    tmp: Vec<PathBuf>,
    paths: Vec<PathBuf>,
    writers: Vec<BufWriter<File>>,
    /// A few lines per file, shuffled before writing, so no file is in time order.
    pending: Vec<Vec<Vec<u8>>>,
}

impl EventFiles {
    fn write(&mut self, rng: &mut Rng, file: usize, line: Vec<u8>) -> Result<()> {
        self.pending[file].push(line);
        if self.pending[file].len() >= 64 {
            self.drain(rng, file)?;
        }
        Ok(())
    }

    fn drain(&mut self, rng: &mut Rng, file: usize) -> Result<()> {
        let mut lines = std::mem::take(&mut self.pending[file]);
        for i in (1..lines.len()).rev() {
            lines.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for l in &lines {
            self.writers[file]
                .write_all(l)
                .io("write", &self.tmp[file])?;
        }
        Ok(())
    }
}

fn write_events(
    dir: &Path,
    spec: &GenSpec,
    orgs: &[GenOrg],
    rng: &mut Rng,
    summary: &mut GenSummary,
) -> Result<()> {
    let total = u64::from(spec.days) * spec.events_per_day;
    let n_files = event_file_count(total);
    let mut files = EventFiles {
        tmp: Vec::new(),
        paths: Vec::new(),
        writers: Vec::new(),
        pending: vec![Vec::new(); n_files as usize],
    };
    for i in 0..n_files {
        let path = dir.join(format!("events_part_{i:04}.jsonl"));
        let tmp = dir.join(format!(".events_part_{i:04}.jsonl.tmp"));
        files.writers.push(BufWriter::with_capacity(
            64 * 1024,
            File::create(&tmp).io("create", &tmp)?,
        ));
        files.tmp.push(tmp);
        files.paths.push(path);
    }
    // The schema moves from v1 to v2 a quarter of the way through.
    let v2_from_day = spec.days / 4;
    let mut last_line: Vec<u8> = Vec::new();
    let mut n = 0u64;
    for day in 0..spec.days {
        let date = START + Duration::days(i64::from(day));
        for _ in 0..spec.events_per_day {
            let org = &orgs[rng.below(orgs.len() as u64) as usize];
            let line = event_line(rng, spec.seed, n, date, day >= v2_from_day, org);
            n += 1;
            let file = rng.below(u64::from(n_files)) as usize;
            // duplicate: now and then, an event arrives twice, in another file.
            if rng.chance(0.0005) && !last_line.is_empty() {
                let again = last_line.clone();
                let other = rng.below(u64::from(n_files)) as usize;
                files.write(rng, other, again)?;
                summary.events += 1;
            }
            last_line.clone_from(&line);
            files.write(rng, file, line)?;
            summary.events += 1;
        }
    }
    for i in 0..n_files as usize {
        files.drain(rng, i)?;
    }
    for (i, w) in files.writers.into_iter().enumerate() {
        w.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .io("write", &files.tmp[i])?;
        std::fs::rename(&files.tmp[i], &files.paths[i]).io("rename", &files.paths[i])?;
    }
    summary.event_files = n_files;
    Ok(())
}

/// One JSONL line (with its line end). Most events are clean; a few carry each defect.
fn event_line(
    rng: &mut Rng,
    seed: u64,
    n: u64,
    date: NaiveDate,
    v2: bool,
    org: &GenOrg,
) -> Vec<u8> {
    use serde_json::{Value, json};
    let r = &org.resources[rng.below(org.resources.len() as u64) as usize];
    let metric = *rng.pick(&["requests", "requests", "cpu_hours", "storage_gb_hours"]);
    let (value, unit, unit_cost): (f64, &str, f64) = match metric {
        "requests" => (50.0 + rng.below(100) as f64, "count", 0.01),
        "cpu_hours" => (rng.unit() * 4.0, "hours", 0.05),
        _ => (rng.unit() * 30.0, "gb_hours", 0.002),
    };
    let secs = rng.below(86_400) as i64;
    let ts = date
        .and_hms_opt(0, 0, 0)
        .map(|d| d + Duration::seconds(secs))
        .unwrap_or_default();
    let mut cost = ((value * unit_cost * (0.5 + rng.unit())) * 10_000.0).round() / 10_000.0;
    if r.service == "genai" {
        cost *= 3.0;
    }
    let mut obj = json!({
        "event_id": event_id(seed, n),
        "timestamp": ts.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "org_id": org.id,
        "resource_id": r.id,
        "service": r.service,
        "region": r.region,
        "metric": metric,
        "value": (value * 10_000.0).round() / 10_000.0,
        "unit": unit,
        "cost_usd_increment": cost,
        "schema_version": if v2 { 2 } else { 1 },
    });
    let Some(o) = obj.as_object_mut() else {
        return Vec::new();
    };
    if v2 {
        o.insert(
            "carbon_kg".into(),
            json!((cost * 0.02 * 10_000.0).round() / 10_000.0),
        );
        if r.service == "genai" {
            o.insert("genai_tokens".into(), json!(100 + rng.below(5000)));
        }
    }
    // Valid but tricky forms.
    let roll = rng.unit();
    if roll < 0.03 {
        o.insert("value".into(), json!(format!("{:.3}", value)));
    } else if roll < 0.05 {
        o.insert("value".into(), Value::Null);
    } else if roll < 0.10 {
        o.insert("unit".into(), Value::Null); // unit_imputed
    } else if roll < 0.105 {
        o.insert("cost_usd_increment".into(), json!(-0.5 - rng.unit())); // cost_negative
    } else if roll < 0.107 {
        o.insert("cost_usd_increment".into(), json!(cost * 40.0 + 50.0)); // cost_spike
    } else if roll < 0.109 {
        let shifted = ts + Duration::hours(2);
        o.insert(
            "timestamp".into(),
            json!(shifted.format("%Y-%m-%dT%H:%M:%S.250+02:00").to_string()),
        );
    }
    // Defects, one class each, rarely.
    let defect = rng.below(20_000);
    match defect {
        0 => {
            let mut bytes = serde_json::to_vec(&obj).unwrap_or_default();
            bytes.truncate(bytes.len() / 2); // parse_error
            bytes.push(b'\n');
            return bytes;
        }
        1 => {
            o.remove("event_id");
        }
        2 => {
            o.insert(
                "timestamp".into(),
                json!(ts.format("%Y-%m-%d %H:%M").to_string()),
            );
        }
        3 => {
            o.insert("schema_version".into(), json!(3));
        }
        4 => {
            o.insert("value".into(), json!("NaN"));
        }
        5 => {
            o.insert("value".into(), json!(true));
        }
        6 => {
            o.insert("cost_usd_increment".into(), Value::Null);
        }
        7 | 8 => {
            o.insert("value".into(), Value::Null); // no_measure
            o.insert("unit".into(), Value::Null);
        }
        9 => {
            o.insert("region".into(), json!("mars-1")); // bad_domain
        }
        10 => {
            o.insert("org_id".into(), json!("org_unknown0")); // unknown_org
        }
        11 => {
            o.insert("resource_id".into(), json!("res_unknown0")); // unknown_resource
        }
        12 | 13 if v2 => {
            o.insert("genai_tokens".into(), json!(777)); // tokens_misplaced (unless genai)
        }
        _ => {}
    }
    let mut bytes = serde_json::to_vec(&obj).unwrap_or_default();
    if defect == 14 {
        bytes.push(b'\r'); // CRLF line end: valid
    }
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_unique_and_stable() {
        let ids: std::collections::HashSet<String> = (0..100_000).map(|n| event_id(7, n)).collect();
        assert_eq!(ids.len(), 100_000);
        assert_eq!(event_id(7, 3), event_id(7, 3));
        assert_ne!(event_id(7, 3), event_id(8, 3));
    }

    #[test]
    fn rng_is_deterministic() {
        let a: Vec<u64> = {
            let mut r = Rng::new(1);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(1);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
    }
}
