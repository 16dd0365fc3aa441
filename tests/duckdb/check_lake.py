"""Reads the lake with DuckDB (an engine other than the one that wrote it), recomputes
every gold mart from silver with SQL written from SPEC section 6 line by line, and
compares it with the compactor's gold. Prints one JSON object:

  {"silver": {...counts and flags...}, "marts": {mart: {"gold_rows": n,
   "expected_rows": m, "mismatches": k}}, "accounting": {...}}

Usage: python check_lake.py <lake_dir>

With `anomalies` after the lake, prints instead DuckDB's cost_anomaly_mart, computed
from silver as above, as one JSON array of rows (org_id, usage_date, service,
cost_usd, anomaly_score, methods, z_score, mad_score, p99_service), highest
anomaly_score first: what `serving query q6` must answer.
"""

import json
import sys

import duckdb

# org_daily_usage_by_service, key (org_id, usage_date, service): sums skip nulls and
# are 0 over no rows; cost without cost_negative events; tokens without misplaced ones.
# (`scripts/bench.py` times this same query as its baseline.)
DAILY_SQL = """
select org_id, usage_date, service,
       any_value(org_name) as org_name, any_value(industry) as industry,
       any_value(plan_tier) as plan_tier,
       count(*) as events,
       coalesce(sum(value) filter (where metric = 'requests'), 0) as requests,
       coalesce(sum(value) filter (where metric = 'cpu_hours'), 0) as cpu_hours,
       coalesce(sum(value) filter (where metric = 'storage_gb_hours'), 0) as storage_gb_hours,
       coalesce(sum(cost_usd) filter (where not cost_negative), 0) as cost_usd,
       count(*) filter (where cost_negative) as negative_cost_events,
       coalesce(sum(genai_tokens) filter (where not tokens_misplaced), 0) as genai_tokens,
       coalesce(sum(carbon_kg), 0) as carbon_kg
from {silver} group by org_id, usage_date, service
"""


