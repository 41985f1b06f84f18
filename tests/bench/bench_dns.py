#!/usr/bin/env python3
"""sluice-proxy's DNS service against unbound and dnsmasq as caching forwarders:
cached-answer queries/s and latency (p50/p99), measured with dnsperf, in one run.

Everything happens in the namespaces of a test world (tests/integration/
testworld.py: `inet` with dnsmasq as the authoritative server, `host`), in a
sluice sandbox made by sluice-netsetup in `host`, and in one plain client
namespace plugged into `host` by a veth. Every namespace, process and temp dir
is removed at the end, after a failure, on Ctrl-C or SIGTERM. See
tests/bench/README.md.

usage: bench_dns.py [--quick] [--proxy PATH] [--netsetup PATH] [--json FILE]
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))

import benchlib                                    # noqa: E402
from benchlib import log                            # noqa: E402
import testworld                                    # noqa: E402
from testworld import ADDR, World, wait_for   # noqa: E402

GOAL_QPS = 1.0              # cached-answer queries/s, sluice (sandbox) / unbound

# A records the world's dnsmasq serves; all allowed by the policy below
NAMES = ("www.example.test", "api.example.test", "plain.example.test", "other.example.test")
PROXY_PORT = 15001
SB_DNS_PORT = 15053         # sluice-netsetup DNATs the sandbox's port 53 here
CLIENT_NET = ("10.201.0.1/30", "10.201.0.2/30")     # host side, client side
PORTS = {"sluice-plain": 5300, "unbound": 5301, "dnsmasq": 5302}
TARGETS = ("sluice", "sluice-plain", "unbound", "dnsmasq")
THREADS = 1                 # every server is one process, one thread (unbound: num-threads 1)

POLICY = "version: 1\negress:\n" + "".join(f"  - domain: {n}\n" for n in NAMES) + """\
destinations:
  allow_ranges: [203.0.113.0/24]        # the test internet lives in TEST-NET-3
dns:
  queries_per_second: 0                 # 0 = no limit (default 50): the benchmark measures the service
limits:
  max_connections: 0
  new_connections_per_second: 0
"""


def med(v):
    return statistics.median(v)


def verdict(ok):
    return "PASS" if ok else "MISS"


def cpu_seconds(pid):
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def pct(sorted_v, p):
    if not sorted_v:
        return float("nan")
    k = min(len(sorted_v) - 1, max(0, int(round(p / 100 * len(sorted_v) + 0.5)) - 1))
    return sorted_v[k]


class Bench(benchlib.WorldBench):
    def __init__(self, args):
        super().__init__(args, "dns")
        self.cl = None
        self.proxy = self.unbound = self.fwd = None

    # ---- the world ----

    def setup(self):
        testworld.reap_stale()
        self.w = World()
        self.w.setup()
        w = self.w
        self.netsetup_env = dict(os.environ, SLUICE_RUN_DIR=str(w.tmp / "run"))
        self.sb = w.name("sb")
        info = json.loads(self.run(w.host, [self.args.netsetup, "up", self.sb, "--json"],
                                   env=self.netsetup_env).stdout)
        self.gw = info["gateway_addr"].split("/")[0]
        # the plain client: a veth to host, like a sandbox's but with no nft rules
        self.cl = w.add_ns("cl")
        w.veth(w.host, self.cl, "bcl0", "eth0", [CLIENT_NET[0]], [CLIENT_NET[1]])
        self.hostaddr = CLIENT_NET[0].split("/")[0]
        self.run(self.cl, ["ip", "route", "add", "default", "via", self.hostaddr])
        self.start_proxy()
        self.start_unbound()
        self.start_dnsmasq()
        self.qfile = self.tmp / "queries.txt"
        self.qfile.write_text("".join(f"{n} A\n" for n in NAMES))
        os.chmod(self.tmp, 0o755)

    def start_proxy(self):
        w = self.w
        d = w.tmp / "proxy"
        d.mkdir(exist_ok=True)
        policy = d / "policy.yaml"
        policy.write_text(POLICY)
        self.flowlog = d / "flows.jsonl"
        argv = [self.args.proxy, "--policy", str(policy),
                "--listen", f"{self.gw}:{PROXY_PORT}",
                "--dns-listen", f"{self.gw}:{SB_DNS_PORT}",
                "--dns-listen", f"{self.hostaddr}:{PORTS['sluice-plain']}",
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

    def start_unbound(self):
        w = self.w
        d = w.tmp / "unbound"
        d.mkdir()
        conf = d / "unbound.conf"
        conf.write_text(f"""\
