#!/usr/bin/env python3
"""sluice inspect-mode benchmark: short TLS requests per second and a 256 MiB
download through sluice-proxy terminating TLS (inspect mode), next to Squid
doing the same interception (`ssl_bump bump`, Debian's squid-openssl) and to
sluice's own splice mode, in one run with interleaved rounds.

Everything happens in the namespaces of a test world (tests/integration/
testworld.py) and two client namespaces plugged into its `host`: a sluice
sandbox made by sluice-netsetup, and one whose port 443 is redirected to Squid
in `host`. Both proxies are pinned to the same CPU. Every namespace, process
and temp dir is removed at the end, after a failure, on Ctrl-C or SIGTERM.
See tests/bench/README.md.

usage: bench_inspect.py [--quick] [--proxy PATH] [--netsetup PATH]
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import benchlib                                     # noqa: E402
from benchlib import log                            # noqa: E402
import bench_proxy                                  # noqa: E402
from bench_proxy import BIG, BIG_BYTES, DST, NO_LIMITS, cpu_seconds, children  # noqa: E402
from testworld import ADDR, wait_for                # noqa: E402

GOAL_RPS_SQUID = 2.0        # inspected requests/s, sluice / Squid
GOAL_TP_SQUID = 1.5         # inspected download MiB/s, sluice / Squid
INSPECTED = "www.example.test"      # the inspect rule's name
SPLICED = "api.example.test"        # same nginx, same address, passed by SNI
SQUID_NET = ("10.203.0.1/30", "10.203.0.2/30")
SQUID_PORT = 13129
PIN_CPU = "1"               # both proxies run here; clients and nginx float
METRICS = "127.0.0.1:15190"
PATHS = ("inspect", "squid", "splice")
TOOLS = ("ip", "nft", "nsenter", "cc", "curl", "nginx", "dnsmasq", "openssl", "squid",
         "taskset")
CERTGEN = "/usr/lib/squid/security_file_certgen"

MINT_NAMES = 100            # distinct names handshaken once each: the leaf minting cost

POLICY = f"""\
version: 1
egress:
  - domain: {INSPECTED}
    inspect: true
  - domain: "*.mint.example.test"     # leaves for distinct names; nothing goes upstream
    inspect: true
  - domain: {SPLICED}
destinations:
  allow_ranges: [203.0.113.0/24]
