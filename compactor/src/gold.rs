//! The gold marts of SPEC section 6, the batch `cost_spike` flag, and the accounting.
//!
//! Each mart is a plain aggregation over the silver Parquet files, written so that it
//! reads against the SPEC line by line. The daily sums use `UsageTotals::add_row`, the
//! same definition the speed path's `speed.daily_usage` uses, so batch and speed can
//! only differ in which events they have seen.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use foldhash::{HashMap, HashMapExt};
use schemas::Source;
use schemas::speed::{MeasureRow, UsageTotals};
use schemas::stats::{cost_spike_flag, percentile_cont, percentile_cont_unsorted, spike_sample};
use serde::Serialize;

use crate::Settings;
use crate::lake::write_file_atomic;
use crate::rows::date_dir;
use crate::table::{
    Cell, RowOrder, TableSpec, hive_value, parquet_files, parquet_rows, read_parquet, table_dir,
    write_parquet,
};

pub const DAILY: &str = "org_daily_usage_by_service";
pub const REVENUE: &str = "revenue_by_org_month";
pub const ANOMALY: &str = "cost_anomaly_mart";
pub const TICKETS_ORG: &str = "tickets_by_org_date";
pub const TICKETS_SEVERITY: &str = "tickets_by_severity_date";
pub const GENAI: &str = "genai_tokens_by_org_date";
pub const MARTS: [&str; 6] = [
    DAILY,
    REVENUE,
    ANOMALY,
    TICKETS_ORG,
    TICKETS_SEVERITY,
    GENAI,
];

fn fields(cols: &[(&str, DataType, bool)]) -> SchemaRef {
    Arc::new(Schema::new(
        cols.iter()
            .map(|(n, t, null)| Field::new(*n, t.clone(), *null))
            .collect::<Vec<_>>(),
    ))
}

/// The schema of each mart (SPEC section 6), keys first.
pub fn mart_schema(mart: &str) -> SchemaRef {
    use DataType::*;
    let ticket_measures = [
        ("tickets", Int64, false),
        ("open_tickets", Int64, false),
        ("sla_breached", Int64, false),
        ("sla_breach_rate", Float64, false),
        ("csat_avg", Float64, true),
        ("csat_responses", Int64, false),
    ];
    match mart {
        DAILY => fields(&[
            ("org_id", Utf8, false),
            ("usage_date", Date32, false),
            ("service", Utf8, false),
            ("org_name", Utf8, false),
            ("industry", Utf8, false),
            ("plan_tier", Utf8, false),
            ("events", Int64, false),
            ("requests", Float64, false),
            ("cpu_hours", Float64, false),
            ("storage_gb_hours", Float64, false),
            ("cost_usd", Float64, false),
            ("negative_cost_events", Int64, false),
            ("genai_tokens", Int64, false),
            ("carbon_kg", Float64, false),
        ]),
        REVENUE => fields(&[
            ("org_id", Utf8, false),
            ("month", Date32, false),
            ("invoice_id", Utf8, false),
            ("currency", Utf8, false),
            ("subtotal", Float64, false),
            ("credits", Float64, false),
            ("taxes", Float64, false),
            ("exchange_rate_to_usd", Float64, false),
            ("fx_applied", Float64, false),
            ("revenue_usd", Float64, false),
            ("taxes_usd", Float64, false),
            ("total_usd", Float64, false),
            ("sign_mismatch", Boolean, false),
            ("fx_overridden", Boolean, false),
        ]),
        ANOMALY => fields(&[
            ("org_id", Utf8, false),
            ("usage_date", Date32, false),
            ("service", Utf8, false),
            ("cost_usd", Float64, false),
            ("mean", Float64, false),
            ("stddev", Float64, true),
            ("z_score", Float64, true),
            ("z_flag", Boolean, false),
            ("median", Float64, false),
            ("mad", Float64, false),
            ("mad_score", Float64, true),
            ("mad_flag", Boolean, false),
            ("p99_service", Float64, false),
            ("pctl_flag", Boolean, false),
            ("anomaly_score", Float64, false),
            ("methods", Utf8, false),
        ]),
        TICKETS_ORG => {
            let mut v = vec![
                ("org_id", Utf8, false),
                ("created_date", Date32, false),
                ("severity", Utf8, false),
            ];
            v.extend(ticket_measures);
            fields(&v)
        }
        TICKETS_SEVERITY => {
            let mut v = vec![("severity", Utf8, false), ("created_date", Date32, false)];
            v.extend(ticket_measures);
            fields(&v)
        }
        _ => fields(&[
            ("org_id", Utf8, false),
            ("usage_date", Date32, false),
            ("genai_events", Int64, false),
            ("total_tokens", Int64, false),
            ("genai_cost_usd", Float64, false),
        ]),
    }
}

/// The mart's table: the daily mart is partitioned by `usage_date`.
pub fn mart_table(mart: &str) -> TableSpec {
    let hive: &[&str] = if mart == DAILY { &["usage_date"] } else { &[] };
    TableSpec::new(format!("gold/{mart}"), mart_schema(mart), hive).sorted_by_text()
}

