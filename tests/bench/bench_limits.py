#!/usr/bin/env python3
"""What per-sandbox limits cost when they are configured but never reached
(issue 7): download throughput (TLS and plain HTTP) and short TLS connections
per second through one sluice sandbox, with a policy whose `limits:` are far
above what the benchmark reaches, against the same policy with every limit 0
(off), in one run.

One proxy, one sandbox: the policy file is swapped (and SIGHUP sent) between
measurements, so the two sides differ in nothing but the policy in force. The
pairs are interleaved (AB BA AB ...), and each flow record's policy hash proves
which policy a measured connection ran under. The world, the sandbox and the
proxy are bench_proxy.py's (imported, not copied). See tests/bench/README.md.

usage: bench_limits.py [--quick] [--rounds N] [--proxy PATH] [--netsetup PATH] [--json FILE]
"""

import hashlib
import json
import math
import os
import signal
import sys
import time

import benchlib  # noqa: E402
from bench_proxy import (BIG, BIG_BYTES, NAME, NO_LIMITS, PROXY_TOOLS, Bench,  # noqa: E402
                         cpu_seconds, log, med, policy_yaml, verdict, wait_for)

GOAL = 0.95                 # limits configured, not reached / no limits, every metric

# Far above anything the benchmark reaches, within what config/policy_load.c
# accepts (max_connections and new_connections_per_second <= 1000000, bytes a
# second <= 1 TiB). The connection bucket is one second deep, a bandwidth bucket
# a tenth of a second: 10 GiB here, more than a 256 MiB download ever drains.
HIGH_LIMITS = {"max_connections": "100000", "new_connections_per_second": "1000000",
               "upload_bytes_per_second": "100GiB", "download_bytes_per_second": "100GiB"}
POLICIES = ("none", "limits")
METRICS = (("tls", "download TLS 256 MiB, MiB/s"),
           ("http", "download HTTP 256 MiB, MiB/s"),
           ("cps", "TLS connections/s"))
# --json's keys for each metric and for the proxy's CPU per unit of it, units in the name
JSON_KEYS = {"tls": ("download_tls_mib_s", "cpu_download_tls_s_per_gib"),
             "http": ("download_http_mib_s", "cpu_download_http_s_per_gib"),
             "cps": ("tls_conns_per_s", "cpu_tls_us_per_conn")}


