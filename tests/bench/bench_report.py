#!/usr/bin/env python3
"""sluicectl report over 1,000,000 flow records against jq grouping the same
file (`jq -s 'group_by(.host) | ...'`, Debian's jq 1.6), in one run: records
per second and peak RSS of each over interleaved rounds. The log is
bench_suggest's (flow_start, flow_end, deny and dns records of 2,000 names over
20 sandboxes); the report builds every table of `--format json`, jq only the
one count. No namespace and no root needed. See tests/bench/README.md.

usage: bench_report.py [--quick] [--sluicectl PATH] [--records N] [--rounds N]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_suggest import JQ, REPO, make_log, measure   # noqa: E402

GOAL = 10                   # report's records/s over jq's


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100,000 records, 2 rounds")
    ap.add_argument("--sluicectl", default=str(REPO / "build/ctl/sluicectl"))
    ap.add_argument("--records", type=int)
    ap.add_argument("--rounds", type=int)
    a = ap.parse_args()
    n = a.records or (100_000 if a.quick else 1_000_000)
    rounds = a.rounds or (2 if a.quick else 5)
    if not shutil.which("jq") or not os.access(a.sluicectl, os.X_OK):
        print("bench_report: needs jq (scripts/deps) and a built sluicectl", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="sluice-bench-report-"))
    try:
        log = tmp / "flows.jsonl"
        make_log(log, n)
        small = tmp / "small.jsonl"
        make_log(small, n // 10)
        paths = {"report": [a.sluicectl, "report", "--format", "json", "-"], "jq": JQ}
        res = {k: [] for k in paths}
        for rnd in range(rounds):
            for k in (("report", "jq") if rnd % 2 == 0 else ("jq", "report")):
                res[k].append(measure(paths[k], log))
            print(f"  round {rnd + 1}/{rounds}: " + ", ".join(
                f"{k} {res[k][-1][0]:.2f} s {res[k][-1][1]:,} KiB" for k in paths), flush=True)
        tenth = measure(paths["report"], small)[1]
        print(f"{n:,} records ({log.stat().st_size / (1 << 20):.0f} MiB), {rounds} "
              "interleaved rounds")
        print(f"{'':24} {'records/s':>12} {'peak RSS KiB':>13}")
        for k in paths:
            rate = statistics.median(n / s for s, _ in res[k])
            print(f"{k:24} {rate:12,.0f} {statistics.median(r for _, r in res[k]):13,.0f}")
        print(f"report over a tenth of the records: peak RSS {tenth:,} KiB")
        ratios = [j[0] / s[0] for s, j in zip(res["report"], res["jq"])]
        med = statistics.median(ratios)
        print(f"report / jq, records/s: {med:.2f} ({min(ratios):.2f}-{max(ratios):.2f}); "
              f"goal >= {GOAL}: {'MET' if med >= GOAL else 'NOT MET'}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
