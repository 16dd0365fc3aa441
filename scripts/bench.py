#!/usr/bin/env python3
"""Replay, raw-log, processor, latency, compactor, Parquet-ceiling and dashboard-API
benchmarks; prints Markdown tables for BENCHMARKS.md.

Usage: scripts/bench.py [--sizes 1000000,10000000] [--runs 3] [--dir /tmp/usage-bench]
                        [--only replay,log,processor,latency,compactor,ceiling,api,kafka]
                        [--python PATH_TO_PYTHON_WITH_DUCKDB] [--page-warmup GIB]

For each size it generates a landing directory once (seed 1, 60 days, 80 orgs), then
replays it into a fresh data directory `runs` times per order, with fsync every 100 ms,
timing each run and reading its peak RSS from /usr/bin/time. A baseline measured in
the same run: `cp` of the landing files into a fresh directory (the same bytes read
and written once, with no parsing, framing or checksums). Medians are reported.

`--page-warmup GIB` writes GIB GiB to a file and deletes it just before each timed
processor and compactor run, and reports how fast those writes went. On a virtual
machine whose free memory the host takes back (these machines), the first write to
a page the guest freed a while ago costs a fault in the host: page-cache writes into
such pages ran at about 0.2 GB/s here against 1.1-1.3 GB/s into pages freed a
moment before. The warm-up puts the run where a machine in steady use is, its
writes landing on pages used recently; without it (the default) the figures
include that cost (see BENCHMARKS.md, "Fresh pages").
"""
import argparse, json, os, shutil, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
PRODUCER = os.path.join(TARGET, "release", "producer")
PROCESSOR = os.path.join(TARGET, "release", "processor")
LATENCY = os.path.join(TARGET, "release", "examples", "latency")
LOGBENCH = os.path.join(TARGET, "release", "examples", "logbench")
CEILING = os.path.join(TARGET, "release", "examples", "parquet_ceiling")
COMPACTOR = os.path.join(TARGET, "release", "compactor")
SERVING = os.path.join(TARGET, "release", "serving")


def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time; returns (seconds, peak RSS in MiB)."""
    secs, rss, _ = timed_cpu(cmd, env)
    return secs, rss


def timed_cpu(cmd, env=None):
    """As `timed`, and the command's CPU seconds (user + system)."""
    t = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M %U %S"] + cmd, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    secs = time.perf_counter() - t
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr}")
    rss_kb, user, system = out.stderr.strip().splitlines()[-1].split()
    return secs, int(rss_kb) / 1024, float(user) + float(system)


def warm_pages(args):
    """With `--page-warmup`, writes that many GiB to a file in args.dir, deletes it
    and syncs, so that the run that follows writes into pages the host has backed
    recently; records the write speed (GB/s) in args.warmups."""
    if args.page_warmup <= 0:
        return
    path = os.path.join(args.dir, "page-warmup")
    chunk = bytes(1 << 20)
    t = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(int(args.page_warmup * 1024)):
            f.write(chunk)
    secs = time.perf_counter() - t
    os.unlink(path)
    os.sync()
    args.warmups.append(args.page_warmup * (1 << 30) / secs / 1e9)


def warmup_note(args):
    """A line under a table saying whether and how the runs were warmed up."""
    if not args.warmups:
        print("No page warm-up before the runs (`--page-warmup 0`).\n")
    else:
        ws = sorted(args.warmups)
        print(f"Page warm-up of {args.page_warmup:g} GiB before each run: it was written at "
              f"{ws[0]:.2f}-{ws[-1]:.2f} GB/s (median {statistics.median(ws):.2f}).\n")
        args.warmups = []


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/usage-bench")
    ap.add_argument("--only", default="replay,log,processor,latency,compactor")
    ap.add_argument("--python", default=os.path.expanduser("~/.cache/usage-pipeline/venv/bin/python"))
    ap.add_argument("--page-warmup", type=float, default=0.0, metavar="GIB")
    args = ap.parse_args()
    args.warmups = []
    only = set(args.only.split(","))
    subprocess.run(["cargo", "build", "--release", "--quiet", "--workspace", "--bins", "--examples"],
                   cwd=ROOT, check=True)
    os.makedirs(args.dir, exist_ok=True)
    if "replay" in only:
        bench_replay(args)
    if "log" in only:
        bench_log(args)
    if "processor" in only:
        bench_processor(args)
    if "latency" in only:
        bench_latency(args)
    if "compactor" in only:
        bench_compactor(args)
    if "ceiling" in only:
        bench_ceiling(args)
    if "api" in only:
        bench_api(args)
    if "kafka" in only:
        bench_kafka(args)