def policy_hash(text):
    """The name sluice-proxy gives a policy: the first 12 hex digits of SHA-256."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def median_ci(v, level=0.95):
    """A distribution-free confidence interval of the median of V: the order
    statistics k and n+1-k, k the largest with P(Binomial(n, 1/2) < k) <= (1-level)/2.
    None below 6 values, where no such k exists."""
    s, n = sorted(v), len(v)
    k, cdf = 0, 0.0
    for i in range(n):
        cdf += math.comb(n, i) / 2 ** n         # P(B <= i)
        if cdf > (1 - level) / 2:
            break
        k = i + 1
    return (s[k - 1], s[n - k]) if k else None


class LimitsBench(Bench):
    """bench_proxy's world with only the sluice path, and a policy to switch."""

    def __init__(self, args):
        super().__init__(args)
        self.text = {"none": policy_yaml(NO_LIMITS), "limits": policy_yaml(HIGH_LIMITS)}
        self.hash = {k: policy_hash(t) for k, t in self.text.items()}
        self.name_of = {h: k for k, h in self.hash.items()}
        self.in_force = None            # policy name, as the flow log last said
        self.log_off = 0                # bytes of the flow log accounted for
        self.starts = {k: 0 for k in POLICIES}      # flow_start records per policy
        self.completed = {k: 0 for k in POLICIES}   # connections the clients completed
        self.reloads = 0
        self.limit_records = []

    def setup(self):
        self.setup_world()
        self.add_sandbox()
        self.start_proxy(self.text["none"])
        self.in_force = "none"

    # ---- the flow log, read once, in order ----

    def account(self):
        """Reads the flow log's new complete lines: follows reloads, attributes each
        flow_start to the policy in force, and keeps every limit record."""
        try:
            with open(self.flowlog, "rb") as f:
                f.seek(self.log_off)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self.log_off += end
        for line in data[:end].splitlines():
            rec = json.loads(line)
            ev = rec.get("event")
            name = self.name_of.get(rec.get("policy"))
            if ev == "reload":
                if rec.get("verdict") != "allow" or name is None:
                    raise RuntimeError(f"sluice-proxy rejected or misread a policy: {rec}")
                self.in_force = name
                self.reloads += 1
            elif ev == "flow_start":
                if name is None or name != self.in_force:
                    self.findings.append(f"flow under policy {rec.get('policy')}, expected "
                                         f"{self.hash[self.in_force]} ({self.in_force}): {rec}")
                else:
                    self.starts[name] += 1
            elif ev == "limit":
                self.limit_records.append(rec)

    def use(self, which):
        """Puts policy WHICH in force and waits for the proxy to say so."""
        self.account()
        if self.in_force == which:
            return
        path = self.policy_path
        tmp = path.with_name(path.name + ".new")
        tmp.write_text(self.text[which])
        os.replace(tmp, path)           # whole or nothing, as an operator's editor does
        self.proxy.signal(signal.SIGHUP)

        def done():
            self.account()
            return self.in_force == which
        wait_for(done, 5.0, what=f"sluice-proxy reloading policy {which}")

    # ---- measurements ----

    def measure(self, metric, which):
        """One measurement of METRIC under policy WHICH: (value, proxy CPU per unit)."""
        self.use(which)
        pid = self.proxy.pid
        before = self.through_sluice
        c0 = cpu_seconds(pid)
        if metric == "cps":
            r = self.tls("sluice", self.args.conns, self.args.concurrency)
            value, per = r["rate"], (cpu_seconds(pid) - c0) / max(1, r["ok"]) * 1e6
        else:
            scheme = "https" if metric == "tls" else "http"
            size, secs = self.curl("sluice", f"{scheme}://{NAME}/files/{BIG}")
            if size != BIG_BYTES:
                self.findings.append(f"{metric} download under {which}: {size} bytes")
            value = size / secs / (1 << 20)
            per = (cpu_seconds(pid) - c0) / (size / (1 << 30))
        self.completed[which] += self.through_sluice - before
        return value, per

    def rounds(self):
        a = self.args
        val = {(m, p): [] for m, _ in METRICS for p in POLICIES}
        cpu = {(m, p): [] for m, _ in METRICS for p in POLICIES}
        loads = []
        for p in POLICIES:                  # warm-up, not counted: caches, pipes, buckets
            self.measure("tls", p)
            self.use(p)
            before = self.through_sluice
            self.tls("sluice", min(300, a.conns), a.concurrency)
            self.completed[p] += self.through_sluice - before
        pair = 0
        for rnd in range(a.rounds):
            for m, _ in METRICS:
                order = POLICIES if pair % 2 == 0 else POLICIES[::-1]
                pair += 1
                for p in order:
                    v, c = self.measure(m, p)
                    val[(m, p)].append(v)
                    cpu[(m, p)].append(c)
            loads.append(os.getloadavg()[0])
            log(f"  round {rnd + 1}/{a.rounds} (load {loads[-1]:.2f}): " + "; ".join(
                f"{m} " + " / ".join(f"{val[(m, p)][-1]:.0f}" for p in POLICIES)
                for m, _ in METRICS) + "  (none / limits)")
        self.account()
        return val, cpu, loads

    def check(self):
        self.account()
        self.check_flowlog()            # bench_proxy's: every flow started and ended, no deny
        log(f"flow log: {self.reloads} reloads; flow_start under none {self.starts['none']}, "
            f"under limits {self.starts['limits']}; {len(self.limit_records)} limit records")
        if self.limit_records:
            self.findings.append(f"a limit was reached ({len(self.limit_records)} limit "
                                 f"records, e.g. {self.limit_records[0]}): the benchmark must "
                                 "stay below them")
        for p in POLICIES:
            if self.starts[p] != self.completed[p]:
                self.findings.append(f"{p}: {self.starts[p]} flow_start records under its hash "
                                     f"!= {self.completed[p]} connections completed under it")


def figures(none, limits, ratios):
    """One metric for --json: every pair's values, ratios limits/none (None where
    none is 0), their median and 95% interval as printed."""
    kept = [r for r in ratios if r is not None]
    ci = median_ci(kept)
    return {"none": none, "limits": limits, "ratio": ratios, "ratio_median": med(kept),
            "ratio_ci95": list(ci) if ci else None}


