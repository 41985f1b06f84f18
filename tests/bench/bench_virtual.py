#!/usr/bin/env python3
"""dns.answers: virtual against a cidr rule, and its DNS answers against real
ones: raw TCP relayed by name through a virtual address, next to the same
relay allowed by address, by the same sluice-proxy in the same run.

- connections per second (each connection accepted, then closed by the
  origin: the proxy's whole per-connection path, PEEK included) and the
  proxy's CPU per connection;
- a 256 MiB download over raw TCP, MiB/s and the proxy's CPU per GiB;
- cached-answer DNS queries per second (dnsperf from the sandbox), the
  policy reloaded between `answers: real` and `answers: virtual`.

Rounds are interleaved (the order rotates) and each ratio is given as its
median with the spread over rounds. The proxy is pinned to one CPU, the clients
and the origin to the other. Everything happens in the namespaces of a test world and
a sluice sandbox; every namespace, process and temp dir is removed at the
end, after a failure, on Ctrl-C or SIGTERM. See tests/bench/README.md.

usage: bench_virtual.py [--quick] [--proxy PATH] [--netsetup PATH]
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "integration"))

import benchlib                                     # noqa: E402
from benchlib import log                            # noqa: E402
from bench_proxy import NO_LIMITS, cpu_seconds, med  # noqa: E402
import testworld                                    # noqa: E402
from testworld import ADDR, PYTHON, World, wait_for  # noqa: E402

GOAL_RAW = 0.95             # virtual / cidr: connections/s and MiB/s
GOAL_DNS = 0.9              # virtual / real: cached-answer queries/s
NAME = "raw.example.test"
ORIGIN = "203.0.113.30"     # on inet's loopback: the origin of both paths
CLOSE_PORT = 5001           # accepts and closes at once
BULK_PORT = 5002            # sends BULK_BYTES, then closes
BULK_BYTES = 256 << 20
PROXY_PORT = 15001
DNS_PORT = 15053
PIN_CPU = "1"               # the proxy; clients and the origin run on CLIENT_CPU
CLIENT_CPU = "0"
PATHS = ("virtual", "cidr")
TOOLS = ("ip", "nft", "nsenter", "cc", "dnsmasq", "dnsperf", "taskset")

POLICY = f"""\
version: 1
egress:
  - domain: {NAME}
    ports: [{CLOSE_PORT}, {BULK_PORT}]
  - cidr: {ORIGIN}/32
    ports: [{CLOSE_PORT}, {BULK_PORT}]
dns:
  answers: {{answers}}
  queries_per_second: 0
destinations:
  allow_ranges: [203.0.113.0/24]