server:
    interface: {self.hostaddr}@{PORTS['unbound']}
    port: {PORTS['unbound']}
    access-control: 0.0.0.0/0 allow
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d / 'unbound.pid'}"
    use-syslog: no
    logfile: ""
    verbosity: 0
    num-threads: {THREADS}
    do-ip6: no
    module-config: "iterator"
    local-zone: "test." nodefault
    domain-insecure: "test."
    do-not-query-localhost: no
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: {ADDR.DNS4}
""")
        r = subprocess.run(["unbound-checkconf", str(conf)], capture_output=True, text=True,
                           timeout=20)
        if r.returncode != 0:
            raise RuntimeError(f"unbound-checkconf: {r.stdout}{r.stderr}")
        self.unbound = w.spawn(w.host, ["unbound", "-d", "-c", str(conf)], name="unbound",
                               nsenter=True)
        w.wait_listening(self.unbound, {("udp", self.hostaddr, PORTS["unbound"])})

    def start_dnsmasq(self):
        w = self.w
        d = w.tmp / "fwd"
        d.mkdir()
        conf = d / "dnsmasq.conf"
        conf.write_text("\n".join([
            "keep-in-foreground", "no-resolv", "no-hosts", "no-poll", "bind-interfaces",
            f"listen-address={self.hostaddr}", f"port={PORTS['dnsmasq']}",
            f"server={ADDR.DNS4}", "cache-size=1000", "user=root", "group=root",
            "pid-file=", "no-dhcp-interface=bcl0"]) + "\n")
        self.fwd = w.spawn(w.host, ["dnsmasq", f"--conf-file={conf}"], name="dnsmasq-fwd",
                           nsenter=True)
        w.wait_listening(self.fwd, {("udp", self.hostaddr, PORTS["dnsmasq"])})

    def where(self, target):
        """(client namespace, server address, port, server pid)"""
        if target == "sluice":      # from the sandbox, to its gateway's :53 (DNATed)
            return self.sb, self.gw, 53, self.proxy.pid
        pid = {"sluice-plain": self.proxy, "unbound": self.unbound,
               "dnsmasq": self.fwd}[target].pid
        return self.cl, self.hostaddr, PORTS[target], pid

    # ---- dnsperf ----

    def dnsperf(self, target, seconds, qps=None, verbose=False):
        ns, addr, port, pid = self.where(target)
        a = self.args
        argv = ["dnsperf", "-s", addr, "-p", str(port), "-d", str(self.qfile),
                "-l", str(seconds), "-c", str(a.clients), "-T", str(THREADS),
                "-q", str(a.outstanding), "-t", "2"]
        if qps:
            argv += ["-Q", str(qps)]
        if verbose:
            argv += ["-v"]
        c0 = cpu_seconds(pid)
        r = self.run(ns, argv, timeout=seconds + 20, check=False)
        cpu = cpu_seconds(pid) - c0
        out = r.stdout
        m = {k: re.search(rx, out) for k, rx in (
            ("sent", r"Queries sent:\s+(\d+)"),
            ("done", r"Queries completed:\s+(\d+)"),
            ("lost", r"Queries lost:\s+(\d+)"),
            ("qps", r"Queries per second:\s+([\d.]+)"),
            ("avg", r"Average Latency \(s\):\s+([\d.]+)"))}
        if r.returncode != 0 or not all(m.values()):
            raise RuntimeError(f"dnsperf against {target}: exit {r.returncode}: "
                               f"{out[-1500:]} {r.stderr[-1500:]}")
        res = {k: float(v.group(1)) for k, v in m.items()}
        codes = dict((c, int(n)) for c, n in re.findall(r"\b([A-Z]+) (\d+) \([\d.]+%\)",
                                                        out.split("Response codes:")[-1]
                                                        .splitlines()[0]))
        res["codes"] = codes
        res["cpu_us"] = cpu / max(1, res["done"]) * 1e6
        bad = {c: n for c, n in codes.items() if c != "NOERROR"}
        if bad or res["lost"]:
            self.findings.append(f"{target}: {int(res['lost'])} of {int(res['sent'])} "
                                 f"queries lost, rcodes {codes}")
        if verbose:
            lat = sorted(float(x) for x in re.findall(r"^> [A-Z]+ \S+ \S+ ([\d.]+)$", out,
                                                      re.M))
            if len(lat) < res["done"] * 0.9:
                # the format we parse is "> RCODE qname qtype latency"; say so if it moved
                sample = "\n".join(out.splitlines()[:5])
                raise RuntimeError(f"dnsperf -v against {target}: parsed {len(lat)} latencies "
                                   f"of {int(res['done'])} answers; output starts:\n{sample}")
            res["lat"] = lat
        return res

    def sanity(self):
        """One dig per path, and proof that each answer came from where we think."""
        for t in TARGETS:
            ns, addr, port, _ = self.where(t)
            r = self.run(ns, ["dig", "+short", "+time=2", "+tries=1", "-p", str(port), f"@{addr}",
                              "www.example.test", "A"], timeout=10, check=False)
            if r.stdout.strip() != ADDR.WWW4:
                raise RuntimeError(f"{t}: dig www.example.test -> {r.stdout.strip()!r} "
                                   f"{r.stderr.strip()}")
        # the sandbox query above went to the proxy (its log says so), not around it
        recs = [json.loads(x) for x in self.flowlog.read_text().splitlines() if x]
        if not any(x.get("event") == "dns" and x.get("qname") == "www.example.test"
                   for x in recs):
            raise RuntimeError("no dns record in sluice's log after the sandbox's query")
        log("check: every server answers www.example.test; sluice logged the sandbox's query")

    def order(self, rnd):
        k = rnd % len(TARGETS)
        return TARGETS[k:] + TARGETS[:k]

    def measure(self):
        a = self.args
        for t in TARGETS:               # warm-up: every name in every cache
            self.dnsperf(t, 1)
        self.w.dns_reset()
        tp = {t: [] for t in TARGETS}
        for rnd in range(a.rounds):
            for t in self.order(rnd):
                tp[t].append(self.dnsperf(t, a.seconds))
            log(f"  qps round {rnd + 1}/{a.rounds}: " +
                ", ".join(f"{t} {tp[t][-1]['qps']:.0f}" for t in TARGETS))
        lat = {t: [] for t in TARGETS}
        for rnd in range(a.lat_rounds):
            for t in self.order(rnd):
                lat[t].append(self.dnsperf(t, a.lat_seconds, qps=a.lat_qps, verbose=True))
        log(f"  latency rounds at {a.lat_qps} q/s: " + ", ".join(
            f"{t} p99 " + "/".join(f"{pct(r['lat'], 99) * 1e6:.0f}" for r in lat[t])
            for t in TARGETS) + " us")
        upstream = len(self.w.dns_queries())
        if upstream:
            self.findings.append(f"{upstream} queries reached the authoritative dnsmasq during "
                                 "the measured runs: not every answer was cached")
        return tp, lat


def report(b, tp, lat, wall):
    """Prints the result; returns it, every round's figure included, for --json."""
    a = b.args
    servers = {}
    log()
    log(f"cached A answers, 4 allowed names, dnsperf -c {a.clients} -q {a.outstanding} "
        f"-T {THREADS}, {a.rounds} x {a.seconds} s per server (medians of rounds)")
    log(f"{'server':14} {'client':8} {'q/s':>9} {'avg ms':>8} {'CPU us/q':>9} |"
        f" at {a.lat_qps} q/s: {'p50 us':>7} {'p99 us':>7} {'max us':>7}")
    for t in TARGETS:
        cl = "sandbox" if t == "sluice" else "cl veth"
        qps = med([r["qps"] for r in tp[t]])
        avg = med([r["avg"] for r in tp[t]]) * 1e3
        cpu = med([r["cpu_us"] for r in tp[t]])
        all_lat = sorted(x for r in lat[t] for x in r["lat"])
        servers[t] = {
            "client": cl,
            "qps": [r["qps"] for r in tp[t]],
            "avg_ms": [round(r["avg"] * 1e3, 6) for r in tp[t]],  # dnsperf's, in s
            "cpu_us_per_query": [r["cpu_us"] for r in tp[t]],
            "p50_us": [pct(r["lat"], 50) * 1e6 for r in lat[t]],
            "p99_us": [pct(r["lat"], 99) * 1e6 for r in lat[t]],
            "max_us": [r["lat"][-1] * 1e6 if r["lat"] else 0 for r in lat[t]],
            "pooled_p50_us": pct(all_lat, 50) * 1e6,
            "pooled_p99_us": pct(all_lat, 99) * 1e6,
            "pooled_max_us": all_lat[-1] * 1e6 if all_lat else 0,
        }
        log(f"{t:14} {cl:8} {qps:9.0f} {avg:8.3f} {cpu:9.1f} |"
            f" {'':>{len(str(a.lat_qps)) + 9}}{pct(all_lat, 50) * 1e6:7.0f} "
            f"{pct(all_lat, 99) * 1e6:7.0f} {all_lat[-1] * 1e6 if all_lat else 0:7.0f}")
    rs = [s["qps"] / u["qps"] for s, u in zip(tp["sluice"], tp["unbound"])]
    rp = [s["qps"] / u["qps"] for s, u in zip(tp["sluice-plain"], tp["unbound"])]
    rd = [s["qps"] / u["qps"] for s, u in zip(tp["sluice"], tp["dnsmasq"])]
    log()
    log(f"  sluice/unbound {med(rs):.2f} (rounds: {' '.join(f'{x:.2f}' for x in rs)}); "
        f"sluice-plain/unbound {med(rp):.2f}; sluice/dnsmasq {med(rd):.2f}")
    log("  sluice: dnsperf in the sandbox asks the gateway's :53, DNATed by netsetup's nft to "
        "the proxy's :15053 (conntrack on every query);")
    log("  sluice-plain, unbound, dnsmasq: dnsperf in namespace cl asks host over a plain "
        "veth, no nft; sluice-plain is the same proxy on a second --dns-listen")
    log("  p50/p99 come from every answer's latency (dnsperf -v) at a fixed offered load, "
        "not at saturation; CPU us/q is the server's CPU time per answer")
    load1 = os.getloadavg()[0]
    log(f"  machine: {os.cpu_count()} CPUs, load {b.load0} at the start and "
        f"{load1:.2f} at the end")
    log()
    log("goals (a MISS does not change the exit status)")
    goal = f"cached-answer q/s, sluice (sandbox) >= {GOAL_QPS} x unbound"
    log(f"  {goal:<50} {med(rs):>8.2f}  {verdict(med(rs) >= GOAL_QPS)}")
    log()
    log(f"run time: {wall:.1f} s")
    return {
        "bench": "dns",
        "seconds": wall,
        "rounds": a.rounds, "round_seconds": a.seconds, "lat_rounds": a.lat_rounds,
        "lat_seconds": a.lat_seconds, "lat_qps": a.lat_qps, "clients": a.clients,
        "outstanding": a.outstanding, "threads": THREADS,
        "servers": servers,
        "ratios": {"sluice/unbound": rs, "sluice-plain/unbound": rp, "sluice/dnsmasq": rd},
        "goals": [{"text": goal, "value": med(rs), "met": med(rs) >= GOAL_QPS}],
        "machine": {"cpus": os.cpu_count(), "load_start": float(b.load0),
                    "load_end": load1},
    }


