#!/usr/bin/env python3
"""sluice-proxy benchmark: download throughput, short TLS connections per second,
time to first byte, memory and the proxy's own CPU per unit of work, against the
direct path (no proxy), nginx `stream` + `ssl_preread`, HAProxy (`req.ssl_sni`
in TCP mode) and Squid (peek and splice) doing the same job, in one run, every
proxy pinned to CPU 0 and the clients to CPU 1.

Everything happens in the namespaces of a test world (tests/integration/
testworld.py: `inet` with dnsmasq and nginx, `host`) and in three client
namespaces plugged into `host`: a sluice sandbox made by sluice-netsetup, one
routed straight to inet, and one per peer whose port 443 is redirected to it.
Every namespace, process and temp dir is removed at the end, after a failure,
on Ctrl-C or SIGTERM. See tests/bench/README.md.

usage: bench_proxy.py [--quick] [--proxy PATH] [--netsetup PATH] [--json FILE]
"""

import json
import os
import re
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))

import benchlib                                    # noqa: E402
from benchlib import log                            # noqa: E402
import testworld                                    # noqa: E402
from testworld import ADDR, RUN_NETNS, World, wait_for   # noqa: E402

GOAL_THROUGHPUT = 0.90      # download MiB/s through sluice / direct
GOAL_CPS_DIRECT = 0.80      # TLS connections/s through sluice / direct
GOAL_CPS_NGINX = 1.3        # TLS connections/s through sluice / through nginx stream
GOAL_TTFB = 1.1             # median time to first byte, sluice / direct
GOAL_FLOW_BYTES = 4096      # sluice-proxy VmRSS per idle allowed TLS connection (the old
                            # goal: 8 MiB with 2,000 of them)
GOAL_IDLE_MIB = 2.0         # sluice-proxy VmRSS after start, no flow yet
GOAL_CPU_CONN = 0.75        # sluice CPU per TLS connection / nginx stream's
GOAL_CPU_GIB = 0.5          # sluice CPU per GiB relayed / nginx stream's

