#!/usr/bin/env python3
"""sluicectl suggest over 1,000,000 flow records against jq doing only a
group-by-host count over the same file (`jq -s 'group_by(.host) | ...'`,
Debian's jq 1.6), in one run: records per second and peak RSS of each, over
interleaved rounds. (jq's streaming form, `reduce inputs as $r ({};
.[$r.host] += 1)`, copies its object on every update in jq 1.6: 20,000
records take it 5 s, a million hours. group_by is jq's own way to do this.)

The log is synthetic but shaped like the proxy's: flow_start, flow_end, deny
and dns records of 2,000 names over 20 sandboxes, about 230 bytes a line. No
namespace and no root needed. See tests/bench/README.md.

usage: bench_suggest.py [--quick] [--sluicectl PATH] [--records N] [--rounds N]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
JQ = ["jq", "-s", "group_by(.host) | map({key: (.[0].host // \"-\"), value: length}) | "
      "from_entries"]


def make_log(path, n, names=2000, sandboxes=20):
    """N records: per flow a flow_start and a flow_end, and every tenth a deny or a dns."""
    kinds = ("flow_start", "flow_end", "flow_start", "flow_end", "flow_start", "flow_end",
             "flow_start", "flow_end", "deny", "dns")
    with open(path, "w") as f:
        for i in range(n):
            kind = kinds[i % 10]
            host = f"n{(i // 2) % names}.pkg{(i // 2) % 37}.example.org"
            sb = f"sb{i % sandboxes}"
            if kind == "dns":
                f.write(f'{{"ts":"2026-12-05T10:00:{i % 60:02d}.000Z","sandbox":"{sb}",'
                        f'"event":"dns","proto":"dns","qname":"{host}","qtype":"A",'
                        '"rcode":"NOERROR","verdict":"audit","policy":"84c7041f8ff5"}\n')
                continue
            extra = (',"bytes_up":517,"bytes_down":18340,"duration_ms":17'
                     if kind == "flow_end" else "")
            reason = ',"reason":"not_allowlisted"' if kind == "deny" else ""
            f.write(f'{{"ts":"2026-12-05T10:00:{i % 60:02d}.000Z","sandbox":"{sb}",'
                    f'"event":"{kind}","flow":{i},"proto":"tls","src":"10.200.0.2:40112",'
                    f'"orig_dst":"203.0.113.99:443","host":"{host}","port":443,'
                    f'"verdict":"audit"{reason}{extra},"policy":"84c7041f8ff5"}}\n')


def measure(argv, path):
    """ARGV reading PATH on standard input: (seconds, peak RSS KiB). GNU time forks
    it: a child of this Python would report Python's own size as its peak."""
    t0 = time.monotonic()
    with open(path, "rb") as fin:
        r = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], stdin=fin,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           timeout=600)
    secs = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]}: exit {r.returncode}: {r.stderr[-500:]}")
    return secs, int(r.stderr.split()[-1])


def parse_args(doc, default_ctl=str(REPO / "build/ctl/sluicectl")):
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100,000 records, 2 rounds")
    ap.add_argument("--sluicectl", default=default_ctl)
    ap.add_argument("--records", type=int)
    ap.add_argument("--rounds", type=int)
    a = ap.parse_args()
    a.records = a.records or (100_000 if a.quick else 1_000_000)
    a.rounds = a.rounds or (2 if a.quick else 5)
    return a


def against_jq(name, argv, goal, a, tenth=False):
    """NAME (sluicectl ARGV reading standard input) and jq over the same log, in
    interleaved rounds; prints the table and whether NAME's rate is GOAL x jq's.
    TENTH: also the peak RSS over a tenth of the records."""
    if not shutil.which("jq") or not os.access(a.sluicectl, os.X_OK):
        print(f"bench_{name}: needs jq (scripts/deps) and a built sluicectl", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix=f"sluice-bench-{name}-"))
    try:
        n = a.records
        log = tmp / "flows.jsonl"
        make_log(log, n)
        paths = {name: [a.sluicectl, *argv], "jq": JQ}
        res = {k: [] for k in paths}
        for rnd in range(a.rounds):
            for k in ((name, "jq") if rnd % 2 == 0 else ("jq", name)):
                res[k].append(measure(paths[k], log))
            print(f"  round {rnd + 1}/{a.rounds}: " + ", ".join(
                f"{k} {res[k][-1][0]:.2f} s {res[k][-1][1]:,} KiB" for k in paths), flush=True)
        print(f"{n:,} records ({log.stat().st_size / (1 << 20):.0f} MiB), {a.rounds} "
              "interleaved rounds")
        print(f"{'':24} {'records/s':>12} {'peak RSS KiB':>13}")
        for k in paths:
            rate = statistics.median(n / s for s, _ in res[k])
            print(f"{k:24} {rate:12,.0f} {statistics.median(r for _, r in res[k]):13,.0f}")
        if tenth:
            small = tmp / "small.jsonl"
            make_log(small, n // 10)
            print(f"{name} over a tenth of the records: peak RSS "
                  f"{measure(paths[name], small)[1]:,} KiB")
        ratios = [j[0] / s[0] for s, j in zip(res[name], res["jq"])]
        med = statistics.median(ratios)
        print(f"{name} / jq, records/s: {med:.2f} ({min(ratios):.2f}-{max(ratios):.2f}); "
              f"goal >= {goal:g}: {'MET' if med >= goal else 'NOT MET'}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    return against_jq("suggest", ["suggest", "-"], 1, parse_args(__doc__))


if __name__ == "__main__":
    sys.exit(main())
