#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets from the sample landing directory,
a small generated one, a log written by the pipeline and the config file.

Usage: fuzz/seeds.py LOG_DIR GENERATED_LANDING   (from the repository root)
  LOG_DIR: a pipeline's data/log (any run of `producer replay` and `processor`)
  GENERATED_LANDING: `producer generate --out DIR --orgs 3 --days 2 --events-per-day 300`
"""
import glob, hashlib, os, struct, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "..", "shared", "landing")
MASTER = ["customers_orgs", "users", "resources", "billing_monthly", "support_tickets",
          "marketing_touches", "nps_surveys"]


def put(target, data):
    d = os.path.join(ROOT, "fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def main():
    log_dir, generated = sys.argv[1], sys.argv[2]
    # Event lines: a spread of the sample and of the generator's defects.
    for landing, step in ((SAMPLE, 97), (generated, 7)):
        for path in sorted(glob.glob(os.path.join(landing, "**", "*.jsonl"), recursive=True))[:3]:
            with open(path, "rb") as f:
                for i, line in enumerate(f):
                    if i % step == 0:
                        put("event_line", line.rstrip(b"\n"))
    for extra in (b"", b"{}", b"[]", b"null", b"{\"a\":" * 64, b"{\"event_id\":\"\x00\"}"):
        put("event_line", extra)
    # CSV extracts: the first byte picks the source (the order of Source::MASTER).
    for landing in (SAMPLE, generated):
        for i, name in enumerate(MASTER):
            for path in glob.glob(os.path.join(landing, f"{name}*.csv")):
                with open(path, "rb") as f:
                    head = b"".join(f.readlines()[:25])
                put("csv_rows", bytes([i]) + head)
    # Log batches, as they are (mode 0) and with the checksum fixed up (mode 1); the
    # segments' indexes.
    for seg in sorted(glob.glob(os.path.join(log_dir, "*", "*", "*.log")))[:12]:
        data = open(seg, "rb").read()
        pos, n = 0, 0
        while pos + 16 <= len(data) and n < 4:
            length = struct.unpack_from("<I", data, pos + 8)[0]
            batch = data[pos:pos + 12 + length]
            if len(batch) <= 16384:
                put("log_batch", b"\x00" + batch)
                put("log_batch", b"\x01" + batch)
                n += 1
            pos += 12 + length
        index = seg[:-4] + ".index"
        if os.path.exists(index):
            put("log_index", open(index, "rb").read()[:4096])
    # The config file.
    put("config", open(os.path.join(ROOT, "config", "pipeline.toml"), "rb").read())
    put("config", b"[log]\nevent_partitions = 0\n")
    put("config", b"[log]\nfsync = \"100ms\"\n[serving]\nurl = \"embedded:x\"\n")


if __name__ == "__main__":
    main()