NAME = "www.example.test"   # allowed; A 203.0.113.10 (A is tried before AAAA)
DST = ADDR.WWW4             # every client dials the name's address
BIG = "256m.bin"
BIG_BYTES = 256 << 20
PROXY_PORT = 15001          # sluice-netsetup's default proxy port
STREAM_PORT = 18443         # nginx stream, behind an nft redirect of :443
HAPROXY_PORT = 18444        # HAProxy, the same way
SQUID_PORT = 18445          # Squid, the same way
DIRECT_NET = ("10.201.0.1/30", "10.201.0.2/30")     # host side, client side
STREAM_NET = ("10.202.0.1/30", "10.202.0.2/30")
HAPROXY_NET = ("10.203.0.1/30", "10.203.0.2/30")
SQUID_NET = ("10.204.0.1/30", "10.204.0.2/30")
PEERS = ("nginx", "haproxy", "squid")
PATHS = ("direct", "sluice", *PEERS)
PROXIES = ("sluice", *PEERS)
PROXY_CPU, CLIENT_CPU = "0", "1"    # on two CPUs; one CPU: both 0
# descriptors a proxy may use: a held flow takes two, so 10,000 of them need more
# than 20,000 in one process; without CAP_SYS_RESOURCE (a container) the hard
# limit cannot be raised and the top count becomes what fits under it
NOFILE = min(24000, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
HELD_MAX = min(10000, NOFILE // 2 - 100)
HOLD_CONCURRENCY = 64
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
PROXY_TOOLS = ("ip", "nft", "nsenter", "cc", "curl", "nginx", "dnsmasq", "openssl", "haproxy",
               "squid", "taskset")

NO_LIMITS = {"max_connections": "0", "new_connections_per_second": "0",
             "upload_bytes_per_second": "0", "download_bytes_per_second": "0"}


def policy_yaml(limits):
    """The benchmark's policy: NAME on 80 and 443, TEST-NET-3 reachable, and the
    `limits:` section LIMITS (key -> YAML scalar). Every key is given: a policy
    without them gets the defaults (256 flows, 20/s, 1 MiB/s up, 50 MiB/s down)."""
    return f"""\
version: 1
egress:
  - domain: {NAME}
    ports: [80, 443]
destinations:
  allow_ranges: [203.0.113.0/24]        # the test internet lives in TEST-NET-3
limits:
""" + "".join(f"  {k}: {v}\n" for k, v in limits.items())


POLICY = policy_yaml(NO_LIMITS)     # 0 = no limit: the benchmark measures the relay


def med(v):
    return statistics.median(v)


def verdict(ok):
    return "PASS" if ok else "MISS"


def proc_status(pid):
    """VmRSS, RssAnon, RssFile, RssShmem of PID in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
            out[k] = int(v.split()[0])
    return out


def private_kib(pid):
    """Memory only this process holds (Private_Clean + Private_Dirty), in KiB."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def cpu_seconds(pid):
    """CPU time PID has used (schedstat: nanoseconds; else stat: clock ticks)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of(pids):
    """CPU time the processes PIDS have used together."""
    return sum(cpu_seconds(p) for p in pids)


def children(pid):
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, ValueError, IndexError):
                pass
    return out


def n_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def pinned(cpu, argv):
    """ARGV on CPU only (CPU 0 when the machine has one)."""
    return ["taskset", "-c", cpu if (os.cpu_count() or 1) > 1 else "0", *argv]


def haproxy_conns(sock):
    """Sessions HAProxy's frontend `allowlist` has taken (`show stat`: stot), read
    through stats socket SOCK (whose own connections are another frontend's)."""
    import socket as _socket
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(sock))
    s.sendall(b"show stat\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    lines = data.decode().splitlines()
    head = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        f = line.split(",")
        if f[:2] == ["allowlist", "FRONTEND"]:
            return int(f[head.index("stot")])
    raise RuntimeError(f"haproxy stats: no frontend allowlist in {data[:300]!r}")


class BenchWorld(World):
    """The test world, with nginx able to hold thousands of connections."""

    def _nginx_conf(self):
        path = super()._nginx_conf()
        text = path.read_text()
        old = "events { worker_connections 512; }"
        if old not in text:
            raise RuntimeError(f"testworld's nginx.conf no longer says {old!r}: update "
                               "BenchWorld._nginx_conf")
        path.write_text(text.replace(old, f"worker_rlimit_nofile {NOFILE};\n"
                                          "events { worker_connections 16384; }"))
        return path


class Bench:
    def __init__(self, args):
        self.args = args
        self.deadline = time.monotonic() + args.max_seconds
        self.w = None
        self.tmp = Path(tempfile.mkdtemp(prefix="sluice-bench-proxy-"))
        self.ns = {}            # path -> client namespace
        self.proxy = self.stream = self.haproxy = self.squid = None
        self.procs = []         # our own Popen objects (the hold client)
        self.findings = []      # correctness problems: they make the exit status 1
        self.through_sluice = 0  # connections the clients completed through sluice
        self.netsetup_env = dict(os.environ)
        self.cleaned = False

    # ---- safety and bounds ----

    def guard(self):
        if time.monotonic() > self.deadline:
            raise RuntimeError(f"time limit of {self.args.max_seconds:g} s reached")

    def run(self, ns, argv, timeout=60, check=True, env=None, input=None):
        """ARGV inside namespace NS (one of the world's: checked by testworld)."""
        self.guard()
        r = self.w.run(ns, argv, timeout=timeout, nsenter=True, env=env, input=input)
        if check and r.returncode != 0:
            raise RuntimeError(f"in {ns}: {' '.join(map(str, argv))}: exit {r.returncode}: "
                               f"{(r.stderr or r.stdout).strip()[-2000:]}")
        return r

    def cleanup(self):
        if self.cleaned:
            return
        self.cleaned = True
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for p in self.procs:
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    p.wait(timeout=5)
            if self.w:
                benchlib.teardown_world(self.w, self.args.netsetup, self.ns.get("sluice"),
                                        self.netsetup_env)
            shutil.rmtree(self.tmp, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, old)

    # ---- the world ----

    def build_helper(self):
        for name, libs in (("tls_client", ["-lssl", "-lcrypto"]), ("wake_rtt", [])):
            out = self.tmp / name
            r = subprocess.run(["cc", "-O2", "-Wall", "-o", str(out), str(HERE / f"{name}.c"),
                                *libs], capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                raise RuntimeError(f"building {name}: {r.stderr.strip()}")
        self.client = str(self.tmp / "tls_client")
        self.wake_rtt = str(self.tmp / "wake_rtt")

    def wake_latency(self):
        """Round trips of two processes waking each other through pipes (no network):
        {"one": p50 us on one CPU, "two": p50 us across two CPUs (None with one CPU)}."""
        out = {}
        for key, cpus in (("one", ("0", "0")), ("two", ("0", "1"))):
            if key == "two" and (os.cpu_count() or 1) < 2:
                out[key] = None
                continue
            r = subprocess.run([self.wake_rtt, *cpus, "2000"], capture_output=True, text=True,
                               timeout=30)
            m = re.search(r"rtt_p50_us=([\d.]+)", r.stdout)
            if r.returncode != 0 or not m:
                raise RuntimeError(f"wake_rtt {cpus}: {r.stdout} {r.stderr}")
            out[key] = float(m.group(1))
        return out

    def setup(self):
        self.setup_world()
        self.add_sandbox()
        self.add_direct()
        self.add_nginx()
        self.start_stream()
        self.add_redirected("haproxy", "hr", HAPROXY_NET, HAPROXY_PORT)
        self.start_haproxy()
        self.add_redirected("squid", "sr", SQUID_NET, SQUID_PORT)
        self.start_squid()
        self.start_proxy()

    def setup_world(self):
        """The test world, with the 256 MiB file nginx serves."""
        testworld.reap_stale()
        self.w = BenchWorld()
        self.w.setup()
        # every proxy here dials the origin from host's one address: ten thousand
        # held flows per peer and the rate rounds' closed ones (in TIME_WAIT on
        # the proxy's side, which sends the first FIN) must not run out of ports
        for key, val in (("net.ipv4.ip_local_port_range", "1024 65000"),
                         ("net.ipv4.tcp_tw_reuse", "1")):
            self.run(self.w.host, ["sysctl", "-qw", f"{key}={val}"])
        self.ca = str(self.w.ca_cert)
        with open(self.w.tmp / "www" / "files" / BIG, "wb") as f:
            f.truncate(BIG_BYTES)           # sparse: served from the page cache

    def add_sandbox(self):
        """The sluice sandbox, made the way an operator makes it."""
        w = self.w
        self.netsetup_env = dict(os.environ, SLUICE_RUN_DIR=str(w.tmp / "run"))
        sb = w.name("sb")
        self.ns["sluice"] = sb
        info = json.loads(self.run(w.host, [self.args.netsetup, "up", sb, "--json"],
                                   env=self.netsetup_env).stdout)
        self.gw = info["gateway_addr"].split("/")[0]

    def add_direct(self):
        """The direct path: a namespace routed through host (forwarding) to inet."""
        w = self.w
        dr = w.add_ns("dr")
        self.ns["direct"] = dr
        w.veth(w.host, dr, "bdr0", "eth0", [DIRECT_NET[0]], [DIRECT_NET[1]])
        self.run(dr, ["ip", "route", "add", "default", "via", DIRECT_NET[0].split("/")[0]])
        w.route_via_host(DIRECT_NET[0].rsplit(".", 1)[0] + ".0/30")

    def add_redirected(self, path, role, net, port):
        """A client namespace for PATH whose port 443 an nft redirect in host sends
        to PORT there. No route back from inet: if the redirect did not work,
        nothing would connect."""
        w = self.w
        ns = w.add_ns(role)
        self.ns[path] = ns
        w.veth(w.host, ns, f"b{role}0", "eth0", [net[0]], [net[1]])
        self.run(ns, ["ip", "route", "add", "default", "via", net[0].split("/")[0]])
        nft = self.tmp / f"redirect-{role}.nft"
        nft.write_text(f"table ip slbench_{role} {{\n"
                       "  chain pre {\n"
                       "    type nat hook prerouting priority dstnat; policy accept;\n"
                       f'    iifname "b{role}0" tcp dport 443 redirect to :{port}\n'
                       "  }\n}\n")
        self.run(w.host, ["nft", "-f", str(nft)])

    def add_nginx(self):
        """The nginx path: port 443 redirected to nginx stream listening in host."""
        self.add_redirected("nginx", "nr", STREAM_NET, STREAM_PORT)

    def start_stream(self):
        w = self.w
        d = w.tmp / "stream"
        d.mkdir()
        listen = STREAM_NET[0].split("/")[0]
        conf = d / "nginx.conf"
        conf.write_text(f"""\
load_module {STREAM_MODULE};
daemon off; master_process on; worker_processes 1; user root root;
pid {d / 'nginx.pid'};
error_log {d / 'error.log'} notice;
worker_rlimit_nofile {NOFILE};
events {{ worker_connections {NOFILE}; }}
stream {{
    resolver {ADDR.DNS4} ipv6=off valid=300s;
    map $ssl_preread_server_name $upstream {{
        {NAME} {NAME};
        default "";
    }}
    log_format sni '$remote_addr $ssl_preread_server_name $upstream_addr $status';
    access_log {d / 'access.log'} sni;
    server {{
        listen {listen}:{STREAM_PORT} backlog=1024;
        ssl_preread on;
        proxy_pass $upstream:443;
        proxy_connect_timeout 10s;
    }}
}}
""")
        self.stream = w.spawn(w.host, pinned(PROXY_CPU, [
            "nginx", "-p", str(d), "-c", str(conf), "-e", str(d / "error.log")]),
            name="nginx-stream")
        w.wait_listening(self.stream, {("tcp", listen, STREAM_PORT)})
        self.stream_log = d / "access.log"

    def peer_conf(self, d, name, values, check):
        """tests/bench/peers/NAME with its {placeholders} filled from VALUES, written
        to D/NAME and checked by the peer itself (CHECK + the file's path)."""
        conf = d / name
        text = (HERE / "peers" / name).read_text()
        for k, v in values.items():
            text = text.replace("{" + k + "}", v)
        conf.write_text(text)
        r = self.run(self.w.host, [*check, str(conf)], check=False)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(check)}: {r.stdout.strip()} {r.stderr.strip()}")
        return conf

    def start_haproxy(self):
        """HAProxy from tests/bench/peers/haproxy.cfg, in host, one thread."""
        w = self.w
        d = w.tmp / "haproxy"
        d.mkdir()
        listen = HAPROXY_NET[0].split("/")[0]
        conf = self.peer_conf(d, "haproxy.cfg", {
            "maxconn": str(HELD_MAX + 50), "dir": str(d), "dns": ADDR.DNS4, "listen": listen,
            "port": str(HAPROXY_PORT), "name": NAME}, ["haproxy", "-c", "-f"])
        self.haproxy = w.spawn(w.host, pinned(PROXY_CPU, ["haproxy", "-db", "-f", str(conf)]),
                               name="haproxy")
        w.wait_listening(self.haproxy, {("tcp", listen, HAPROXY_PORT)})
        self.haproxy_sock = d / "stats.sock"

    def start_squid(self):
        """Squid from tests/bench/peers/squid.conf, in host, one process."""
        w = self.w
        d = w.tmp / "squid"
        d.mkdir()
        subprocess.run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-noenc", "-days", "2", "-subj",
                        "/CN=squid bench CA", "-keyout", str(d / "ca.key"), "-out",
                        str(d / "ca.pem"), "-addext", "basicConstraints=critical,CA:TRUE",
                        "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                       check=True, capture_output=True, timeout=30)
        listen = SQUID_NET[0].split("/")[0]
        conf = self.peer_conf(d, "squid.conf", {
            "http_port": str(SQUID_PORT + 1), "dir": str(d), "dns": ADDR.DNS4, "listen": listen,
            "port": str(SQUID_PORT), "name": NAME, "nofile": str(NOFILE)},
            ["squid", "-k", "parse", "-f"])
        subprocess.run(["chown", "-R", "proxy:proxy", str(d)], check=True)
        w.tmp.chmod(0o755)                  # Squid runs as proxy after reading its config
        self.squid = w.spawn(w.host, pinned(PROXY_CPU, ["squid", "-N", "-f", str(conf)]),
                             name="squid")
        w.wait_listening(self.squid, {("tcp", listen, SQUID_PORT)})
        self.squid_log = d / "access.log"

    def pids_of(self, path):
        """The processes doing PATH's relaying ([] for the direct path): sluice's one,
        nginx stream's worker, HAProxy's one, Squid and any helper it started."""
        if path == "sluice":
            return [self.proxy.pid]
        if path == "nginx":
            return [self.stream_worker()]
        if path == "haproxy":
            return [self.haproxy.pid]
        if path == "squid":
            return [self.squid.pid, *children(self.squid.pid)]
        return []

    def start_proxy(self, policy_text=POLICY):
        w = self.w
        d = w.tmp / "proxy"
        d.mkdir(exist_ok=True)
        policy = d / "policy.yaml"
        policy.write_text(policy_text)
        self.policy_path = policy
        self.flowlog = d / "flows.jsonl"
        argv = [self.args.proxy, "--policy", str(policy), "--listen", f"{self.gw}:{PROXY_PORT}",
                "--upstream-dns", ADDR.DNS4, "--id", "bench", "--log", str(self.flowlog),
                "--foreground"]
        self.proxy = w.spawn(w.host, pinned(PROXY_CPU, argv), name="sluice-proxy", nsenter=True)
        t0 = time.monotonic()
        wait_for(lambda: "serving with policy" in self.proxy.log() or
                 (not self.proxy.alive() and (_ for _ in ()).throw(
                     RuntimeError(f"sluice-proxy exited: {self.proxy.log()}"))),
                 5.0, what="sluice-proxy serving")
        self.proxy_started = t0
        comm = Path(f"/proc/{self.proxy.pid}/comm").read_text().strip()
        if comm != "sluice-proxy":
            raise RuntimeError(f"pid {self.proxy.pid} is {comm!r}, not sluice-proxy")

    def stream_worker(self):
        kids = children(self.stream.pid)
        if len(kids) != 1:
            raise RuntimeError(f"nginx stream: expected one worker, found {kids}")
        return kids[0]

    # ---- clients ----

    def curl(self, path, url, max_time=60):
        port = 443 if url.startswith("https:") else 80
        argv = ["curl", "-sS", "-o", "/dev/null", "--max-time", str(max_time),
                "--cacert", self.ca, "--resolve", f"{NAME}:{port}:{DST}",
                "-w", "%{http_code} %{size_download} %{time_total} %{time_starttransfer}", url]
        r = self.run(self.ns[path], pinned(CLIENT_CPU, argv), timeout=max_time + 10,
                     check=False)
        f = r.stdout.split()
        if r.returncode != 0 or len(f) != 4 or f[0] != "200":
            raise RuntimeError(f"curl {url} from {path}: exit {r.returncode}: "
                               f"{r.stdout.strip()} {r.stderr.strip()}")
        if path == "sluice":
            self.through_sluice += 1
        return int(f[1]), float(f[2])

    def tls(self, path, count, conc, limit=30.0):
        """tls_client rate from PATH: (ok, failed, rate, ttfb p50 us, seconds)."""
        argv = [self.client, "rate", DST, "443", NAME, self.ca, str(count), str(conc),
                str(limit)]
        r = self.run(self.ns[path], pinned(CLIENT_CPU, argv), timeout=limit + 30, check=False)
        m = re.search(r"ok=(\d+) failed=(\d+) seconds=([\d.]+) rate=([\d.]+) "
                      r"ttfb_p10_us=(\d+) ttfb_p50_us=(\d+) ttfb_p90_us=(\d+) "
                      r"handshake_p50_us=(\d+)", r.stdout)
        if not m:
            raise RuntimeError(f"tls_client from {path}: exit {r.returncode}: "
                               f"{r.stdout.strip()} {r.stderr.strip()}")
        ok, failed = int(m.group(1)), int(m.group(2))
        if failed:
            self.findings.append(f"tls_client from {path}: {failed} of {count} connections "
                                 f"failed: {r.stderr.strip()[:500]}")
        if path == "sluice":
            self.through_sluice += ok
        return {"ok": ok, "rate": float(m.group(4)), "p10": int(m.group(5)),
                "p50": int(m.group(6)),
                "p90": int(m.group(7)), "hs": int(m.group(8)), "seconds": float(m.group(3))}

    def hold(self, path, count, limit=90.0):
        """Starts a hold client from PATH; returns (popen, seconds to complete)."""
        self.guard()
        ns = self.ns[path]
        # world.spawn gives no stdin pipe: the same namespace check (_own) and
        # parent-death signal (_child_setup) by hand
        argv = ["nsenter", f"--net={RUN_NETNS / self.w._own(ns)}", "--",
                *pinned(CLIENT_CPU, [self.client, "hold", DST, "443", NAME, self.ca, str(count),
                                     str(HOLD_CONCURRENCY), str(limit)])]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True,
                             preexec_fn=testworld._child_setup)
        self.procs.append(p)
        ready, _, _ = select.select([p.stdout], [], [], limit)
        line = p.stdout.readline() if ready else ""
        m = re.match(r"held ok=(\d+) failed=(\d+) seconds=([\d.]+)", line)
        if not m or int(m.group(1)) != count:
            self.release(p)
            raise RuntimeError(f"hold client from {path}: {line.strip()!r} "
                               f"{p.stderr.read()[-1000:]}")
        if path == "sluice":
            self.through_sluice += count
        return p, float(m.group(3))

    def release(self, p):
        try:
            p.stdin.write("\n")
            p.stdin.flush()
        except OSError:
            pass
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)
        self.procs.remove(p)

    # ---- checks ----

    def flow_records(self):
        try:
            return [json.loads(l) for l in self.flowlog.read_text().splitlines() if l]
        except FileNotFoundError:
            return []

    def stream_lines(self):
        return self.stream_log.read_text().splitlines() if self.stream else []

    def squid_lines(self):
        """Squid's access log lines of spliced connections (TCP_TUNNEL, status 200 or,
        when the client ended the tunnel first, 500; the peek step writes a line of
        its own, NONE_NONE, for the address it intercepted)."""
        if not self.squid_log.exists():
            return []
        return [x for x in self.squid_log.read_text().splitlines() if " TCP_TUNNEL/" in x]

    def evidence(self):
        """What each proxy has counted so far: sluice's flow_start records, nginx
        stream's and Squid's log lines, HAProxy's frontend sessions (a peer not
        started here counts nothing)."""
        return {"sluice": sum(r.get("event") == "flow_start" for r in self.flow_records()),
                "nginx": len(self.stream_lines()),
                "haproxy": haproxy_conns(self.haproxy_sock) if self.haproxy else 0,
                "squid": len(self.squid_lines()) if self.squid else 0}

    def sanity(self, paths=PATHS):
        """One request per path; prove each took the path it is named after."""
        for path in paths:
            before = self.evidence()
            r = self.run(self.ns[path], ["curl", "-sS", "--max-time", "10", "--cacert", self.ca,
                                         "--resolve", f"{NAME}:443:{DST}",
                                         f"https://{NAME}/"], timeout=20)
            if r.stdout != f"hello from {NAME}\n":
                raise RuntimeError(f"{path}: unexpected answer {r.stdout!r}")
            want = {p: before[p] + (p == path) for p in before}
            try:        # Squid writes its line when the tunnel has closed
                wait_for(lambda: self.evidence() == want, 10.0, what=f"{path}'s evidence")
            except AssertionError:
                raise RuntimeError(f"{path}: the proxies counted {self.evidence()} after "
                                   f"{before}; expected one more for {path} only") from None
            if path == "sluice":
                start = [f for f in self.flow_records() if f.get("event") == "flow_start"][-1]
                if start.get("upstream") != f"{DST}:443":
                    raise RuntimeError(f"sluice went to {start.get('upstream')}, not {DST}")
        self.through_sluice += "sluice" in paths
        log(f"check: each path ({', '.join(paths)}) is what it says (sluice's flow log, "
            "nginx stream's and Squid's logs, HAProxy's connection count, the direct path "
            "in none)")

    def check_flowlog(self):
        def counts():
            recs = self.flow_records()
            return (recs, sum(r.get("event") == "flow_start" for r in recs),
                    sum(r.get("event") == "flow_end" for r in recs))
        try:            # the last flows may still be closing
            wait_for(lambda: counts()[1] == counts()[2], 5.0, what="every flow_end")
        except AssertionError:
            pass
        recs, starts, ends = counts()
        denies = [r for r in recs if r.get("event") == "deny"]
        log(f"flow log: {starts} flow_start, {ends} flow_end, {len(denies)} deny; the clients "
            f"completed {self.through_sluice} connections through sluice")
        if denies:
            self.findings.append(f"sluice denied {len(denies)} flows, e.g. {denies[0]}")
        if ends != starts:
            self.findings.append(f"{starts - ends} flows never ended (flow_end missing)")
        if starts != self.through_sluice:
            self.findings.append(f"flow_start records ({starts}) != connections completed "
                                 f"through sluice ({self.through_sluice})")

    # ---- measurements ----

    def order(self, rnd, paths=PATHS):
        k = rnd % len(paths)
        return paths[k:] + paths[:k]

    def memory(self):
        """RSS of every proxy (all its processes) idle and holding each of --held's
        counts of idle TLS connections, the proxies in turn; sluice's in detail."""
        a = self.args
        px = self.proxy.pid
        settle = self.proxy_started + 1.0 - time.monotonic()
        if settle > 0:
            time.sleep(settle)
        rss = lambda pids: sum(proc_status(p)["VmRSS"] for p in pids)     # noqa: E731
        fds = lambda pids: sum(n_fds(p) for p in pids)                      # noqa: E731
        idle = proc_status(px)
        idle["private"] = private_kib(px)
        res = {"idle": idle, "idle_kib": {p: rss(self.pids_of(p)) for p in PROXIES},
               "held": {}}
        for i, count in enumerate(a.held):
            res["held"][count] = per = {}
            for path in self.order(i, PROXIES):
                pids = self.pids_of(path)
                fds0 = fds(pids)
                p, secs = self.hold(path, count)
                time.sleep(1.0)
                per[path] = {"kib": rss(pids), "fds": fds(pids), "seconds": secs}
                if path == "sluice":
                    per[path]["status"] = proc_status(px)
                    per[path]["private"] = private_kib(px)
                self.release(p)
                wait_for(lambda: fds(pids) <= fds0 + 4, 30.0, what=f"{path}'s flows closed")
            log(f"memory: {count} TLS connections held through each proxy; handshakes took " +
                ", ".join(f"{q} {per[q]['seconds']:.1f} s" for q in PROXIES) +
                "; descriptors " + ", ".join(f"{q} {per[q]['fds']}" for q in PROXIES))
        time.sleep(1.5)                 # past the proxy's heap trim (once a second, idle)
        res["after"] = proc_status(px)
        return res

    def throughput(self):
        a = self.args
        urls = {"tls": f"https://{NAME}/files/{BIG}", "http": f"http://{NAME}/files/{BIG}"}
        res = {(k, p): [] for k in urls for p in PATHS}
        cpu = {p: [] for p in PROXIES}
        for p in ("direct", "sluice"):      # warm-up: page cache, resolver caches
            self.curl(p, urls["tls"])
        for rnd in range(a.tp_rounds):
            for kind, url in urls.items():
                paths = PATHS if kind == "tls" else ("direct", "sluice")
                for path in self.order(rnd, paths):
                    pids = self.pids_of(path)
                    c0 = cpu_of(pids)
                    size, secs = self.curl(path, url)
                    if size != BIG_BYTES:
                        self.findings.append(f"{kind} download from {path}: {size} bytes")
                    res[(kind, path)].append(size / secs / (1 << 20))
                    if pids and kind == "tls":    # CPU-seconds per GiB relayed
                        cpu[path].append((cpu_of(pids) - c0) / (size / (1 << 30)))
            log(f"  throughput round {rnd + 1}/{a.tp_rounds}: " + ", ".join(
                f"{k} {p} {res[(k, p)][-1]:.0f}" for k in urls for p in PATHS if res[(k, p)]))
        return res, cpu

    def rates(self):
        a = self.args
        res = {p: [] for p in PATHS}
        cpu = {p: [] for p in PROXIES}
        for p in PATHS:                     # warm-up, not counted
            self.tls(p, min(300, a.conns), a.concurrency)
        for rnd in range(a.rounds):
            for path in self.order(rnd):
                pids = self.pids_of(path)
                c0 = cpu_of(pids)
                r = self.tls(path, a.conns, a.concurrency)
                if pids:
                    cpu[path].append((cpu_of(pids) - c0) / max(1, r["ok"]) * 1e6)
                res[path].append(r)
            log(f"  conn/s round {rnd + 1}/{a.rounds}: " +
                ", ".join(f"{p} {res[p][-1]['rate']:.0f}" for p in PATHS))
        return res, cpu

    def ttfb(self):
        a = self.args
        res = {p: [] for p in PATHS}
        self.wake = self.wake_latency()
        for rnd in range(a.ttfb_rounds):
            for path in self.order(rnd):
                res[path].append(self.tls(path, a.ttfb_conns, 1))
        log("  ttfb p50 per round (us): " + "; ".join(
            f"{p} " + " ".join(str(r["p50"]) for r in res[p]) for p in PATHS))
        return res


def per_flow(mem, path, count):
    """Bytes of RSS PATH's processes hold per idle flow, above their idle RSS."""
    return (mem["held"][count][path]["kib"] - mem["idle_kib"][path]) * 1024 / count


def ratio_stats(num, den):
    """Per-round ratios num/den and their median."""
    rs = [n / d if d else float("nan") for n, d in zip(num, den)]
    return rs, med(rs)


def report(b, mem, tp, rates, ttfb, wall):
    """Print the table, the goals and where the time and memory go. A part not run
    (--only) is None and leaves its rows out."""
    a = b.args
    mib = lambda kib: kib / 1024    # noqa: E731
    goals, where = [], []
    others = ("direct", *PEERS)

    def row(label, vals, fmt, ratios=True):
        """VALS: path -> the per-round list (or a number); medians and sluice/other."""
        m = {p: (med(v) if isinstance(v, list) else v) for p, v in vals.items() if v}
        cells = " ".join(f"{format(m[p], fmt):>9}" if p in m else f"{'-':>9}" for p in PATHS)
        rs = []
        for o in others:
            if not ratios or o not in m or "sluice" not in m:
                rs.append(f"{'-':>9}")
            elif isinstance(vals[o], list) and isinstance(vals["sluice"], list):
                rs.append(f"{ratio_stats(vals['sluice'], vals[o])[1]:9.2f}")
            else:
                rs.append(f"{m['sluice'] / m[o]:9.2f}")
        log(f"{label:38} {cells} {' '.join(rs)}")
        return m

    log()
    log("sluice-proxy against the direct path, nginx stream (ssl_preread), HAProxy "
        "(req.ssl_sni) and Squid (peek and splice), same machine, same run;")
    log(f"every proxy pinned to CPU {PROXY_CPU}, the clients to CPU {CLIENT_CPU}; ratios: "
        "sluice / the other, medians of per-round ratios")
    log(f"{'':38} " + " ".join(f"{p:>9}" for p in PATHS) + " " +
        " ".join(f"{'s/' + o[:7]:>9}" for o in others))

    if tp:
        tpr, tcpu = tp
        for kind in ("tls", "http"):
            v = {p: tpr[(kind, p)] for p in PATHS if tpr[(kind, p)]}
            row(f"download {kind.upper()} 256 MiB, MiB/s", v, ".0f")
            _, r = ratio_stats(v["sluice"], v["direct"])
            goals.append((f"download {kind.upper()} >= {GOAL_THROUGHPUT:g} x direct",
                          f"{r:.2f}", r >= GOAL_THROUGHPUT))
        row("CPU per GiB relayed (TLS), s", {p: tcpu[p] for p in PROXIES}, ".3f")
        _, r = ratio_stats(tcpu["sluice"], tcpu["nginx"])
        goals.append((f"CPU per GiB <= {GOAL_CPU_GIB:g} x nginx stream", f"{r:.2f}",
                      r <= GOAL_CPU_GIB))
    if rates:
        rr, rcpu = rates
        v = {p: [x["rate"] for x in rr[p]] for p in PATHS}
        row(f"TLS connections/s ({a.concurrency} at a time)", v, ".0f")
        _, r_d = ratio_stats(v["sluice"], v["direct"])
        _, r_n = ratio_stats(v["sluice"], v["nginx"])
        goals.append((f"TLS connections/s >= {GOAL_CPS_DIRECT:g} x direct", f"{r_d:.2f}",
                      r_d >= GOAL_CPS_DIRECT))
        goals.append((f"TLS connections/s >= {GOAL_CPS_NGINX:g} x nginx stream", f"{r_n:.2f}",
                      r_n >= GOAL_CPS_NGINX))
        m = row("CPU per TLS connection, us", {p: rcpu[p] for p in PROXIES}, ".0f")
        _, r = ratio_stats(rcpu["sluice"], rcpu["nginx"])
        goals.append((f"CPU per TLS connection <= {GOAL_CPU_CONN:g} x nginx stream", f"{r:.2f}",
                      r <= GOAL_CPU_CONN))
        spread = {p: f"{min(rcpu[p]):.0f}-{max(rcpu[p]):.0f}" for p in PROXIES}
        where.append("CPU per TLS connection (the process and the kernel work charged to it), "
                     "range over rounds: " + ", ".join(f"{p} {spread[p]} us" for p in PROXIES))
        where.append("  connections per CPU-second, the ceiling where the proxy is the "
                     "bottleneck: " + ", ".join(f"{p} {1e6 / m[p]:.0f}" for p in PROXIES))
    if ttfb:
        v = {p: [x["p50"] / 1000 for x in ttfb[p]] for p in PATHS}
        row("time to first byte, median ms", v, ".3f")
        _, t_d = ratio_stats(v["sluice"], v["direct"])
        v90 = {p: [x["p90"] / 1000 for x in ttfb[p]] for p in PATHS}
        row("  (p90 ms, for information)", v90, ".3f", ratios=False)
        goals.append((f"median TTFB <= {GOAL_TTFB:g} x direct", f"{t_d:.2f}",
                      t_d <= GOAL_TTFB))
        hs = {p: med([x["hs"] / 1000 for x in ttfb[p]]) for p in PATHS}
        where.append("TTFB split, median ms: handshake done " +
                     " / ".join(f"{hs[p]:.3f}" for p in PATHS) +
                     ", then to the first response byte " +
                     " / ".join(f"{med(v[p]) - hs[p]:.3f}" for p in PATHS) +
                     " (" + " / ".join(PATHS) + ")")
        wk = b.wake
        if wk["two"] is not None:
            # a relay hop adds one wake-up to each of the 4 flights (hello, server
            # flight, Finished + request, response): the floor of any proxy's extra
            where.append(f"waking a sleeping process: {wk['one']:.0f} us round trip on one "
                         f"CPU, {wk['two']:.0f} us across two (a round trip is two wake-ups); "
                         f"4 flights x 1 extra wake-up = {2 * wk['two'] / 1000:.3f} ms, "
                         "measured extra: " + ", ".join(
                             f"{p} {med(v[p]) - med(v['direct']):.3f}" for p in PROXIES)
                         + " ms")
    if mem:
        idle, first = mem["idle"], min(mem["held"])
        row("RSS idle, MiB", {p: mib(mem["idle_kib"][p]) for p in PROXIES}, ".2f")
        for count, per in mem["held"].items():
            row(f"RSS with {count} idle TLS flows, MiB",
                {p: mib(per[p]["kib"]) for p in PROXIES}, ".2f")
            row(f"  bytes per idle flow ({count})",
                {p: per_flow(mem, p, count) for p in PROXIES}, ".0f")
        for count in mem["held"]:
            b_flow = per_flow(mem, "sluice", count)
            goals.append((f"RSS per idle flow <= {GOAL_FLOW_BYTES} bytes ({count} flows)",
                          f"{b_flow:.0f} B", b_flow <= GOAL_FLOW_BYTES))
        goals.append((f"RSS of an idle proxy <= {GOAL_IDLE_MIB:g} MiB",
                       f"{mib(idle['VmRSS']):.2f} MiB", mib(idle["VmRSS"]) <= GOAL_IDLE_MIB))
        held = mem["held"][first]["sluice"]
        hs = held["status"]
        where[:0] = [
            f"sluice RSS idle: {mib(idle['VmRSS']):.2f} MiB = anon {mib(idle['RssAnon']):.2f} + "
            f"file {mib(idle['RssFile']):.2f} (shared libraries) + shmem "
            f"{mib(idle['RssShmem']):.2f}",
            f"sluice RSS with {first} flows: {mib(hs['VmRSS']):.2f} MiB = anon "
            f"{mib(hs['RssAnon']):.2f} + file {mib(hs['RssFile']):.2f}; {held['fds']} "
            f"descriptors; after all flows closed {mib(mem['after']['VmRSS']):.2f} MiB",
            f"private memory (not shared with other processes): idle "
            f"{mib(idle['private']):.2f} MiB, with {first} flows {mib(held['private']):.2f} MiB",
            "RSS is of all a peer's processes but nginx stream's master (its worker relays)"]

    log()
    log("where it goes")
    for line in where:
        log("  " + line)
    log(f"  machine: {os.cpu_count()} CPUs, load {b.load0} at the start and "
        f"{os.getloadavg()[0]:.2f} at the end; ratios are medians of per-round ratios")
    log("  (the paths alternate within each round); a busy machine moves them by tens of "
        "percent")

    log()
    log("goals (a MISS does not change the exit status)")
    for text, value, ok in goals:
        log(f"  {text:<52} {value:>12}  {verdict(ok)}")
    log()
    log(f"run time: {wall:.1f} s")
    return figures(b, mem, tp, rates, ttfb, goals, wall)


def figures(b, mem, tp, rates, ttfb, goals, wall):
    """Every round's value of every figure, for --json (tests/bench/report)."""
    out = {"bench": "proxy", "paths": list(PATHS), "proxies": list(PROXIES),
           "load": [float(b.load0), os.getloadavg()[0]], "seconds": wall,
           "goals": [{"text": t, "value": v, "met": ok} for t, v, ok in goals]}
    if tp:
        tpr, tcpu = tp
        out["download_mib_s"] = {k: {p: tpr[(k, p)] for p in PATHS if tpr[(k, p)]}
                                 for k in ("tls", "http")}
        out["cpu_s_per_gib"] = tcpu
    if rates:
        rr, rcpu = rates
        out["conn_per_s"] = {p: [x["rate"] for x in rr[p]] for p in PATHS}
        out["cpu_us_per_conn"] = rcpu
    if ttfb:
        out["ttfb_ms"] = {q: {p: [x[q] / 1000 for x in ttfb[p]] for p in PATHS}
                          for q in ("p10", "p50", "p90")}
    if mem:
        out["rss_idle_kib"] = mem["idle_kib"]
        out["rss_held_kib"] = {str(n): {p: v["kib"] for p, v in per.items()}
                               for n, per in mem["held"].items()}
        out["rss_bytes_per_flow"] = {str(n): {p: per_flow(mem, p, n) for p in PROXIES}
                                     for n in mem["held"]}
    return out


def main():
    ap = benchlib.parser(__doc__, "smoke run, under a minute")
    ap.add_argument("--tp-rounds", type=int, help="256 MiB downloads per path and kind "
                    "(default 7; quick: 1)")
    ap.add_argument("--conns", type=int, help="TLS connections per round (default 2000; "
                    "quick: 500)")
    ap.add_argument("--rounds", type=int, help="connection-rate rounds (default 9; quick: 3)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--ttfb-conns", type=int, help="sequential connections per TTFB round "
                    "(default 100; quick: 40)")
    ap.add_argument("--ttfb-rounds", type=int, help="TTFB rounds (default 9; quick: 3)")
    ap.add_argument("--held", help="counts of idle connections for the memory figures, "
                    f"comma-separated (default 1000,{HELD_MAX}; quick: 500; at most "
                    f"{HELD_MAX}, what {NOFILE} descriptors hold)")
    ap.add_argument("--only", default="memory,throughput,rates,ttfb",
                    help="the parts to run, comma-separated (default: all four)")
    ap.add_argument("--max-seconds", type=float, default=450.0,
                    help="give up (and clean up) after this long")
    args = ap.parse_args()
    q = args.quick
    args.tp_rounds = args.tp_rounds or (1 if q else 7)
    args.conns = args.conns or (500 if q else 2000)
    args.rounds = args.rounds or (3 if q else 9)
    args.ttfb_conns = args.ttfb_conns or (40 if q else 100)
    args.ttfb_rounds = args.ttfb_rounds or (3 if q else 9)
    if not set(args.only.split(",")) <= {"memory", "throughput", "rates", "ttfb"}:
        ap.error("--only takes memory, throughput, rates and ttfb, comma-separated")
    try:
        args.held = sorted({int(n) for n in (args.held or ("500" if q else f"1000,{HELD_MAX}"))
                            .split(",")})
    except ValueError:
        ap.error("--held takes counts, comma-separated: 1000,10000")
    if not all(1 <= n <= HELD_MAX for n in args.held):
        ap.error(f"--held: each count must be 1-{HELD_MAX}")
    if not 1 <= args.conns <= 20000:
        ap.error("--conns must be 1-20000")
    err = benchlib.preflight("bench_proxy", PROXY_TOOLS, (args.proxy, args.netsetup))
    if err is not None:
        return err
    if not os.path.exists(STREAM_MODULE):
        print(f"bench_proxy: {STREAM_MODULE} missing: apt-get install libnginx-mod-stream",
              file=sys.stderr)
        return 1

    # every process started here inherits the limit: soft up to hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, resource.getrlimit(
        resource.RLIMIT_NOFILE)[1]))

    def body(b, t0):
        b.build_helper()
        log(f"bench_proxy: proxy {args.proxy}")
        b.load0 = f"{os.getloadavg()[0]:.2f}"
        log(f"machine: {os.cpu_count()} CPUs, kernel {os.uname().release}, load {b.load0}")
        b.setup()
        log(f"world {b.w.prefix}* up in {time.monotonic() - t0:.1f} s")
        b.sanity()
        only = set(args.only.split(","))
        mem = b.memory() if "memory" in only else None
        tp = b.throughput() if "throughput" in only else None
        rates = b.rates() if "rates" in only else None
        ttfb = b.ttfb() if "ttfb" in only else None
        b.check_flowlog()
        if not b.proxy.alive():
            b.findings.append(f"sluice-proxy died: {b.proxy.log()[-1000:]}")
        benchlib.write_json(args, report(b, mem, tp, rates, ttfb, time.monotonic() - t0))

    return benchlib.run(Bench(args), body)

if __name__ == "__main__":
    sys.exit(main())