// ---- reading columns -------------------------------------------------------------

fn column<'b>(b: &'b RecordBatch, name: &str) -> Result<&'b ArrayRef> {
    b.column_by_name(name)
        .with_context(|| format!("no column {name}"))
}

fn strings<'b>(b: &'b RecordBatch, name: &str) -> Result<&'b StringArray> {
    column(b, name)?
        .as_string_opt::<i32>()
        .with_context(|| format!("column {name} is not a string"))
}

fn f64s<'b>(b: &'b RecordBatch, name: &str) -> Result<&'b Float64Array> {
    column(b, name)?
        .as_primitive_opt::<Float64Type>()
        .with_context(|| format!("column {name} is not a double"))
}

fn i64s<'b>(b: &'b RecordBatch, name: &str) -> Result<&'b Int64Array> {
    column(b, name)?
        .as_primitive_opt::<Int64Type>()
        .with_context(|| format!("column {name} is not an int64"))
}

fn dates<'b>(b: &'b RecordBatch, name: &str) -> Result<&'b Date32Array> {
    column(b, name)?
        .as_primitive_opt::<Date32Type>()
        .with_context(|| format!("column {name} is not a date"))
}

fn bools<'b>(b: &'b RecordBatch, name: &str) -> Result<&'b BooleanArray> {
    column(b, name)?
        .as_boolean_opt()
        .with_context(|| format!("column {name} is not a boolean"))
}

fn opt_f64(a: &Float64Array, i: usize) -> Option<f64> {
    a.is_valid(i).then(|| a.value(i))
}

fn opt_i64(a: &Int64Array, i: usize) -> Option<i64> {
    a.is_valid(i).then(|| a.value(i))
}

// ---- the daily mart and cost_spike ----------------------------------------------------

/// Small integer ids for org and service strings, so the aggregation keys are copies
/// of three integers rather than of two strings per event.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.to_owned());
        self.ids.insert(s.to_owned(), i);
        i
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DailyRow {
    pub org_id: String,
    pub usage_date: i32,
    pub service: String,
    pub org_name: String,
    pub industry: String,
    pub plan_tier: String,
    pub totals: UsageTotals,
}

pub struct GoldOutcome {
    /// p99 of each service's kept, non-negative event costs.
    pub thresholds: BTreeMap<String, f64>,
    pub rewritten_files: usize,
    pub daily_rows: usize,
}

const SILVER_COLUMNS: [&str; 14] = [
    "partition",
    "org_id",
    "usage_date",
    "metric",
    "value",
    "cost_usd",
    "carbon_kg",
    "genai_tokens",
    "cost_negative",
    "cost_spike",
    "tokens_misplaced",
    "org_name",
    "industry",
    "plan_tier",
];

/// The silver usage-event files of one service, each with its place in the path order
/// of all of them (the order one thread would read them in).
struct ServiceFiles {
    service: String,
    files: Vec<PathBuf>,
    order: Vec<usize>,
    /// Bytes of the files (at least 1 each): the work of reading them.
    bytes: u64,
}

/// The silver usage-event files, by service.
fn silver_by_service(root: &Path) -> Result<Vec<ServiceFiles>> {
    let mut by: BTreeMap<String, ServiceFiles> = BTreeMap::new();
    let all = parquet_files(&table_dir(root, "silver", Source::UsageEvents.name()))?;
    for (i, path) in all.into_iter().enumerate() {
        let service = hive_value(&path, "service")
            .with_context(|| format!("{}: no service= in its path", path.display()))?
            .to_owned();
        let sf = by.entry(service.clone()).or_insert_with(|| ServiceFiles {
            service,
            files: Vec::new(),
            order: Vec::new(),
            bytes: 0,
        });
        sf.bytes += std::fs::metadata(&path).map_or(1, |m| m.len().max(1));
        sf.files.push(path);
        sf.order.push(i);
    }
    Ok(by.into_values().collect())
}

/// Threads for reading silver: one per core.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `f` on the services split into up to `groups` groups (one thread each) of
/// about equal bytes of files; a service's files are all in one group, so what is
/// summed per service is summed in the same order whatever the number of groups.
/// The groups' results, in no particular order.
fn per_service_group<R: Send>(
    services: &[ServiceFiles],
    groups: usize,
    f: impl Fn(&[&ServiceFiles]) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let bytes: Vec<u64> = services.iter().map(|sf| sf.bytes).collect();
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = crate::compact::balanced_groups(&bytes, groups)
            .into_iter()
            .map(|g| {
                let group: Vec<&ServiceFiles> = g.iter().map(|&i| &services[i as usize]).collect();
                scope.spawn(move || f(&group))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a gold reader panicked")))
            })
            .collect()
    })
}