def main():
    lake = sys.argv[1]
    con = duckdb.connect()


    def scan(table):
        return f"read_parquet('{lake}/{table}/**/*.parquet', hive_partitioning = true)"


    con.execute(f"create view silver as select * from {scan('silver/usage_events')}")
    con.execute(f"create view bronze as select * from {scan('bronze/usage_events')}")
    con.execute(f"create view tickets as select * from {scan('silver/support_tickets')}")
    con.execute(f"create view billing as select * from {scan('silver/billing_monthly')}")
    for mart in [
        "org_daily_usage_by_service",
        "revenue_by_org_month",
        "cost_anomaly_mart",
        "tickets_by_org_date",
        "tickets_by_severity_date",
        "genai_tokens_by_org_date",
    ]:
        con.execute(f"create view gold_{mart} as select * from {scan('gold/' + mart)}")

    # org_daily_usage_by_service, key (org_id, usage_date, service): sums skip nulls and
    # are 0 over no rows; cost without cost_negative events; tokens without misplaced ones.
    con.execute(
        "create view expected_org_daily_usage_by_service as "
        + DAILY_SQL.format(silver="silver")
    )

    # revenue_by_org_month: credits empty -> 0; fx_applied 1.0 for USD, else the rate.
    con.execute("""
    create view expected_revenue_by_org_month as
    select org_id, month, invoice_id, currency, subtotal,
           coalesce(credits, 0) as credits, taxes, exchange_rate_to_usd,
           case when currency = 'USD' then 1.0 else exchange_rate_to_usd end as fx_applied,
           (subtotal - coalesce(credits, 0)) * fx_applied as revenue_usd,
           taxes * fx_applied as taxes_usd,
           revenue_usd + taxes_usd as total_usd,
           sign_mismatch, fx_overridden
    from billing
    """)

    # cost_anomaly_mart: series = cost_usd of one (org_id, service) over its days in the
    # daily mart; z with the sample stddev; MAD; p99 of the service's daily rows.
    con.execute("""
    create view expected_cost_anomaly_mart as
    with d as (select * from expected_org_daily_usage_by_service),
    s as (
      select org_id, service, avg(cost_usd) as mean, stddev_samp(cost_usd) as stddev,
             quantile_cont(cost_usd, 0.5) as median
      from d group by org_id, service),
    m as (
      select d.org_id, d.service, quantile_cont(abs(d.cost_usd - s.median), 0.5) as mad
      from d join s using (org_id, service) group by d.org_id, d.service),
    p as (select service, quantile_cont(cost_usd, 0.99) as p99_service from d group by service),
    x as (
      select d.org_id, d.usage_date, d.service, d.cost_usd, s.mean, s.stddev,
             case when s.stddev > 0 then (d.cost_usd - s.mean) / s.stddev end as z_score,
             s.median, m.mad,
             case when m.mad <> 0 then 0.6745 * (d.cost_usd - s.median) / m.mad end as mad_score,
             p.p99_service
      from d join s using (org_id, service) join m using (org_id, service) join p using (service)),
    f as (
      select *,
             coalesce(stddev > 0 and abs(z_score) > 3, false) as z_flag,
             coalesce(mad > 0 and abs(mad_score) > 3, false) as mad_flag,
             cost_usd > 1.5 * p99_service as pctl_flag
      from x)
    select *,
           greatest(abs(coalesce(z_score, 0)), abs(coalesce(mad_score, 0))) as anomaly_score,
           concat_ws(',', case when z_flag then 'z' end, case when mad_flag then 'mad' end,
                     case when pctl_flag then 'pctl' end) as methods
    from f where z_flag or mad_flag or pctl_flag
    """)

    # tickets: open = no resolved_at; csat_avg over CSAT in 1..5 only (null when none).
    TICKET_MEASURES = """
           count(*) as tickets,
           count(*) filter (where resolved_at is null) as open_tickets,
           count(*) filter (where sla_breached) as sla_breached_n,
           count(*) filter (where sla_breached) / count(*) as sla_breach_rate,
           avg(csat) filter (where csat between 1 and 5) as csat_avg,
           count(csat) filter (where csat between 1 and 5) as csat_responses
    """
    con.execute(f"""
    create view expected_tickets_by_org_date as
    select org_id, created_at as created_date, severity, {TICKET_MEASURES}
    from tickets group by org_id, created_at, severity
    """)
    con.execute(f"""
    create view expected_tickets_by_severity_date as
    select severity, created_at as created_date, {TICKET_MEASURES}
    from tickets group by severity, created_at
    """)

    # genai_tokens_by_org_date: rows only where there are genai events.
    con.execute("""
    create view expected_genai_tokens_by_org_date as
    select org_id, usage_date, count(*) as genai_events,
           coalesce(sum(genai_tokens) filter (where not tokens_misplaced), 0) as total_tokens,
           coalesce(sum(cost_usd) filter (where not cost_negative), 0) as genai_cost_usd
    from silver where service = 'genai' group by org_id, usage_date
    """)

    KEYS = {
        "org_daily_usage_by_service": ["org_id", "usage_date", "service"],
        "revenue_by_org_month": ["org_id", "month"],
        "cost_anomaly_mart": ["org_id", "usage_date", "service"],
        "tickets_by_org_date": ["org_id", "created_date", "severity"],
        "tickets_by_severity_date": ["severity", "created_date"],
        "genai_tokens_by_org_date": ["org_id", "usage_date"],
    }
    RENAMED = {"sla_breached": "sla_breached_n"}


    def compare(mart):
        gold_cols = con.execute(f"describe gold_{mart}").fetchall()
        keys = KEYS[mart]
        on = " and ".join(f"g.{k} = e.{k}" for k in keys)
        diffs = []
        for c, ctype, *_ in gold_cols:
            if c in keys:
                continue
            ec = RENAMED.get(c, c)
            if ctype in ("DOUBLE", "BIGINT", "INTEGER"):
                diffs.append(
                    f"""not (g.{c} is not distinct from e.{ec}
                          or abs(g.{c}::double - e.{ec}::double)
                             <= 1e-9 * greatest(1, abs(e.{ec}::double)))"""
                )
            else:
                diffs.append(f"g.{c} is distinct from e.{ec}")
        cond = " or ".join(diffs) if diffs else "false"
        q = f"""
        select
          (select count(*) from gold_{mart}) as gold_rows,
          (select count(*) from expected_{mart}) as expected_rows,
          (select count(*) from gold_{mart} g full outer join expected_{mart} e on {on}
           where g.{keys[0]} is null or e.{keys[0]} is null or {cond}) as mismatches
        """
        g, e, m = con.execute(q).fetchone()
        return {"gold_rows": g, "expected_rows": e, "mismatches": m}


    if sys.argv[2:] == ["anomalies"]:
        rows = con.execute("""
          select org_id, strftime(usage_date, '%Y-%m-%d') as usage_date, service, cost_usd,
                 anomaly_score, methods, z_score, mad_score, p99_service
          from expected_cost_anomaly_mart
          order by anomaly_score desc, org_id, usage_date, service""")
        names = [d[0] for d in rows.description]
        print(json.dumps([dict(zip(names, r)) for r in rows.fetchall()]))
        return

    out = {
        "silver": dict(
            zip(
                ["events", "unit_imputed", "cost_negative", "before_resource", "cost_spike",
                 "tokens_misplaced"],
                con.execute("""
                  select count(*), count_if(unit_imputed), count_if(cost_negative),
                         count_if(before_resource), count_if(cost_spike),
                         count_if(tokens_misplaced) from silver""").fetchone(),
            )
        ),
        "bronze_events": con.execute("select count(*) from bronze").fetchone()[0],
        "marts": {m: compare(m) for m in KEYS},
        "accounting": json.load(open(f"{lake}/gold/_accounting.json")),
    }
    # The cost_spike flag, recomputed: cost > 1.5 x p99 of the service's kept costs
    # that are not cost_negative.
    out["silver"]["cost_spike_expected"] = con.execute("""
      with p as (select service, quantile_cont(cost_usd, 0.99) as p99 from silver
                 where not cost_negative group by service)
      select count(*) from silver join p using (service) where cost_usd > 1.5 * p99
    """).fetchone()[0]
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