limits:
""" + "".join(f"  {k}: {v}\n" for k, v in NO_LIMITS.items())


class Bench(bench_proxy.Bench):
    """bench_proxy's world and clients; the paths are inspect, squid, splice."""

    def setup(self):
        self.setup_world()
        self.add_sandbox()
        self.ns["inspect"] = self.ns["splice"] = self.ns["sluice"]
        self.add_squid_ns()
        self.start_squid()
        self.start_inspect_proxy()

    # ---- sluice in inspect mode ----

    def start_inspect_proxy(self):
        w = self.w
        d = w.tmp / "proxy"
        d.mkdir(exist_ok=True)
        (d / "policy.yaml").write_text(POLICY)
        ca = d / "ca"
        r = subprocess.run([str(Path(self.args.proxy).parents[1] / "ctl" / "sluicectl"), "ca",
                            "init", str(ca), "--policy", str(d / "policy.yaml")],
                           capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            raise RuntimeError(f"sluicectl ca init: {r.stderr}")
        ca.chmod(0o755)
        self.sluice_ca = str(ca / "ca.pem")
        self.flowlog = d / "flows.jsonl"
        argv = ["taskset", "-c", PIN_CPU, self.args.proxy, "--policy", str(d / "policy.yaml"),
                "--listen", f"{self.gw}:{bench_proxy.PROXY_PORT}", "--upstream-dns", ADDR.DNS4,
                "--id", "bench", "--log", str(self.flowlog), "--metrics", METRICS,
                "--ca-cert", str(ca / "ca.pem"), "--ca-key", str(ca / "ca.key"),
                "--upstream-ca", self.ca, "--foreground"]
        self.proxy = w.spawn(w.host, argv, name="sluice-proxy", nsenter=True)
        wait_for(lambda: "serving with policy" in self.proxy.log() or
                 (not self.proxy.alive() and (_ for _ in ()).throw(
                     RuntimeError(f"sluice-proxy exited: {self.proxy.log()}"))),
                 5.0, what="sluice-proxy serving")

    def leaf_stats(self):
        r = self.run(self.w.host, ["curl", "-sS", f"http://{METRICS}/metrics"])
        get = lambda name: float(re.search(rf"^{re.escape(name)} (\S+)$", r.stdout,   # noqa
                                           re.M).group(1))
        return (get('sluice_inspect_leaf_certs_total{result="minted"}'),
                get('sluice_inspect_leaf_certs_total{result="cached"}'),
                get("sluice_inspect_leaf_mint_seconds_total"))

    # ---- Squid ssl_bump ----

    def add_squid_ns(self):
        """Squid intercepts as on a router: it reads the original destination from
        conntrack after the redirect."""
        self.add_redirected("squid", "sq", SQUID_NET, SQUID_PORT)

    def start_squid(self):
        w = self.w
        d = w.tmp / "squid"
        d.mkdir()
        self.squid_ca = d / "ca.pem"
        subprocess.run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-noenc", "-days", "2", "-subj",
                        "/CN=squid bench CA", "-keyout", str(d / "ca.key"), "-out",
                        str(self.squid_ca), "-addext", "basicConstraints=critical,CA:TRUE",
                        "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                       check=True, capture_output=True, timeout=30)
        subprocess.run([CERTGEN, "-c", "-s", str(d / "ssl_db"), "-M", "16MB"], check=True,
                       capture_output=True, timeout=30)
        listen = SQUID_NET[0].split("/")[0]
        conf = d / "squid.conf"
        conf.write_text(f"""\
http_port 127.0.0.1:13128
https_port {listen}:{SQUID_PORT} intercept ssl-bump tls-cert={d / 'ca.pem'} \
tls-key={d / 'ca.key'} generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
sslcrtd_program {CERTGEN} -s {d / 'ssl_db'} -M 16MB
sslcrtd_children 4 startup=1 idle=1
acl step1 at_step SslBump1
ssl_bump peek step1
ssl_bump bump all
tls_outgoing_options cafile={self.ca}
http_access allow all
dns_nameservers {ADDR.DNS4}
dns_v4_first on
workers 1
cache deny all
cache_mem 0 MB
access_log stdio:{d / 'access.log'}
cache_log {d / 'cache.log'}
pid_filename {d / 'squid.pid'}
coredump_dir {d}
cache_effective_user proxy
shutdown_lifetime 1 seconds
""")
        subprocess.run(["chown", "-R", "proxy:proxy", str(d)], check=True)
        for p in (w.tmp, w.tmp / "pki"):
            p.chmod(0o755)
        self.squid = w.spawn(w.host, ["taskset", "-c", PIN_CPU, "squid", "-N", "-f", str(conf)],
                             name="squid", nsenter=True)
        w.wait_listening(self.squid, {("tcp", listen, SQUID_PORT)})
        self.squid_log = d / "access.log"

    def squid_pids(self):
        """Squid and its certificate generators: their CPU is Squid's cost."""
        return [self.squid.pid, *children(self.squid.pid)]

    # ---- clients ----

    def name_of(self, path):
        return SPLICED if path == "splice" else INSPECTED

    def ca_of(self, path):
        return {"inspect": self.sluice_ca, "squid": str(self.squid_ca)}.get(path, self.ca)

    def requests(self, path, count, conc, limit=60.0):
        argv = [self.client, "rate", DST, "443", self.name_of(path), self.ca_of(path),
                str(count), str(conc), str(limit)]
        r = self.run(self.ns[path], argv, timeout=limit + 30, check=False)
        m = re.search(r"ok=(\d+) failed=(\d+) seconds=([\d.]+) rate=([\d.]+)", r.stdout)
        if not m:
            raise RuntimeError(f"tls_client from {path}: exit {r.returncode}: "
                               f"{r.stdout.strip()} {r.stderr.strip()[-500:]}")
        if int(m.group(2)):
            self.findings.append(f"tls_client from {path}: {m.group(2)} of {count} failed")
        return int(m.group(1)), float(m.group(4))

    def download(self, path, max_time=120):
        name = self.name_of(path)
        argv = ["curl", "-sS", "-o", "/dev/null", "--max-time", str(max_time), "--cacert",
                self.ca_of(path), "--resolve", f"{name}:443:{DST}", "-w",
                "%{http_code} %{size_download} %{time_total}", f"https://{name}/files/{BIG}"]
        r = self.run(self.ns[path], argv, timeout=max_time + 10, check=False)
        f = r.stdout.split()
        if r.returncode != 0 or len(f) != 3 or f[0] != "200" or int(f[1]) != BIG_BYTES:
            raise RuntimeError(f"download from {path}: exit {r.returncode}: {r.stdout} "
                               f"{r.stderr.strip()}")
        return BIG_BYTES / float(f[2]) / (1 << 20)

    def cpu(self, path):
        pids = self.squid_pids() if path == "squid" else [self.proxy.pid]
        return sum(cpu_seconds(p) for p in pids)

    def sanity(self):
        """One request per path, each proved to have taken its path."""
        for path in PATHS:
            n_req = len([r for r in self.flow_records() if r.get("event") == "request"])
            n_sq = len(self.squid_log.read_text().splitlines()) if self.squid_log.exists() else 0
            name = self.name_of(path)
            r = self.run(self.ns[path], ["curl", "-sS", "--max-time", "10", "--cacert",
                                         self.ca_of(path), "--resolve", f"{name}:443:{DST}",
                                         f"https://{name}/"], timeout=20)
            if r.stdout != f"hello from {name}\n":
                raise RuntimeError(f"{path}: unexpected answer {r.stdout!r}")
            time.sleep(0.3)
            reqs = [x for x in self.flow_records() if x.get("event") == "request"][n_req:]
            sq = self.squid_log.read_text().splitlines()[n_sq:] if self.squid_log.exists() \
                else []
            # Squid logs the intercepted connection and, bumped, the request in it
            bumped = [l for l in sq if f"GET https://{name}/" in l]
            want = {"inspect": (1, 0), "squid": (0, 1), "splice": (0, 0)}[path]
            if (len(reqs), len(bumped)) != want or (path != "squid" and sq):
                raise RuntimeError(f"{path}: {len(reqs)} sluice request records, {len(sq)} "
                                   f"squid log lines ({len(bumped)} bumped GETs); expected "
                                   f"{want}")
        log("check: inspect is a sluice request record, squid a bumped request in its log, "
            "splice neither")

    def mint(self):
        """MINT_NAMES handshakes, each for a name not seen before: the leaf is minted
        during the handshake, and no request follows (nothing goes upstream)."""
        m0 = self.leaf_stats()
        script = (f'for i in $(seq 1 {MINT_NAMES}); do openssl s_client -connect {DST}:443 '
                  f'-servername n$i.mint.example.test -CAfile {self.sluice_ca} '
                  f'-verify_return_error </dev/null >/dev/null 2>&1 || echo FAIL n$i; done')
        r = self.run(self.ns["inspect"], ["sh", "-c", script], timeout=120)
        if "FAIL" in r.stdout:
            self.findings.append(f"minting handshakes failed: {r.stdout.split()[:6]}")
        m1 = self.leaf_stats()
        return m1[0] - m0[0], (m1[2] - m0[2]) / max(m1[0] - m0[0], 1) * 1e6

    # ---- rounds ----

    def measure(self):
        a = self.args
        rps = {p: [] for p in PATHS}
        rps_cpu = {p: [] for p in PATHS}
        tp = {p: [] for p in PATHS}
        tp_cpu = {p: [] for p in PATHS}
        for p in PATHS:                             # warm-up: leaves, caches, certgen
            self.requests(p, min(200, a.conns), a.concurrency)
            self.download(p)
        m0 = self.leaf_stats()
        for rnd in range(a.rounds):
            order = PATHS[rnd % 3:] + PATHS[:rnd % 3]
            for p in order:
                c0 = self.cpu(p)
                ok, rate = self.requests(p, a.conns, a.concurrency)
                rps[p].append(rate)
                rps_cpu[p].append((self.cpu(p) - c0) / max(ok, 1) * 1e6)
            for p in order:
                c0 = self.cpu(p)
                tp[p].append(self.download(p))
                tp_cpu[p].append((self.cpu(p) - c0) / (BIG_BYTES / (1 << 30)))
            log(f"  round {rnd + 1}/{a.rounds}: req/s " +
                ", ".join(f"{p} {rps[p][-1]:.0f}" for p in PATHS) + "; MiB/s " +
                ", ".join(f"{p} {tp[p][-1]:.0f}" for p in PATHS))
        m1 = self.leaf_stats()
        return rps, rps_cpu, tp, tp_cpu, (m0, m1)


def spread(num, den):
    r = [n / d for n, d in zip(num, den)]
    return statistics.median(r), min(r), max(r)


def report(b, res, mint, wall):
    rps, rps_cpu, tp, tp_cpu, (m0, m1) = res
    med = statistics.median
    log("")
    log(f"bench_inspect: {os.cpu_count()} CPUs shared by client, proxies and nginx; sluice "
        f"and Squid pinned to CPU {PIN_CPU}; {b.args.rounds} interleaved rounds, "
        f"{b.args.conns} requests (full handshake, GET /, Connection: close, concurrency "
        f"{b.args.concurrency}) and one 256 MiB download per path and round")
    log("")
    log("| figure | sluice inspect | Squid ssl_bump | sluice splice |")
    log("|---|---|---|---|")
    log("| requests/s (median) | " + " | ".join(f"{med(rps[p]):.0f}" for p in PATHS) + " |")
    log("| proxy CPU per request, us | " +
        " | ".join(f"{med(rps_cpu[p]):.0f}" for p in PATHS) + " |")
    log("| download MiB/s (median) | " + " | ".join(f"{med(tp[p]):.0f}" for p in PATHS) + " |")
    log("| proxy CPU-s per GiB | " + " | ".join(f"{med(tp_cpu[p]):.2f}" for p in PATHS) + " |")
    log("")
    rows = (("requests/s, inspect / Squid", spread(rps["inspect"], rps["squid"]),
             GOAL_RPS_SQUID),
            ("download MiB/s, inspect / Squid", spread(tp["inspect"], tp["squid"]),
             GOAL_TP_SQUID),
            ("requests/s, inspect / splice", spread(rps["inspect"], rps["splice"]), None),
            ("download MiB/s, inspect / splice", spread(tp["inspect"], tp["splice"]), None),
            ("CPU per request, Squid / inspect", spread(rps_cpu["squid"], rps_cpu["inspect"]),
             None),
            ("CPU per GiB, Squid / inspect", spread(tp_cpu["squid"], tp_cpu["inspect"]), None))
    log("| ratio (per round) | median | min-max | goal |")
    log("|---|---|---|---|")
    for name, (m, lo, hi), goal in rows:
        verdict = "" if goal is None else (f">= {goal:g} " + ("PASS" if m >= goal else "MISS"))
        log(f"| {name} | {m:.2f} | {lo:.2f}-{hi:.2f} | {verdict} |")
    minted, cached = m1[0] - m0[0], m1[1] - m0[1]
    log("")
    log(f"leaves: {mint[0]:.0f} names seen once each, {mint[1]:.0f} us to mint a leaf; during "
        f"the rounds {minted:.0f} minted, {cached:.0f} from the cache (hit rate "
        f"{cached / max(minted + cached, 1):.4f})")
    log(f"wall time {wall:.0f} s")


def main():
    ap = benchlib.parser(__doc__, "smoke run, about a minute")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 5; quick: 2)")
    ap.add_argument("--conns", type=int, help="requests per path and round (default 1000; "
                    "quick: 300)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-seconds", type=float, default=600.0,
                    help="give up (and clean up) after this long")
    args = ap.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.conns = args.conns or (300 if args.quick else 1000)
    if not 1 <= args.conns <= 20000 or not 1 <= args.rounds <= 50:
        ap.error("--conns 1-20000, --rounds 1-50")
    err = benchlib.preflight("bench_inspect", TOOLS, (args.proxy, args.netsetup))
    if err is not None:
        return err
    if not os.access(CERTGEN, os.X_OK):
        print(f"bench_inspect: {CERTGEN} missing: apt-get install squid-openssl",
              file=sys.stderr)
        return 1

    def body(b, t0):
        b.build_helper()
        log(f"bench_inspect: proxy {args.proxy}, {shutil.which('squid')}")
        b.setup()
        b.sanity()
        res = b.measure()
        mint = b.mint()
        if not b.proxy.alive():
            b.findings.append(f"sluice-proxy died: {b.proxy.log()[-1000:]}")
        if not b.squid.alive():
            b.findings.append(f"squid died: {b.squid.log()[-1000:]}")
        denies = [r for r in b.flow_records() if r.get("event") == "deny" or
                  (r.get("event") == "request" and r.get("verdict") != "allow")]
        if denies:
            b.findings.append(f"sluice refused {len(denies)}: {denies[0]}")
        report(b, res, mint, time.monotonic() - t0)

    return benchlib.run(Bench(args), body)


if __name__ == "__main__":
    sys.exit(main())