/// What one thread read of some services' silver files.
struct SilverScan {
    /// Sums per (org, date, service), merged across input partitions.
    daily: Vec<(String, i32, String, UsageTotals)>,
    /// Each org's name, industry and plan tier from its first row, with the place of
    /// that row's file in the order of all files.
    attrs: HashMap<String, (usize, [String; 3])>,
    /// Files whose `cost_spike` flags disagree with the thresholds.
    stale: Vec<(usize, PathBuf)>,
}

fn scan_services(
    group: &[&ServiceFiles],
    p99: &BTreeMap<String, f64>,
    factor: f64,
) -> Result<SilverScan> {
    let mut orgs = Interner::default();
    let mut services = Interner::default();
    let mut attrs: HashMap<u32, (usize, [String; 3])> = HashMap::new();
    // Sums per input partition first, each in offset order, then across partitions
    // in partition order: floating-point sums then do not depend on how the rows
    // were cut into files (one run or many, merged or not), and gold is the same
    // bytes whatever the history of the lake.
    let mut daily: HashMap<(u32, i32, u32, i32), UsageTotals> = HashMap::new();
    let mut stale = Vec::new();
    for sf in group {
        let s = services.id(&sf.service);
        let threshold = p99.get(&sf.service).copied();
        for (&place, path) in sf.order.iter().zip(&sf.files) {
            let mut is_stale = false;
            for b in read_parquet(path, Some(&SILVER_COLUMNS))
                .with_context(|| format!("read {}", path.display()))?
            {
                let org = strings(&b, "org_id")?;
                let part = column(&b, "partition")?
                    .as_primitive_opt::<arrow_array::types::Int32Type>()
                    .context("column partition is not an int32")?;
                let date = dates(&b, "usage_date")?;
                let metric = strings(&b, "metric")?;
                let value = f64s(&b, "value")?;
                let cost = f64s(&b, "cost_usd")?;
                let carbon = f64s(&b, "carbon_kg")?;
                let tokens = i64s(&b, "genai_tokens")?;
                let neg = bools(&b, "cost_negative")?;
                let misplaced = bools(&b, "tokens_misplaced")?;
                let (name, industry, tier) = (
                    strings(&b, "org_name")?,
                    strings(&b, "industry")?,
                    strings(&b, "plan_tier")?,
                );
                for i in 0..b.num_rows() {
                    let o = orgs.id(org.value(i));
                    if attrs.get(&o).is_none_or(|(at, _)| place < *at) {
                        let a = [name.value(i), industry.value(i), tier.value(i)];
                        attrs.insert(o, (place, a.map(str::to_owned)));
                    }
                    daily
                        .entry((o, date.value(i), s, part.value(i)))
                        .or_default()
                        .add_row(&MeasureRow {
                            metric: metric.value(i),
                            value: opt_f64(value, i),
                            cost_usd: cost.value(i),
                            cost_negative: neg.value(i),
                            genai_tokens: opt_i64(tokens, i),
                            tokens_misplaced: misplaced.value(i),
                            carbon_kg: opt_f64(carbon, i),
                        });
                }
                let spike = bools(&b, "cost_spike")?;
                is_stale |= (0..b.num_rows()).any(|i| {
                    let want = cost_spike_flag(cost.value(i), neg.value(i), threshold, factor);
                    want != spike.value(i)
                });
            }
            if is_stale {
                stale.push((place, path.clone()));
            }
        }
    }
    let mut by_partition: Vec<_> = daily.into_iter().collect();
    by_partition.sort_unstable_by_key(|(k, _)| *k);
    let mut merged: Vec<((u32, i32, u32), UsageTotals)> = Vec::new();
    for ((o, date, s, _), t) in by_partition {
        match merged.last_mut() {
            Some((k, total)) if *k == (o, date, s) => total.merge(&t),
            _ => merged.push(((o, date, s), t)),
        }
    }
    let name = |names: &[String], i: u32| names[i as usize].clone();
    Ok(SilverScan {
        daily: merged
            .into_iter()
            .map(|((o, date, s), t)| (name(&orgs.names, o), date, name(&services.names, s), t))
            .collect(),
        attrs: attrs
            .into_iter()
            .map(|(o, a)| (name(&orgs.names, o), a))
            .collect(),
        stale,
    })
}

/// Reads the whole silver history once, the services split over the cores: the daily
/// mart's sums, and which files' `cost_spike` flags disagree with the thresholds
/// `p99` (returned for rewriting).
fn scan_silver(
    services: &[ServiceFiles],
    p99: &BTreeMap<String, f64>,
    factor: f64,
    groups: usize,
) -> Result<(Vec<DailyRow>, Vec<PathBuf>)> {
    let mut attrs: HashMap<String, (usize, [String; 3])> = HashMap::new();
    let mut daily = Vec::new();
    let mut stale = Vec::new();
    for scan in per_service_group(services, groups, |g| scan_services(g, p99, factor))? {
        for (org, a) in scan.attrs {
            if attrs.get(&org).is_none_or(|(at, _)| a.0 < *at) {
                attrs.insert(org, a);
            }
        }
        daily.extend(scan.daily);
        stale.extend(scan.stale);
    }
    stale.sort_unstable_by_key(|(place, _)| *place);
    let mut rows: Vec<DailyRow> = daily
        .into_iter()
        .map(|(org_id, usage_date, service, totals)| {
            let [org_name, industry, plan_tier] = attrs
                .get(&org_id)
                .map(|(_, a)| a.clone())
                .unwrap_or_default();
            DailyRow {
                org_id,
                usage_date,
                service,
                org_name,
                industry,
                plan_tier,
                totals,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.usage_date, &a.org_id, &a.service).cmp(&(b.usage_date, &b.org_id, &b.service))
    });
    Ok((rows, stale.into_iter().map(|(_, p)| p).collect()))
}