limits:
""" + "".join(f"  {k}: {v}\n" for k, v in NO_LIMITS.items())

# The origin in inet: one port that closes what it accepts, one that sends
# BULK_BYTES of zeros and closes; threads, so each connection is served alone.
ORIGIN_SERVER = r"""
import socket, sys, threading
addr = sys.argv[1]
close_port, bulk_port, size = (int(x) for x in sys.argv[2:5])
def listener(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(4096); return s
def closer(s):
    while True:
        c, _ = s.accept(); c.close()
def bulk_one(c):
    buf = bytes(1 << 20)
    try:
        for _ in range(size >> 20):
            c.sendall(buf)
    except OSError:
        pass
    c.close()
def bulk(s):
    while True:
        c, _ = s.accept(); threading.Thread(target=bulk_one, args=(c,), daemon=True).start()
a, b = listener(close_port), listener(bulk_port)
threading.Thread(target=closer, args=(a,), daemon=True).start()
threading.Thread(target=bulk, args=(b,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

# The download client in the sandbox: bytes and seconds of one connection.
DOWNLOAD = r"""
import json, socket, sys, time
buf = bytearray(1 << 20); n = 0
t0 = time.monotonic()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
while True:
    k = s.recv_into(buf)
    if not k:
        break
    n += k
print(json.dumps({"bytes": n, "seconds": time.monotonic() - t0}))
"""


class Bench(benchlib.WorldBench):
    def __init__(self, args):
        super().__init__(args, "virtual")
        self.proxy = None
        self.reloads = 0

    # ---- the world ----

    def setup(self):
        r = subprocess.run(["cc", "-O2", "-Wall", "-o", str(self.tmp / "conn_client"),
                            str(HERE / "conn_client.c")], capture_output=True, text=True,
                           timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"building conn_client: {r.stderr.strip()}")
        os.chmod(self.tmp, 0o755)
        testworld.reap_stale()
        self.w = World()
        self.w.setup()
        w = self.w
        w.add_inet_addr(ORIGIN)
        w.dns_add(NAME, "A", ORIGIN)
        origin = w.spawn(w.inet, ["taskset", "-c", CLIENT_CPU, PYTHON, "-c", ORIGIN_SERVER,
                                  ORIGIN, CLOSE_PORT, BULK_PORT, BULK_BYTES], name="origin")
        wait_for(lambda: "ready" in origin.log(), 5.0, what="origin servers")
        self.netsetup_env = dict(os.environ, SLUICE_RUN_DIR=str(w.tmp / "run"))
        self.sb = w.name("sb")
        info = json.loads(self.run(w.host, [self.args.netsetup, "up", self.sb, "--json"],
                                   env=self.netsetup_env).stdout)
        self.gw = info["gateway_addr"].split("/")[0]
        self.start_proxy()
        self.qfile = self.tmp / "queries.txt"
        self.qfile.write_text(f"{NAME} A\n")

    def start_proxy(self):
        w = self.w
        d = w.tmp / "proxy"
        d.mkdir(exist_ok=True)
        testworld.open_path_to(d)       # reread as nobody on reload
        self.policy = d / "policy.yaml"
        self.policy.write_text(POLICY.format(answers="virtual"))
        self.mode = "virtual"
        self.flowlog = d / "flows.jsonl"
        argv = ["taskset", "-c", PIN_CPU, self.args.proxy, "--policy", str(self.policy),
                "--listen", f"{self.gw}:{PROXY_PORT}", "--dns-listen", f"{self.gw}:{DNS_PORT}",
                "--upstream-dns", ADDR.DNS4, "--id", "bench", "--log", str(self.flowlog),
                "--foreground"]
        self.proxy = w.spawn(w.host, argv, name="sluice-proxy", nsenter=True)

        def up():
            if not self.proxy.alive():
                raise RuntimeError(f"sluice-proxy exited: {self.proxy.log()}")
            return "serving with policy" in self.proxy.log()
        wait_for(up, 5.0, what="sluice-proxy serving")
        comm = Path(f"/proc/{self.proxy.pid}/comm").read_text().strip()
        if comm != "sluice-proxy":
            raise RuntimeError(f"pid {self.proxy.pid} is {comm!r}, not sluice-proxy")

    def answers(self, mode):
        """Reloads the policy with dns.answers: MODE and waits for its reload record."""
        if mode == self.mode:
            return
        self.mode = mode
        self.policy.write_text(POLICY.format(answers=mode))
        self.reloads += 1
        self.proxy.signal(signal.SIGHUP)
        wait_for(lambda: sum(r.get("event") == "reload" and r.get("verdict") == "allow"
                             for r in self.records()) >= self.reloads, 5.0,
                 what=f"reload to answers: {mode}")

    def records(self):
        try:
            return [json.loads(l) for l in self.flowlog.read_text().splitlines() if l]
        except FileNotFoundError:
            return []

    def dig(self):
        r = self.run(self.sb, ["dig", "+short", "+time=2", "+tries=1", f"@{self.gw}",
                               "-p", "53", NAME, "A"], timeout=10)
        return r.stdout.strip()

    def dest(self, path):
        return self.vaddr if path == "virtual" else ORIGIN

    # ---- checks ----

    def sanity(self):
        self.answers("virtual")
        self.vaddr = self.dig()
        if not self.vaddr.startswith("198.18."):
            raise RuntimeError(f"answers: virtual gave {self.vaddr!r} for {NAME}")
        for path in PATHS:
            before = len(self.records())
            got = self.download(path)
            if got["bytes"] != BULK_BYTES:
                raise RuntimeError(f"{path}: {got['bytes']} bytes, not {BULK_BYTES}")
            starts = [r for r in self.records()[before:] if r.get("event") == "flow_start"]
            want_rule = "policy.yaml:3" if path == "virtual" else "policy.yaml:5"
            if (len(starts) != 1 or starts[0].get("proto") != "tcp" or
                    not starts[0].get("rule", "").endswith(want_rule) or
                    starts[0].get("upstream") != f"{ORIGIN}:{BULK_PORT}"):
                raise RuntimeError(f"{path}: flow_start records {starts}")
            if path == "virtual" and starts[0].get("host") != NAME:
                raise RuntimeError(f"virtual: the flow names {starts[0].get('host')}")
        log(f"check: {NAME} is {self.vaddr} to the sandbox; one 256 MiB download each way, "
            "each decided by its own rule (the name's, the cidr's) and relayed to the origin")

    def check_flowlog(self):
        recs = self.records()
        denies = [r for r in recs if r.get("event") == "deny"]
        starts = sum(r.get("event") == "flow_start" for r in recs)
        log(f"flow log: {starts} flow_start, {len(denies)} deny")
        if denies:
            self.findings.append(f"sluice denied {len(denies)} flows, e.g. {denies[0]}")

    # ---- measurements ----

    def conns(self, path, count, conc, limit=60.0):
        argv = ["taskset", "-c", CLIENT_CPU, str(self.tmp / "conn_client"), self.dest(path),
                str(CLOSE_PORT), str(count), str(conc), str(limit)]
        pid = self.proxy.pid
        c0 = cpu_seconds(pid)
        r = self.run(self.sb, argv, timeout=limit + 20, check=False)
        cpu = cpu_seconds(pid) - c0
        m = re.search(r"ok=(\d+) failed=(\d+) seconds=([\d.]+) rate=([\d.]+)", r.stdout)
        if not m:
            raise RuntimeError(f"conn_client {path}: exit {r.returncode}: {r.stdout} {r.stderr}")
        ok, failed = int(m.group(1)), int(m.group(2))
        if failed:
            self.findings.append(f"conn_client {path}: {failed} of {count} failed")
        return {"rate": float(m.group(4)), "cpu_us": cpu / max(1, ok) * 1e6}

    def download(self, path):
        pid = self.proxy.pid
        c0 = cpu_seconds(pid)
        r = self.run(self.sb, ["taskset", "-c", CLIENT_CPU, PYTHON, "-c", DOWNLOAD,
                               self.dest(path), str(BULK_PORT)],
                     timeout=120)
        got = json.loads(r.stdout)
        got["cpu_gib"] = (cpu_seconds(pid) - c0) / (max(1, got["bytes"]) / (1 << 30))
        got["mibs"] = got["bytes"] / got["seconds"] / (1 << 20)
        return got

    def dnsperf(self, seconds):
        a = self.args
        pid = self.proxy.pid
        c0 = cpu_seconds(pid)
        r = self.run(self.sb, ["taskset", "-c", CLIENT_CPU, "dnsperf", "-s", self.gw, "-p", "53",
                               "-d", str(self.qfile), "-l", str(seconds), "-c", "1", "-T", "1",
                               "-q", str(a.outstanding), "-t", "2"], timeout=seconds + 20,
                     check=False)
        cpu = cpu_seconds(pid) - c0
        m = re.search(r"Queries completed:\s+(\d+)", r.stdout)
        q = re.search(r"Queries per second:\s+([\d.]+)", r.stdout)
        lost = re.search(r"Queries lost:\s+(\d+)", r.stdout)
        if not m or not q:
            raise RuntimeError(f"dnsperf: exit {r.returncode}: {r.stdout[-1500:]}")
        if lost and int(lost.group(1)):
            self.findings.append(f"dnsperf: {lost.group(1)} queries lost")
        return {"qps": float(q.group(1)), "cpu_us": cpu / max(1, int(m.group(1))) * 1e6}

    def measure(self):
        a = self.args
        res = {"conns": {p: [] for p in PATHS}, "tp": {p: [] for p in PATHS},
               "dns": {"real": [], "virtual": []}}
        self.conns("virtual", 200, a.concurrency)       # warm-up
        self.conns("cidr", 200, a.concurrency)
        for rnd in range(a.rounds):
            order = PATHS if rnd % 2 == 0 else PATHS[::-1]
            for path in order:
                res["conns"][path].append(self.conns(path, a.conns, a.concurrency))
            for path in order:
                res["tp"][path].append(self.download(path))
            for mode in (("real", "virtual") if rnd % 2 == 0 else ("virtual", "real")):
                self.answers(mode)
                self.dig()                              # the answer cached upstream
                res["dns"][mode].append(self.dnsperf(a.dns_seconds))
            log(f"  round {rnd + 1}/{a.rounds}: conn/s " +
                ", ".join(f"{p} {res['conns'][p][-1]['rate']:.0f}" for p in PATHS) +
                "; MiB/s " + ", ".join(f"{p} {res['tp'][p][-1]['mibs']:.0f}" for p in PATHS) +
                "; DNS q/s " + ", ".join(f"{m} {res['dns'][m][-1]['qps']:.0f}"
                                         for m in ("real", "virtual")))
        self.answers("virtual")
        return res


def spread(num, den, key):
    rs = [n[key] / d[key] for n, d in zip(num, den)]
    return med(rs), min(rs), max(rs)


def report(b, res, wall):
    goals = []
    log()
    log("dns.answers: virtual against a cidr rule (raw TCP) and against answers: real (DNS),")
    log(f"same sluice-proxy, same run, {b.args.rounds} interleaved "
        "rounds; ratio = median (min-max)")
    log(f"(the proxy pinned to CPU {PIN_CPU}; clients, dnsperf and the origin to CPU {CLIENT_CPU})")
    log(f"{'':36} {'virtual':>10} {'reference':>10} {'ratio':>20}")
    rows = (("raw TCP connections/s", res["conns"], "rate", "cidr", GOAL_RAW, "{:.0f}"),
            ("raw TCP 256 MiB download, MiB/s", res["tp"], "mibs", "cidr", GOAL_RAW, "{:.0f}"),
            ("DNS cached answers/s (dnsperf)", res["dns"], "qps", "real", GOAL_DNS, "{:.0f}"))
    for label, v, key, ref, goal, fmt in rows:
        r, lo, hi = spread(v["virtual"], v[ref], key)
        log(f"{label:36} {fmt.format(med([x[key] for x in v['virtual']])):>10} "
            f"{fmt.format(med([x[key] for x in v[ref]])):>10} "
            f"{f'{r:.2f} ({lo:.2f}-{hi:.2f})':>20}")
        goals.append((f"{label}: virtual >= {goal:g} x {ref}", f"{r:.2f}", r >= goal))
    log()
    log("the proxy's own CPU (user+system, /proc), medians; ratio virtual/reference:")
    for label, v, key, ref, unit, fmt in (
            ("per connection", res["conns"], "cpu_us", "cidr", "us", "{:.0f}"),
            ("per GiB relayed", res["tp"], "cpu_gib", "cidr", "s", "{:.2f}"),
            ("per DNS answer", res["dns"], "cpu_us", "real", "us", "{:.1f}")):
        r, lo, hi = spread(v["virtual"], v[ref], key)
        log(f"  {label}: virtual {fmt.format(med([x[key] for x in v['virtual']]))} {unit}, "
            f"{ref} {fmt.format(med([x[key] for x in v[ref]]))} {unit}, "
            f"{r:.2f} ({lo:.2f}-{hi:.2f})")
    log()
    log("goals:")
    for what, got, ok in goals:
        log(f"  {what}: {got} {'MET' if ok else 'NOT MET'}")
    log(f"\nwall time {wall:.0f} s")


def main():
    ap = benchlib.parser(__doc__, "fewer, shorter rounds (a smoke run)")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--conns", type=int)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--dns-seconds", type=float)
    ap.add_argument("--outstanding", type=int, default=100)
    ap.add_argument("--max-seconds", type=float, default=900)
    a = ap.parse_args()
    a.rounds = a.rounds or (2 if a.quick else 6)
    a.conns = a.conns or (500 if a.quick else 10000)     # a round of ~1.5 s: less noise
    a.dns_seconds = a.dns_seconds or (2 if a.quick else 5)
    rc = benchlib.preflight("bench_virtual", TOOLS, (a.proxy, a.netsetup))
    if rc is not None:
        return rc

    def body(b, t0):
        b.setup()
        b.sanity()
        res = b.measure()
        b.check_flowlog()
        report(b, res, time.monotonic() - t0)
    return benchlib.run(Bench(a), body)


if __name__ == "__main__":
    sys.exit(main())