def main():
    ap = benchlib.parser(__doc__, "smoke run, under 40 s")
    ap.add_argument("--rounds", type=int, help="throughput rounds (default 3; quick: 1)")
    ap.add_argument("--seconds", type=int, help="dnsperf -l per throughput run (default 5; "
                    "quick: 3)")
    ap.add_argument("--lat-rounds", type=int, help="latency rounds (default 2; quick: 1)")
    ap.add_argument("--lat-seconds", type=int, default=2, help="dnsperf -l per latency run")
    ap.add_argument("--lat-qps", type=int, default=5000, help="dnsperf -Q for latency runs")
    ap.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    ap.add_argument("--outstanding", type=int, default=64, help="dnsperf -q")
    ap.add_argument("--max-seconds", type=float, default=170.0,
                    help="give up (and clean up) after this long")
    args = ap.parse_args()
    q = args.quick
    args.rounds = args.rounds or (1 if q else 3)
    args.seconds = args.seconds or (3 if q else 5)
    args.lat_rounds = args.lat_rounds or (1 if q else 2)
    if not (1 <= args.seconds <= 30 and 1 <= args.lat_seconds <= 10 and
            1 <= args.lat_qps <= 50000 and 1 <= args.rounds <= 10):
        ap.error("bounds: --seconds 1-30, --lat-seconds 1-10, --lat-qps 1-50000, --rounds 1-10")
    err = benchlib.preflight("bench_dns", ("ip", "nft", "nsenter", "dnsperf", "unbound",
                                           "unbound-checkconf", "dnsmasq", "dig"),
                             (args.proxy, args.netsetup))
    if err is not None:
        return err

    def body(b, t0):
        log(f"bench_dns: proxy {args.proxy}")
        b.load0 = f"{os.getloadavg()[0]:.2f}"
        log(f"machine: {os.cpu_count()} CPUs, kernel {os.uname().release}, load {b.load0}")
        b.setup()
        log(f"world {b.w.prefix}* up in {time.monotonic() - t0:.1f} s")
        b.sanity()
        tp, lat = b.measure()
        for name, p in (("sluice-proxy", b.proxy), ("unbound", b.unbound),
                        ("dnsmasq", b.fwd)):
            if not p.alive():
                b.findings.append(f"{name} died: {p.log()[-1000:]}")
        data = report(b, tp, lat, time.monotonic() - t0)
        if not b.findings:              # figures of a run with failed checks mean nothing
            benchlib.write_json(args, data)

    return benchlib.run(Bench(args), body)

if __name__ == "__main__":
    sys.exit(main())