def broker_cpu():
    """CPU seconds the test broker has used so far (0 when none runs)."""
    try:
        pid = open(os.path.expanduser("~/.cache/usage-pipeline/tansu/pid")).read().strip()
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def tansu(action):
    """Starts (on a fresh database) or stops the test broker; its host:port."""
    subprocess.run(["bash", os.path.join(ROOT, ".ci", "tansu"), action], check=True)
    if action == "start":
        path = os.path.expanduser("~/.cache/usage-pipeline/tansu/brokers")
        return open(path).read().strip()
    return None


def bench_kafka(args):
    """Replay (event-time order) and `processor --until-idle` on the embedded log and on
    the Kafka backend (the tansu test broker, a fresh database per run), alternating,
    on the first size."""
    size = int(args.sizes.split(",")[0])
    landing = landing_of(args, size)
    keys = ("replay", "processor", "peak", "replay_cpu", "processor_cpu", "broker_replay",
            "broker_processor")
    results = {b: {k: [] for k in keys} for b in ("embedded", "kafka")}
    try:
        for run in range(args.runs):
            for backend in ("embedded", "kafka") if run % 2 == 0 else ("kafka", "embedded"):
                data = os.path.join(args.dir, "kdata")
                shutil.rmtree(data, ignore_errors=True)
                env = dict(os.environ, PIPELINE_DATA_DIR=data, PIPELINE_LOG_FSYNC="100ms",
                           RUST_LOG="warn")
                if backend == "kafka":
                    env["PIPELINE_LOG_URL"] = f"kafka://{tansu('start')}/bench"
                r = results[backend]
                b0 = broker_cpu()
                secs, _, cpu = timed_cpu([PRODUCER, "replay", landing], env)
                b1 = broker_cpu()
                r["replay"].append(secs)
                r["replay_cpu"].append(cpu)
                r["broker_replay"].append(b1 - b0)
                secs, peak, cpu = timed_cpu(
                    [PROCESSOR, "--until-idle", "--metrics-addr", "127.0.0.1:0"], env)
                r["processor"].append(secs)
                r["peak"].append(peak)
                r["processor_cpu"].append(cpu)
                r["broker_processor"].append(broker_cpu() - b1)
                print(f"run {run} {backend}: replay {r['replay'][-1]:.1f} s, "
                      f"processor {secs:.1f} s", file=sys.stderr)
                shutil.rmtree(data, ignore_errors=True)
                if backend == "kafka":
                    tansu("stop")
    finally:
        tansu("stop")
    med = {b: {k: statistics.median(v) for k, v in r.items()} for b, r in results.items()}
    print(f"| backend ({size:,} events) | replay median | events/s | producer CPU | broker CPU | "
          "processor median | events/s | processor CPU | broker CPU | processor peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for backend, m in med.items():
        print(f"| {backend} | {m['replay']:.1f} s | {size / m['replay']:,.0f} | "
              f"{m['replay_cpu']:.1f} s | {m['broker_replay']:.1f} s | {m['processor']:.1f} s | "
              f"{size / m['processor']:,.0f} | {m['processor_cpu']:.1f} s | "
              f"{m['broker_processor']:.1f} s | {max(results[backend]['peak']):,.0f} MiB |")
    for backend, r in results.items():
        print(f"\n{backend} runs: replay {', '.join(f'{t:.1f}' for t in r['replay'])} s; "
              f"processor {', '.join(f'{t:.1f}' for t in r['processor'])} s")
    e, k = med["embedded"], med["kafka"]
    print(f"\nKafka / embedded: replay {k['replay'] / e['replay']:.1f}x the time, "
          f"processor {k['processor'] / e['processor']:.1f}x.\n")


def landing_of(args, size):
    landing = os.path.join(args.dir, f"landing-{size}")
    if not os.path.isdir(landing):
        per_day = -(-size // 60)
        subprocess.run([PRODUCER, "generate", "--out", landing, "--orgs", "80", "--days", "60",
                        "--events-per-day", str(per_day), "--seed", "1"], check=True,
                       stdout=subprocess.DEVNULL)
    return landing


def bench_processor(args):
    """Replays each size (event-time order) once per run, then times
    `processor --until-idle` with 1 thread and with 2 (the default) on copies of
    the same replayed log: the 1-thread run is the baseline of the same run."""
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        landing = landing_of(args, size)
        r = {t: ([], [], []) for t in (1, 2, 4)}  # wall, peak RSS, CPU
        replays = []
        for _ in range(args.runs):
            base = os.path.join(args.dir, "pdata-replayed")
            shutil.rmtree(base, ignore_errors=True)
            env = dict(os.environ, PIPELINE_DATA_DIR=base, PIPELINE_LOG_FSYNC="100ms", RUST_LOG="warn")
            replays.append(timed([PRODUCER, "replay", landing], env)[0])
            for threads in (1, 2, 4):
                data = os.path.join(args.dir, "pdata")
                shutil.rmtree(data, ignore_errors=True)
                shutil.copytree(base, data)
                env = dict(env, PIPELINE_DATA_DIR=data)
                warm_pages(args)
                secs, peak, cpu = timed_cpu([PROCESSOR, "--until-idle", "--metrics-addr", "127.0.0.1:0",
                                             "--threads", str(threads)], env)
                for v, x in zip(r[threads], (secs, peak, cpu)):
                    v.append(x)
                shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(base, ignore_errors=True)
        one = statistics.median(r[1][0])
        for threads in (1, 2, 4):
            walls, peaks, cpus = r[threads]
            med = statistics.median(walls)
            rows.append(f"| {size:,} | {threads} | {med:.2f} s | {size / med:,.0f} | "
                        f"{statistics.median(cpus):.1f} s | {max(peaks):,.0f} MiB | {one / med:.2f}x | "
                        f"{med / statistics.median(replays):.1f}x | {', '.join(f'{t:.2f}' for t in walls)} |")
    print("| events | threads | processor median wall | events/s | CPU | peak RSS | speedup vs 1 thread | "
          "vs replay of the same data | runs |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    warmup_note(args)


# The daily mart as tests/duckdb/check_lake.py writes it, timed on the same silver files.
DUCKDB_DAILY = """
import sys, time, duckdb
sys.path.insert(0, sys.argv[2])
from check_lake import DAILY_SQL
con = duckdb.connect(config={"threads": 2})
silver = f"read_parquet('{sys.argv[1]}/silver/usage_events/**/*.parquet', hive_partitioning = true)"
t = time.perf_counter()
con.execute("create table d as " + DAILY_SQL.format(silver=silver))
print(time.perf_counter() - t)
"""


def bench_compactor(args):
    """Replays and processes each size once, then times `compactor --once` into a
    fresh lake `runs` times. Baseline in the same run: DuckDB (2 threads) computing
    only the daily mart from the same silver files."""
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        data, env = processed_data(args, size)
        env = dict(env, RUST_LOG="info")
        walls, compacts, golds, peaks, duck = [], [], [], [], []
        for _ in range(args.runs):
            for d in ("lake", "lake.gen"):
                p = os.path.join(data, d)
                if os.path.islink(p):
                    os.unlink(p)
                shutil.rmtree(p, ignore_errors=True)
            warm_pages(args)
            t = time.perf_counter()
            out = subprocess.run(["/usr/bin/time", "-f", "%M", COMPACTOR, "--once"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            walls.append(time.perf_counter() - t)
            if out.returncode != 0:
                sys.exit(f"compactor failed:\n{out.stderr}")
            import re
            plain = re.sub(r"\x1b\[[0-9;]*m", "", out.stderr)
            compacts.append(float(re.search(r"compact_seconds=([0-9.]+)", plain).group(1)))
            golds.append(float(re.search(r"gold_seconds=([0-9.]+)", plain).group(1)))
            events = int(re.search(r"events=([0-9]+)", plain).group(1))
            peaks.append(int(plain.strip().splitlines()[-1]) / 1024)
            if os.path.exists(args.python):
                duck.append(float(subprocess.run([args.python, "-c", DUCKDB_DAILY, os.path.join(data, "lake"),
                                                  os.path.join(ROOT, "tests", "duckdb")],
                                                 check=True, capture_output=True, text=True).stdout))
        med = statistics.median(walls)
        cm, gm = statistics.median(compacts), statistics.median(golds)
        dm = f"{statistics.median(duck):.2f} s" if duck else "n/a"
        rows.append(f"| {events:,} | {med:.2f} s | {cm:.2f} s | {events / cm:,.0f} | {gm:.2f} s | {dm} | "
                    f"{max(peaks):,.0f} MiB | {', '.join(f'{t:.2f}' for t in walls)} |")
    print("| events | compactor --once median wall | topics -> bronze/silver/quarantine/speed | "
          "events/s | gold (all marts, spike check, accounting) | DuckDB daily mart only (baseline) | "
          "peak RSS | runs (wall) |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    warmup_note(args)


# The same tables written again by DuckDB from memory: zstd at level 1 (as the lake's),
# two threads, into a memory file system (no disk, as the Rust side's sink).
DUCKDB_WRITE = """
import sys, time, duckdb, os, shutil
gen, out, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect(config={"threads": 2})
con.execute("set enable_progress_bar = false")
tables = ["bronze/usage_events", "silver/usage_events", "quarantine/usage_events"]
for i, t in enumerate(tables):
    con.execute(f"create table t{i} as select * from "
                f"read_parquet('{gen}/{t}/**/*.parquet', hive_partitioning = false)")
for _ in range(runs):
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    t = time.perf_counter()
    for i in range(len(tables)):
        con.execute(f"copy t{i} to '{out}/t{i}.parquet' "
                    "(format parquet, compression zstd, compression_level 1)")
    print("seconds", time.perf_counter() - t)
shutil.rmtree(out, ignore_errors=True)
"""


def bench_ceiling(args):
    """What writing the events' Parquet alone costs: the `parquet_ceiling` example
    writes the bronze, silver and quarantine event files of a compacted lake again
    from memory, with the compactor's writer settings, to a sink (two threads with
    zstd, two without it, one with it). Baseline in the same run: DuckDB writing the
    same rows from memory with zstd level 1 on two threads."""
    import re
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        data, env = processed_data(args, size)
        lake = os.path.join(data, "lake")
        if not os.path.exists(lake):
            timed([COMPACTOR, "--once"], env)
        gen = os.path.realpath(lake)

        def ceiling(threads, *extra):
            out = subprocess.run([CEILING, gen, "--threads", str(threads), "--runs", str(args.runs), *extra],
                                 check=True, capture_output=True, text=True).stdout
            events = int(re.search(r"\((\d+) silver events\)", out).group(1))
            return events, [float(x) for x in re.findall(r"rows in ([0-9.]+) s", out)]

        events, two = ceiling(2)
        _, plain = ceiling(2, "--uncompressed")
        _, one = ceiling(1)
        duck = []
        if os.path.exists(args.python):
            out = subprocess.run([args.python, "-c", DUCKDB_WRITE, gen, "/dev/shm/usage-bench-duckdb",
                                  str(args.runs)], check=True, capture_output=True, text=True).stdout
            duck = [float(x) for x in re.findall(r"^seconds ([0-9.]+)$", out, re.M)]
        med = statistics.median(two)
        dm = statistics.median(duck) if duck else None
        runs = ", ".join(f"{t:.2f}" for t in two)
        rows.append(f"| {events:,} | {med:.2f} s ({runs}) | {events / med:,.0f} | "
                    f"{statistics.median(plain):.2f} s | {statistics.median(one):.2f} s | "
                    + (f"{dm:.2f} s ({', '.join(f'{t:.2f}' for t in duck)}) | {dm / med:.1f}x |"
                       if dm else "n/a | n/a |"))
    print("| silver events | parquet-rs, zstd, 2 threads: median (runs) | events/s | "
          "parquet-rs, uncompressed, 2 threads | parquet-rs, zstd, 1 thread | "
          "DuckDB, zstd level 1, 2 threads (baseline) | DuckDB / parquet-rs |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()


def processed_data(args, size):
    """A data directory with `size` events replayed and processed (kept between runs)."""
    landing = landing_of(args, size)
    data = os.path.join(args.dir, f"cdata-{size}")
    env = dict(os.environ, PIPELINE_DATA_DIR=data, PIPELINE_LOG_FSYNC="100ms", RUST_LOG="warn")
    if not os.path.exists(os.path.join(data, "processed")):
        shutil.rmtree(data, ignore_errors=True)
        timed([PRODUCER, "replay", landing], env)
        timed([PROCESSOR, "--until-idle", "--metrics-addr", "127.0.0.1:0"], env)
        open(os.path.join(data, "processed"), "w").close()
    return data, env


def wrk_latency(base, paths, seconds, connections, script_dir):
    """p50 and p99 in ms and requests/s of `wrk --latency`, its requests cycling
    through `paths`."""
    script = os.path.join(script_dir, "paths.lua")
    with open(script, "w") as f:
        f.write("local paths = {" + ",".join(json.dumps(p) for p in paths) + "}\n"
                "local i = 0\n"
                "request = function()\n  i = i % #paths + 1\n"
                "  return wrk.format(nil, paths[i])\nend\n")
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, base],
                         check=True, capture_output=True, text=True).stdout
    def ms(text):
        for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
            if text.endswith(unit):
                return float(text[: -len(unit)]) * f
        return float(text)
    pct = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "99%"):
            pct[parts[0]] = ms(parts[1])
        if line.startswith("Requests/sec:"):
            rps = float(line.split()[1])
        if "Non-2xx" in line:
            sys.exit(f"wrk saw errors on {paths[0]}:\n{out}")
    return pct["50%"], pct["99%"], rps


def bench_api(args):
    """The marts of the largest size published, `serving serve` on loopback, and wrk
    (2 threads, 50 connections, 10 s) on each endpoint, its requests cycling through
    every org (and its last 30 days), `runs` times; with the answer cache (the
    default) and without it (`--cache-mib 0`). Baseline in the same run: `/healthz`
    (one small read: the server's floor)."""
    import datetime, urllib.request
    size = max(int(s) for s in args.sizes.split(","))
    data, env = processed_data(args, size)
    if not os.path.exists(os.path.join(data, "lake")):
        timed([COMPACTOR, "--once"], env)
    publish_secs, _ = timed([SERVING, "publish"], env)
    for mode, extra in (("answer cache on (default)", []), ("no cache (--cache-mib 0)", ["--cache-mib", "0"])):
        server = subprocess.Popen([SERVING, "serve", "--addr", "127.0.0.1:0"] + extra, env=env,
                                  stdout=subprocess.PIPE, text=True)
        try:
            base = server.stdout.readline().split()[1].rstrip("/")
            orgs = json.load(urllib.request.urlopen(base + "/api/orgs"))
            def per_org(fmt):
                out = []
                for o in orgs:
                    to = o["last_date"]
                    frm = (datetime.date.fromisoformat(to) - datetime.timedelta(days=29)).isoformat()
                    out.append(fmt.format(org=o["org_id"], frm=frm, to=to))
                return out
            endpoints = [("/healthz (baseline)", ["/healthz"]),
                         ("q1, 30 days", per_org("/api/q1?org={org}&from={frm}&to={to}")),
                         ("q2", per_org("/api/q2?org={org}")), ("q3", ["/api/q3"]),
                         ("q4", per_org("/api/q4?org={org}")),
                         ("q5, 30 days", per_org("/api/q5?org={org}&from={frm}&to={to}")),
                         ("orgs", ["/api/orgs"]),
                         ("dashboard page (5 charts)", per_org("/?org={org}&from={frm}&to={to}"))]
            rows = []
            for name, paths in endpoints:
                runs = [wrk_latency(base, paths, 10, 50, args.dir) for _ in range(args.runs)]
                p50 = statistics.median(x[0] for x in runs)
                p99 = statistics.median(x[1] for x in runs)
                rps = statistics.median(x[2] for x in runs)
                rows.append(f"| {name} | {p50:.2f} ms | {p99:.2f} ms | {rps:,.0f} | "
                            f"{', '.join(f'{x[1]:.2f}' for x in runs)} |")
        finally:
            server.kill()
        print(f"{mode}: marts of {size:,} events, published in {publish_secs:.1f} s; {len(orgs)} orgs.")
        print()
        print("| endpoint | p50 (median of runs) | p99 (median of runs) | requests/s | p99 of each run (ms) |")
        print("|---|---|---|---|---|")
        print("\n".join(rows))
        print()


def bench_latency(args):
    runs = []
    for _ in range(args.runs):
        d = os.path.join(args.dir, "latency")
        shutil.rmtree(d, ignore_errors=True)
        out = subprocess.run([LATENCY, d, "10000", "20"], check=True, capture_output=True,
                             text=True, env=dict(os.environ, RUST_LOG="warn")).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        shutil.rmtree(d, ignore_errors=True)
    print("| append -> committed silver, 10,000 events/s, 20 s | median | runs |")
    print("|---|---|---|")
    for k in ("p50_ms", "p99_ms", "max_ms", "measured"):
        vals = [r[k] for r in runs]
        print(f"| {k} | {statistics.median(vals):,} | {', '.join(str(v) for v in vals)} |")
    print()


def bench_replay(args):
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        landing = landing_of(args, size)
        mb = dir_bytes(landing) / 1e6
        events = sum(1 for d, _, fs in os.walk(landing) for f in fs if f.endswith(".jsonl")
                     for _ in open(os.path.join(d, f), "rb"))
        results = {"cp": [], "file": [], "event-time": []}
        rss = {"file": [], "event-time": []}
        for _ in range(args.runs):
            copy = os.path.join(args.dir, "copy")
            shutil.rmtree(copy, ignore_errors=True)
            results["cp"].append(timed(["cp", "-r", landing, copy])[0])
            shutil.rmtree(copy, ignore_errors=True)
            for order in ("file", "event-time"):
                data = os.path.join(args.dir, "data")
                shutil.rmtree(data, ignore_errors=True)
                env = dict(os.environ, PIPELINE_DATA_DIR=data, PIPELINE_LOG_FSYNC="100ms",
                           RUST_LOG="warn")
                secs, peak = timed([PRODUCER, "replay", landing, "--order", order], env)
                results[order].append(secs)
                rss[order].append(peak)
                shutil.rmtree(data, ignore_errors=True)
        base = statistics.median(results["cp"])
        for order in ("file", "event-time"):
            med = statistics.median(results[order])
            rows.append(f"| {events:,} | {order} | {med:.2f} s | {events / med:,.0f} | "
                        f"{mb / med:,.0f} | {max(rss[order]):,.0f} MiB | {med / base:.1f}x "
                        f"(cp {base:.2f} s) | {', '.join(f'{r:.2f}' for r in results[order])} |")
    print("| events | order | median wall | events/s | MB/s (landing) | peak RSS | vs cp | runs |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()


def bench_log(args):
    lb = []
    for _ in range(args.runs):
        d = os.path.join(args.dir, "logbench")
        shutil.rmtree(d, ignore_errors=True)
        out = subprocess.run([LOGBENCH, d, "2000000", "2000", "100ms"], check=True,
                             capture_output=True, text=True).stdout
        lb.append(json.loads(out))
        shutil.rmtree(d, ignore_errors=True)
    print("| raw log, 2,000,000 records of ~375 B, batches of 2,000 | median | runs |")
    print("|---|---|---|")
    for k in ("append_records_per_s", "append_mb_per_s", "read_records_per_s", "read_mb_per_s"):
        vals = [r[k] for r in lb]
        print(f"| {k} | {statistics.median(vals):,.0f} | {', '.join(f'{v:,.0f}' for v in vals)} |")


if __name__ == "__main__":
    main()
