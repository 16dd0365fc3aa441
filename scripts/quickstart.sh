#!/usr/bin/env bash
# The whole pipeline, end to end, on generated data with the embedded defaults.
# Usage: scripts/quickstart.sh [DEMO_DIR]   (default ./demo; it is recreated)
# It ends by serving the dashboard at $DASHBOARD_ADDR (default 127.0.0.1:8080) until
# Ctrl-C; QUICKSTART_SERVE=0 stops after printing the queries instead.
set -euo pipefail
cd "$(dirname "$0")/.."
demo="${1:-./demo}"
target="${CARGO_TARGET_DIR:-target}"

bash scripts/system-deps.sh
echo "== building (release; the first build compiles RocksDB, librdkafka, Arrow and Parquet: about 40 minutes on 2 cores)"
cargo build --release --bins --quiet
bin="$target/release"

rm -rf "$demo"
mkdir -p "$demo"
export PIPELINE_DATA_DIR="$demo/data"
export RUST_LOG="${RUST_LOG:-warn}"

echo "== generating a landing directory: 40 orgs, 30 days, 2,000 events a day"
"$bin/producer" generate --out "$demo/landing" --orgs 40 --days 30 --events-per-day 2000 --seed 7

echo "== replaying it into the raw topics of the embedded log ($PIPELINE_DATA_DIR/log)"
"$bin/producer" replay "$demo/landing" >/dev/null

echo "== processing it: rules, dedup, enrichment, windows (state in $PIPELINE_DATA_DIR/state)"
"$bin/processor" --until-idle --metrics-addr 127.0.0.1:0

echo "== what the log holds"
"$bin/producer" topics

echo "== compacting it into the Parquet lake ($PIPELINE_DATA_DIR/lake) and computing gold"
"$bin/compactor" --once

echo "== gold/_accounting.json: every record read is in silver or quarantine"
cat "$PIPELINE_DATA_DIR/lake/gold/_accounting.json"
echo
echo "== the lake, as DuckDB, Spark or pandas read it:"
echo "   read_parquet('$PIPELINE_DATA_DIR/lake/gold/<mart>/**/*.parquet', hive_partitioning = true)"
for mart in "$PIPELINE_DATA_DIR"/lake/gold/*/; do
  n=$(find "$mart" -name '*.parquet' | wc -l)
  echo "   $(basename "$mart"): $n file(s)"
done

echo "== publishing the marts and the real-time view to the serving store ($PIPELINE_DATA_DIR/serving)"
"$bin/serving" publish

org=$("$bin/serving" query q4 --format csv | sed -n 2p | cut -d, -f1)
echo "== the five dashboard queries for $org"
echo "-- q1: daily cost and requests per service (first 15 rows)"
"$bin/serving" query q1 --org "$org" | head -n 16
echo "-- q2: top 3 services by cost over the org's last 14 days"
"$bin/serving" query q2 --org "$org"
echo "-- q3: critical tickets and SLA breach rate per day, last 30 days"
"$bin/serving" query q3
echo "-- q4: monthly revenue in USD"
"$bin/serving" query q4 --org "$org"
echo "-- q5: GenAI tokens and estimated cost per day"
"$bin/serving" query q5 --org "$org" | head -n 16

addr="${DASHBOARD_ADDR:-127.0.0.1:8080}"
if [ "${QUICKSTART_SERVE:-1}" != 0 ]; then
  echo "== the dashboard and its JSON API (/api/q1 .. /api/q5, /api/orgs), until Ctrl-C:"
  echo "   open http://$addr/ in a browser"
  exec "$bin/serving" serve --addr "$addr"
fi