def report(b, val, cpu, loads, wall):
    """Prints the result; returns it, every round's figure included, for --json."""
    a = b.args
    metrics, goals = {}, []
    log()
    log("sluice-proxy, one sandbox: limits configured far above the load / every limit 0, "
        "same run")
    log(f"  limits: {', '.join(f'{k} {v}' for k, v in HIGH_LIMITS.items())} "
        f"(policy {b.hash['limits']}; none: {b.hash['none']})")
    log(f"{'':30} {'none':>8} {'limits':>8} {'ratio':>6} {'95% CI':>11} {'min-max':>11}"
        f"  goal >= {GOAL:g}")
    for m, label in METRICS:
        n, l = val[(m, "none")], val[(m, "limits")]
        rs = [x / y for x, y in zip(l, n)]
        r = med(rs)
        ci = median_ci(rs)
        if ci is None:
            ci_text, note = f"{'-':>11}", "  (too few rounds for an interval)"
        else:
            ci_text = f"{ci[0]:5.3f}-{ci[1]:5.3f}"
            note = "  (the interval holds the goal: within noise)" if ci[0] < GOAL <= ci[1] \
                else ""
        label = label if m != "cps" else f"{label} ({a.concurrency} at a time)"
        log(f"{label:30} {med(n):8.0f} {med(l):8.0f} {r:6.3f} {ci_text} "
            f"{min(rs):5.3f}-{max(rs):5.3f}  {verdict(r >= GOAL)}{note}")
        metrics[JSON_KEYS[m][0]] = figures(n, l, rs)
        goals.append({"text": f"{label}: limits/none >= {GOAL:g}", "value": r,
                      "met": r >= GOAL})
    log()
    log("proxy CPU (process and the kernel work charged to it), medians:")
    for m, unit in (("tls", "s per GiB, TLS download"), ("http", "s per GiB, HTTP download"),
                    ("cps", "us per TLS connection")):
        n, l = cpu[(m, "none")], cpu[(m, "limits")]
        rs = [x / y for x, y in zip(l, n) if y]
        ci = median_ci(rs)
        metrics[JSON_KEYS[m][1]] = figures(n, l, [x / y if y else None for x, y in zip(l, n)])
        log(f"  {unit:26} none {med(n):7.3f}  limits {med(l):7.3f}  "
            f"ratio limits/none {med(rs):.3f}" +
            (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""))
    log()
    log(f"ratio = median over {a.rounds} rounds of the per-pair ratio limits/none (the pair "
        "back to back,")
    log("  order alternating AB BA); 95% CI: a distribution-free interval of that median "
        "(order")
    log("  statistics), min-max: the per-pair ratios' range")
    load1 = os.getloadavg()[0]
    log(f"machine: {os.cpu_count()} CPUs, load {b.load0} at the start, per round "
        f"{min(loads):.2f}-{max(loads):.2f}, {load1:.2f} at the end")
    log(f"goal: each ratio >= {GOAL:g}: {verdict(all(g['met'] for g in goals))} (a MISS does "
        "not change the exit status)")
    log(f"run time: {wall:.1f} s")
    return {
        "bench": "limits",
        "seconds": wall,
        "rounds": a.rounds, "conns": a.conns, "concurrency": a.concurrency,
        "high_limits": HIGH_LIMITS,
        "policy_hashes": dict(b.hash),
        "metrics": metrics,
        "goals": goals,
        "machine": {"cpus": os.cpu_count(), "load_start": float(b.load0),
                    "load_per_round": loads, "load_end": load1},
    }


def main():
    ap = benchlib.parser(__doc__, "smoke run, under a minute")
    ap.add_argument("--rounds", type=int, help="rounds, each one pair per metric "
                    "(default 12; quick: 2)")
    ap.add_argument("--conns", type=int, help="TLS connections per measurement (default "
                    "2000; quick: 500)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-seconds", type=float, help="give up (and clean up) after this "
                    "long (default 60 s + 30 s a round)")
    args = ap.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 12)
    args.conns = args.conns or (500 if args.quick else 2000)
    args.max_seconds = args.max_seconds or 60.0 + 30.0 * args.rounds
    if not 1 <= args.rounds <= 100:
        ap.error("--rounds must be 1-100")
    if not 1 <= args.conns <= 20000:
        ap.error("--conns must be 1-20000")
    err = benchlib.preflight("bench_limits", PROXY_TOOLS, (args.proxy, args.netsetup))
    if err is not None:
        return err

    def body(b, t0):
        b.build_helper()
        log(f"bench_limits: proxy {args.proxy}")
        b.load0 = f"{os.getloadavg()[0]:.2f}"
        log(f"machine: {os.cpu_count()} CPUs, kernel {os.uname().release}, load {b.load0}")
        b.setup()
        log(f"world {b.w.prefix}* up in {time.monotonic() - t0:.1f} s")
        b.sanity(paths=("sluice",))
        b.completed["none"] += b.through_sluice
        val, cpu, loads = b.rounds()
        b.check()
        if not b.proxy.alive():
            b.findings.append(f"sluice-proxy died: {b.proxy.log()[-1000:]}")
        data = report(b, val, cpu, loads, time.monotonic() - t0)
        if not b.findings:              # figures of a run with failed checks mean nothing
            benchlib.write_json(args, data)

    return benchlib.run(LimitsBench(args), body)

if __name__ == "__main__":
    sys.exit(main())