/// `cost_spike` (SPEC section 4) for one silver batch of one service: cost above
/// `factor` x the service's p99 (negative costs never are).
pub fn set_cost_spike(b: &RecordBatch, p99: Option<f64>, factor: f64) -> Result<RecordBatch> {
    let schema = b.schema();
    let idx = schema.index_of("cost_spike")?;
    let (cost, neg) = (f64s(b, "cost_usd")?, bools(b, "cost_negative")?);
    let spike: BooleanArray = (0..b.num_rows())
        .map(|i| Some(cost_spike_flag(cost.value(i), neg.value(i), p99, factor)))
        .collect();
    let mut cols = b.columns().to_vec();
    cols[idx] = Arc::new(spike);
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// The p99 of each service's costs in memory ([`percentile_cont_unsorted`] reorders
/// them).
pub fn p99_by_service(costs: &mut BTreeMap<String, Vec<f64>>) -> BTreeMap<String, f64> {
    costs
        .iter_mut()
        .filter_map(|(s, v)| Some((s.clone(), percentile_cont_unsorted(v, 0.99)?)))
        .collect()
}

/// The p99 (`percentile_cont`) of each service's kept, non-negative event costs over
/// the whole silver history: exact, read from the files in a few passes of the cost
/// columns ([`crate::select`]) rather than held in memory, the services split over
/// the cores.
fn spike_p99(services: &[ServiceFiles], groups: usize) -> Result<BTreeMap<String, f64>> {
    let read = |path: &PathBuf, sink: &mut dyn FnMut(f64)| -> Result<()> {
        for b in read_parquet(path, Some(&["cost_usd", "cost_negative"]))? {
            let (cost, neg) = (f64s(&b, "cost_usd")?, bools(&b, "cost_negative")?);
            for i in 0..b.num_rows() {
                if let Some(c) = spike_sample(cost.value(i), neg.value(i)) {
                    sink(c);
                }
            }
        }
        Ok(())
    };
    let found = per_service_group(services, groups, |group| {
        let mut out = Vec::new();
        for sf in group {
            if let Some(p) = crate::select::percentile_of_files(&sf.files, 0.99, &read)? {
                out.push((sf.service.clone(), p));
            }
        }
        Ok(out)
    })?;
    Ok(found.into_iter().flatten().collect())
}

/// Rewrites (in the new generation) silver files whose `cost_spike` flags disagree
/// with the whole history's thresholds: new events move a service's p99, and with it
/// flags on older events.
fn rewrite_cost_spike(
    files: &[std::path::PathBuf],
    p99: &BTreeMap<String, f64>,
    factor: f64,
) -> Result<()> {
    for path in files {
        let service = hive_value(path, "service").unwrap_or_default();
        let p = p99.get(service).copied();
        let batches = read_parquet(path, None)?;
        let Some(schema) = batches.first().map(|b| b.schema()) else {
            continue;
        };
        let fixed = batches.iter().map(|b| set_cost_spike(b, p, factor));
        write_parquet(path, &schema, RowOrder::Log, fixed)?;
    }
    Ok(())
}

// ---- the marts -----------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyRow {
    pub org_id: String,
    pub usage_date: i32,
    pub service: String,
    pub cost_usd: f64,
    pub mean: f64,
    pub stddev: Option<f64>,
    pub z_score: Option<f64>,
    pub z_flag: bool,
    pub median: f64,
    pub mad: f64,
    pub mad_score: Option<f64>,
    pub mad_flag: bool,
    pub p99_service: f64,
    pub pctl_flag: bool,
    pub anomaly_score: f64,
    pub methods: String,
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// `cost_anomaly_mart`: one row per daily-mart row flagged by at least one method.
pub fn anomalies(daily: &[DailyRow], s: &Settings) -> Vec<AnomalyRow> {
    // Series = the cost_usd of one (org_id, service) over all its days.
    let mut series: BTreeMap<(&str, &str), Vec<&DailyRow>> = BTreeMap::new();
    // p99_service = percentile_cont(0.99) of cost_usd over all daily rows of the service.
    let mut per_service: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in daily {
        series.entry((&r.org_id, &r.service)).or_default().push(r);
        per_service
            .entry(&r.service)
            .or_default()
            .push(r.totals.cost_usd);
    }
    let p99: BTreeMap<&str, f64> = per_service
        .into_iter()
        .filter_map(|(k, v)| Some((k, percentile_cont(&sorted(v), 0.99)?)))
        .collect();
    let mut out = Vec::new();
    for ((org, service), days) in series {
        let xs: Vec<f64> = days.iter().map(|r| r.totals.cost_usd).collect();
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        // Sample standard deviation (n - 1); null for a one-day series.
        let stddev = (xs.len() > 1)
            .then(|| (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
        let median = percentile_cont(&sorted(xs.clone()), 0.5).unwrap_or(0.0);
        let mad = percentile_cont(
            &sorted(xs.iter().map(|x| (x - median).abs()).collect()),
            0.5,
        )
        .unwrap_or(0.0);
        let p99_service = p99.get(service).copied().unwrap_or(0.0);
        for (r, &x) in days.iter().zip(&xs) {
            let z_score = stddev.filter(|sd| *sd > 0.0).map(|sd| (x - mean) / sd);
            let z_flag = z_score.is_some_and(|z| z.abs() > s.z_threshold);
            let mad_score = (mad != 0.0).then(|| 0.6745 * (x - median) / mad);
            let mad_flag = mad > 0.0 && mad_score.is_some_and(|m| m.abs() > s.mad_threshold);
            let pctl_flag = x > s.pctl_factor * p99_service;
            if !(z_flag || mad_flag || pctl_flag) {
                continue;
            }
            let methods: Vec<&str> = [(z_flag, "z"), (mad_flag, "mad"), (pctl_flag, "pctl")]
                .iter()
                .filter(|(f, _)| *f)
                .map(|(_, m)| *m)
                .collect();
            out.push(AnomalyRow {
                org_id: org.to_owned(),
                usage_date: r.usage_date,
                service: service.to_owned(),
                cost_usd: x,
                mean,
                stddev,
                z_score,
                z_flag,
                median,
                mad,
                mad_score,
                mad_flag,
                p99_service,
                pctl_flag,
                anomaly_score: z_score
                    .unwrap_or(0.0)
                    .abs()
                    .max(mad_score.unwrap_or(0.0).abs()),
                methods: methods.join(","),
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.org_id, a.usage_date, &a.service).cmp(&(&b.org_id, b.usage_date, &b.service))
    });
    out
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TicketTotals {
    pub tickets: i64,
    pub open_tickets: i64,
    pub sla_breached: i64,
    pub csat_sum: f64,
    pub csat_responses: i64,
}

impl TicketTotals {
    /// One ticket; `csat_out_of_range` is the silver flag (the rule is in `schemas`).
    fn add(
        &mut self,
        resolved: bool,
        sla_breached: bool,
        csat: Option<f64>,
        csat_out_of_range: bool,
    ) {
        self.tickets += 1;
        self.open_tickets += i64::from(!resolved);
        self.sla_breached += i64::from(sla_breached);
        // A CSAT flagged csat_out_of_range is excluded from averages.
        if let Some(c) = csat.filter(|_| !csat_out_of_range) {
            self.csat_sum += c;
            self.csat_responses += 1;
        }
    }

    pub fn sla_breach_rate(&self) -> f64 {
        schemas::stats::sla_breach_rate(self.sla_breached as f64, self.tickets as f64)
    }

    pub fn csat_avg(&self) -> Option<f64> {
        (self.csat_responses > 0).then(|| self.csat_sum / self.csat_responses as f64)
    }
}

type TicketMarts = (
    BTreeMap<(String, i32, String), TicketTotals>,
    BTreeMap<(String, i32), TicketTotals>,
);

/// `tickets_by_org_date` and `tickets_by_severity_date` from silver support tickets.
fn tickets(root: &Path) -> Result<TicketMarts> {
    let mut by_org = BTreeMap::new();
    let mut by_severity = BTreeMap::new();
    for path in parquet_files(&table_dir(root, "silver", Source::SupportTickets.name()))? {
        for b in read_parquet(&path, None)? {
            let (org, sev) = (strings(&b, "org_id")?, strings(&b, "severity")?);
            let created = dates(&b, "created_at")?;
            let resolved = dates(&b, "resolved_at")?;
            let csat = f64s(&b, "csat")?;
            let out_of_range = bools(&b, "csat_out_of_range")?;
            let sla = bools(&b, "sla_breached")?;
            for i in 0..b.num_rows() {
                let (d, sev) = (created.value(i), sev.value(i).to_owned());
                let args = (
                    resolved.is_valid(i),
                    sla.value(i),
                    opt_f64(csat, i),
                    out_of_range.value(i),
                );
                by_org
                    .entry((org.value(i).to_owned(), d, sev.clone()))
                    .or_insert_with(TicketTotals::default)
                    .add(args.0, args.1, args.2, args.3);
                by_severity
                    .entry((sev, d))
                    .or_insert_with(TicketTotals::default)
                    .add(args.0, args.1, args.2, args.3);
            }
        }
    }
    Ok((by_org, by_severity))
}

fn ticket_cells<'a>(out: &mut Vec<Cell<'a>>, t: &TicketTotals) {
    out.extend([
        Cell::I64(t.tickets),
        Cell::I64(t.open_tickets),
        Cell::I64(t.sla_breached),
        Cell::F64(t.sla_breach_rate()),
        Cell::from(t.csat_avg()),
        Cell::I64(t.csat_responses),
    ]);
}

/// Writes one mart: rows grouped by partition directory, one file per directory.
fn write_mart(
    root: &Path,
    mart: &str,
    rows: &mut dyn Iterator<Item = (String, Vec<Cell>)>,
) -> Result<usize> {
    let mut sink = crate::table::PartitionedSink::new(mart_table(mart));
    let mut n = 0;
    for (dir, cells) in rows {
        sink.push(&dir, &cells)?;
        n += 1;
    }
    sink.flush(root, "part-0.parquet")?;
    Ok(n)
}

/// Row counts of each mart written.
pub type MartCounts = BTreeMap<&'static str, usize>;

/// Recomputes every mart from the whole silver history into `<root>/gold/`, and the
/// `cost_spike` flags in silver. `previous` are the thresholds silver was written with.
pub fn compute(
    root: &Path,
    s: &Settings,
    _previous: &BTreeMap<String, f64>,
) -> Result<GoldOutcome> {
    let services = silver_by_service(root)?;
    let thresholds = spike_p99(&services, cores())?;
    let (daily, stale) = scan_silver(&services, &thresholds, s.spike_factor, cores())?;
    rewrite_cost_spike(&stale, &thresholds, s.spike_factor)?;
    let rewritten_files = stale.len();
    let gold = root.join("gold");
    if gold.exists() {
        std::fs::remove_dir_all(&gold).with_context(|| format!("remove {}", gold.display()))?;
    }
    let mut counts = MartCounts::new();

    counts.insert(
        DAILY,
        write_mart(
            root,
            DAILY,
            &mut daily.iter().map(|r| {
                let t = &r.totals;
                (
                    date_dir(r.usage_date).replacen("date=", "usage_date=", 1),
                    vec![
                        Cell::Str(&r.org_id),
                        Cell::Date(r.usage_date),
                        Cell::Str(&r.service),
                        Cell::Str(&r.org_name),
                        Cell::Str(&r.industry),
                        Cell::Str(&r.plan_tier),
                        Cell::I64(t.events),
                        Cell::F64(t.requests),
                        Cell::F64(t.cpu_hours),
                        Cell::F64(t.storage_gb_hours),
                        Cell::F64(t.cost_usd),
                        Cell::I64(t.negative_cost_events),
                        Cell::I64(t.genai_tokens),
                        Cell::F64(t.carbon_kg),
                    ],
                )
            }),
        )?,
    );

    // genai_tokens_by_org_date: the daily mart's genai rows (rows only where there
    // are genai events; tokens and cost already exclude misplaced and negative ones).
    let mut genai: Vec<&DailyRow> = daily.iter().filter(|r| r.service == "genai").collect();
    genai.sort_by(|a, b| (&a.org_id, a.usage_date).cmp(&(&b.org_id, b.usage_date)));
    counts.insert(
        GENAI,
        write_mart(
            root,
            GENAI,
            &mut genai.iter().map(|r| {
                (
                    String::new(),
                    vec![
                        Cell::Str(&r.org_id),
                        Cell::Date(r.usage_date),
                        Cell::I64(r.totals.events),
                        Cell::I64(r.totals.genai_tokens),
                        Cell::F64(r.totals.cost_usd),
                    ],
                )
            }),
        )?,
    );

    let anomalies = anomalies(&daily, s);
    counts.insert(
        ANOMALY,
        write_mart(
            root,
            ANOMALY,
            &mut anomalies.iter().map(|a| {
                (
                    String::new(),
                    vec![
                        Cell::Str(&a.org_id),
                        Cell::Date(a.usage_date),
                        Cell::Str(&a.service),
                        Cell::F64(a.cost_usd),
                        Cell::F64(a.mean),
                        Cell::from(a.stddev),
                        Cell::from(a.z_score),
                        Cell::Bool(a.z_flag),
                        Cell::F64(a.median),
                        Cell::F64(a.mad),
                        Cell::from(a.mad_score),
                        Cell::Bool(a.mad_flag),
                        Cell::F64(a.p99_service),
                        Cell::Bool(a.pctl_flag),
                        Cell::F64(a.anomaly_score),
                        Cell::Str(&a.methods),
                    ],
                )
            }),
        )?,
    );

    counts.insert(REVENUE, revenue(root)?);

    let (by_org, by_severity) = tickets(root)?;
    counts.insert(
        TICKETS_ORG,
        write_mart(
            root,
            TICKETS_ORG,
            &mut by_org.iter().map(|((org, d, sev), t)| {
                let mut c = vec![Cell::Str(org), Cell::Date(*d), Cell::Str(sev)];
                ticket_cells(&mut c, t);
                (String::new(), c)
            }),
        )?,
    );
    counts.insert(
        TICKETS_SEVERITY,
        write_mart(
            root,
            TICKETS_SEVERITY,
            &mut by_severity.iter().map(|((sev, d), t)| {
                let mut c = vec![Cell::Str(sev), Cell::Date(*d)];
                ticket_cells(&mut c, t);
                (String::new(), c)
            }),
        )?,
    );
    tracing::info!(?counts, rewritten_files, "gold marts written");
    Ok(GoldOutcome {
        thresholds,
        rewritten_files,
        daily_rows: daily.len(),
    })
}

/// `revenue_by_org_month`: one row per silver invoice.
fn revenue(root: &Path) -> Result<usize> {
    let mut rows = Vec::new();
    for path in parquet_files(&table_dir(root, "silver", Source::BillingMonthly.name()))? {
        for b in read_parquet(&path, None)? {
            let (org, inv, cur) = (
                strings(&b, "org_id")?,
                strings(&b, "invoice_id")?,
                strings(&b, "currency")?,
            );
            let month = dates(&b, "month")?;
            let (sub, cred, tax, rate) = (
                f64s(&b, "subtotal")?,
                f64s(&b, "credits")?,
                f64s(&b, "taxes")?,
                f64s(&b, "exchange_rate_to_usd")?,
            );
            let (sign, fx) = (bools(&b, "sign_mismatch")?, bools(&b, "fx_overridden")?);
            for i in 0..b.num_rows() {
                let currency = cur.value(i).to_owned();
                let rate = rate.value(i);
                // fx_applied: 1.0 for USD, else the given rate.
                let fx_applied = if currency == "USD" { 1.0 } else { rate };
                // Silver has empty credits imputed to 0 already (credits_imputed).
                let credits = cred.value(i);
                let revenue_usd = (sub.value(i) - credits) * fx_applied;
                let taxes_usd = tax.value(i) * fx_applied;
                rows.push((
                    (
                        org.value(i).to_owned(),
                        month.value(i),
                        inv.value(i).to_owned(),
                    ),
                    currency,
                    [sub.value(i), credits, tax.value(i), rate, fx_applied],
                    [revenue_usd, taxes_usd, revenue_usd + taxes_usd],
                    [sign.value(i), fx.value(i)],
                ));
            }
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    write_mart(
        root,
        REVENUE,
        &mut rows.iter().map(|((org, month, inv), cur, a, usd, flags)| {
            (
                String::new(),
                vec![
                    Cell::Str(org),
                    Cell::Date(*month),
                    Cell::Str(inv),
                    Cell::Str(cur),
                    Cell::F64(a[0]),
                    Cell::F64(a[1]),
                    Cell::F64(a[2]),
                    Cell::F64(a[3]),
                    Cell::F64(a[4]),
                    Cell::F64(usd[0]),
                    Cell::F64(usd[1]),
                    Cell::F64(usd[2]),
                    Cell::Bool(flags[0]),
                    Cell::Bool(flags[1]),
                ],
            )
        }),
    )
}

// ---- accounting ----------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct SourceAccount {
    pub read: u64,
    pub silver: u64,
    pub quarantine: BTreeMap<String, u64>,
}

/// `gold/_accounting.json` (SPEC section 9): per source, records read from the log,
/// silver rows, quarantine rows by reason, counted in the lake's files. Fails when
/// read ≠ silver + quarantine: the lake would not account for every record.
pub fn write_accounting<'a>(
    root: &Path,
    read: impl Iterator<Item = (&'a str, u64)>,
) -> Result<BTreeMap<String, SourceAccount>> {
    let read: HashMap<&str, u64> = read.collect();
    let mut all = BTreeMap::new();
    for source in Source::ALL {
        let mut acc = SourceAccount {
            read: read.get(source.raw_topic()).copied().unwrap_or(0),
            ..Default::default()
        };
        for f in parquet_files(&table_dir(root, "silver", source.name()))? {
            acc.silver += parquet_rows(&f)?;
        }
        for f in parquet_files(&table_dir(root, "quarantine", source.name()))? {
            for b in read_parquet(&f, Some(&["reason"]))? {
                for r in strings(&b, "reason")?.iter().flatten() {
                    *acc.quarantine.entry(r.to_owned()).or_default() += 1;
                }
            }
        }
        let q: u64 = acc.quarantine.values().sum();
        if acc.read != acc.silver + q {
            bail!(
                "{source}: read {} but silver {} + quarantine {q}: the lake does not account for every record",
                acc.read,
                acc.silver
            );
        }
        all.insert(source.name().to_owned(), acc);
    }
    let bytes = serde_json::to_vec_pretty(&all)?;
    write_file_atomic(&root.join("gold").join("_accounting.json"), &bytes)?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use schemas::speed::Lineage;
    use schemas::{EventFlags, SilverEvent};

    /// A silver file of `events` (org, org name, cost, input partition).
    fn silver_file(root: &Path, dir: &str, name: &str, events: &[(&str, &str, f64, u32)]) {
        let spec = Arc::new(crate::rows::silver_table(Source::UsageEvents));
        let mut rows = crate::table::Rows::new(spec.clone()).unwrap();
        let service = hive_value(Path::new(dir), "service").unwrap().to_owned();
        for (i, &(org, org_name, cost, partition)) in events.iter().enumerate() {
            let e = SilverEvent {
                event_id: format!("{dir}/{name}/{i}"),
                ts_micros: 0,
                usage_date: 20_000 + i as i32 % 2,
                org_id: org.into(),
                resource_id: "r".into(),
                service: service.clone().into(),
                region: "eu-west".into(),
                metric: "requests".into(),
                value: Some(1.0 + i as f64 / 3.0),
                unit: "count".into(),
                cost_usd: cost,
                schema_version: 2,
                carbon_kg: Some(cost / 7.0),
                genai_tokens: None,
                org_name: org_name.into(),
                industry: "Media".into(),
                plan_tier: "pro".into(),
                hq_region: "eu-west".into(),
                resource_state: "active".into(),
                resource_created_at: 19_000,
            };
            let l = Lineage {
                source_file: None,
                line_no: None,
                topic: "raw.usage_events".into(),
                partition,
                offset: i as u64,
                ingest_ms: 0,
            };
            let mut cells = Vec::new();
            crate::rows::silver_event_row(&mut cells, &e, &EventFlags::default(), &l);
            rows.push(&cells).unwrap();
        }
        let path = table_dir(root, "silver/usage_events", dir).join(name);
        let batch = rows.finish().unwrap();
        write_parquet(&path, &spec.file_schema, RowOrder::Log, [Ok(batch)]).unwrap();
    }

    #[test]
    fn silver_reads_the_same_on_any_number_of_threads() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // Costs with fractions, so the order of the sums shows in their bits.
        let cost = |k: usize| (k * 7919 % 1000) as f64 / 7.0 + 0.1;
        let services = ["compute", "genai", "network", "storage"];
        for (d, date) in ["2025-01-01", "2025-01-02"].iter().enumerate() {
            for (s, service) in services.iter().enumerate() {
                for file in ["a", "b"] {
                    let events: Vec<_> = (0..40)
                        .map(|k| {
                            let (c, p) = (cost(k * (s + 1) + d), (k % 3) as u32);
                            match ["o1", "o2", "o3"][k % 3] {
                                // o1 first appears in storage's first file of the
                                // first day: its attributes come from there, whichever
                                // thread reads storage.
                                "o1" if d == 0 && *service < "storage" => ("o2", "o2", c, p),
                                "o1" if d == 0 && *service == "storage" && file == "a" => {
                                    ("o1", "o1 first", c, p)
                                }
                                "o1" => ("o1", "o1 later", c, p),
                                org => (org, org, c, p),
                            }
                        })
                        .collect();
                    let dir = format!("date={date}/service={service}");
                    silver_file(root, &dir, &format!("{file}.parquet"), &events);
                }
            }
        }
        // One cost far above the rest: its file's stored (false) flag is stale.
        silver_file(
            root,
            "date=2025-01-02/service=genai",
            "c.parquet",
            &[("o2", "o2", 1e6, 1)],
        );

        let services = silver_by_service(root).unwrap();
        let p99 = spike_p99(&services, 1).unwrap();
        assert_eq!(p99.len(), 4);
        let one = scan_silver(&services, &p99, 3.0, 1).unwrap();
        for groups in [2, 3, 8] {
            assert_eq!(spike_p99(&services, groups).unwrap(), p99);
            let many = scan_silver(&services, &p99, 3.0, groups).unwrap();
            assert_eq!(many.0, one.0, "{groups} threads: daily rows");
            for (a, b) in many.0.iter().zip(&one.0) {
                assert_eq!(a.totals.cost_usd.to_bits(), b.totals.cost_usd.to_bits());
            }
            assert_eq!(many.1, one.1, "{groups} threads: stale files");
        }
        let o1: Vec<_> = one.0.iter().filter(|r| r.org_id == "o1").collect();
        assert!(!o1.is_empty());
        assert!(o1.iter().all(|r| r.org_name == "o1 first"), "{o1:?}");
        assert_eq!(
            one.1,
            vec![
                table_dir(root, "silver/usage_events", "date=2025-01-02/service=genai")
                    .join("c.parquet")
            ]
        );
    }

    #[test]
    fn ticket_totals_follow_the_spec() {
        let mut t = TicketTotals::default();
        t.add(true, true, Some(4.0), false);
        t.add(false, false, Some(9.0), true); // out of range: not averaged
        t.add(true, false, None, false);
        assert_eq!(t.tickets, 3);
        assert_eq!(t.open_tickets, 1);
        assert_eq!(t.sla_breached, 1);
        assert!((t.sla_breach_rate() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(t.csat_avg(), Some(4.0));
        assert_eq!(t.csat_responses, 1);
        assert_eq!(TicketTotals::default().csat_avg(), None);
    }
}
