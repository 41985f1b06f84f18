"""Per-sandbox limits, metrics, the control socket and sluicectl (docs/design.md, P7, P9;
issue 7), in the test world with real clients.

Two sandboxes made by sluice-netsetup inside `host`, each test running its own
sluice-proxy there with the limits it needs. Limits are proved by what the
client and the far end saw (connections answered or reset, bytes per second
at the receiver), and every hit must also be a `limit` record and a metric.
"""

import collections
import json
import re
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from testworld import ADDR, PYTHON, wait_for
from test_netsetup import Netsetup
from test_proxy import DRAIN_PY, Proxy, check_log, curl, proc_cpu_seconds, stop_and_check

MIB = 1 << 20
METRICS_PORT = 15090

POLICY = """\
version: 1
egress:
  - domain: www.example.test
    ports: [443]
  - domain: plain.example.test
    ports: [80]
destinations:
  allow_ranges: [203.0.113.0/24, 2001:db8::/32]
dns:
  queries_per_second: 50
timeouts:
  sniff: {sniff}
limits:
{limits}
"""


def policy(sniff="5s", **limits):
    """The test policy with LIMITS set and every other limit off (0): the
    defaults (256 connections, 20 a second, 1 MiB/s up, 50 MiB/s down) would
    otherwise be in force."""
    every = dict(max_connections=0, new_connections_per_second=0, upload_bytes_per_second=0,
                 download_bytes_per_second=0)
    every.update(limits)
    return POLICY.format(sniff=sniff, limits="\n".join(f"  {k}: {v}" for k, v in every.items()))


@pytest.fixture(scope="module")
def sandboxes(world, sluice_bin, tmp_path_factory):
    """Two sandboxes: the one under test, and a neighbour for the isolation test."""
    tmp = tmp_path_factory.mktemp("limits")
    ns = Netsetup(world, sluice_bin("sluice-netsetup"), tmp / "run")
    try:
        yield ns.up(), ns.up()
    finally:
        ns.cleanup()


@pytest.fixture
def sluice(world, sluice_bin, sandboxes, tmp_path):
    """Factory: sluice(policy_text, sb=0, dns=False, wrap=()) starts a proxy for
    sandbox SB with --metrics and --control (px.metrics_url, px.control)."""
    made = []

    def start(text, sb=0, dns=False, wrap=()):
        box = sandboxes[sb]
        d = tmp_path / f"px{len(made)}"
        d.mkdir(mode=0o755)
        metrics = f"127.0.0.{10 + len(made)}:{METRICS_PORT}"
        extra = ["--metrics", metrics, "--control", str(d / "control.sock")]
        if dns:
            extra += ["--dns-listen", f"{box.gw}:15053"]
        px = Proxy(world, sluice_bin, box, d, policy=text, args=extra, wrap=wrap)
        px.metrics_url = f"http://{metrics}/metrics"
        px.control = d / "control.sock"
        px.sb = box
        made.append(px)
        return px

    yield start
    stop_and_check(made)


def scrape(world, px):
    """GET /metrics with curl in `host`; {(name, labels...): value}, parsed by
    prometheus_client's text-format parser (a malformed line raises)."""
    r = world.run(world.host, ["curl", "-sS", "--max-time", "5", px.metrics_url],
                  nsenter=True)
    assert r.returncode == 0, r.stderr
    out = {}
    for fam in text_string_to_metric_families(r.stdout):
        for s in fam.samples:
            out[(s.name, *sorted(s.labels.items()))] = s.value
    return out


def sluicectl(world, sluice_bin, px, *args):
    return world.run(world.host, [sluice_bin("sluicectl"), "--control", str(px.control),
                                  *args], nsenter=True, timeout=15)


def control_json(world, sluice_bin, px, cmd):
    r = sluicectl(world, sluice_bin, px, cmd, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def spawn_py(world, sb, script, *args, name="client"):
    return world.spawn(sb.name, [PYTHON, "-u", "-c", script, *map(str, args)], name=name,
                       nsenter=True)


def last_json(proc, timeout):
    """The process's last output line, parsed, once it has exited."""
    proc.popen.wait(timeout=timeout)
    lines = [l for l in proc.log().splitlines() if l.startswith("{")]
    assert lines, proc.log()[-2000:]
    return json.loads(lines[-1])


# ------------------------------------------------------------- max_connections

HOLD_TLS = r"""
import json, socket, ssl, sys, time
n, addr, ca, hold = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
ctx = ssl.create_default_context(cafile=ca)
held, refused, t0 = [], 0, time.monotonic()
for i in range(n):
    if time.monotonic() - t0 > 60:
        break
    try:
        s = socket.create_connection((addr, 443), 5)
        held.append(ctx.wrap_socket(s, server_hostname="www.example.test"))
    except (OSError, ssl.SSLError):
        refused += 1
print(json.dumps({"phase": "held", "held": len(held), "refused": refused}), flush=True)
time.sleep(hold)
answered = 0
for t in held:          # a held connection is up when a request on it is answered
    try:
        t.settimeout(5)
        t.sendall(b"GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
        if t.recv(100).startswith(b"HTTP/1.1 200"):
            answered += 1
    except OSError:
        pass
print(json.dumps({"phase": "done", "held": len(held), "refused": refused,
                  "answered": answered}), flush=True)
"""


def test_300_connections_against_max_256(world, sluice_bin, sluice):
    px = sluice(policy(max_connections=256))
    client = spawn_py(world, px.sb, HOLD_TLS, 300, ADDR.CAPTURE4, world.ca_cert, 4)
    wait_for(lambda: '"phase": "held"' in client.log() or not client.alive(), 60,
             what="300 handshakes")
    held = json.loads(client.log().splitlines()[0])
    assert held["held"] == 256 and held["refused"] == 44, (held, px.proc.log()[-1500:],
        collections.Counter((r["event"], r.get("reason")) for r in px.records()))
    # what the proxy says while they are held: the control socket and the metrics agree
    stats = control_json(world, sluice_bin, px, "stats")
    assert stats["active_flows"] == 256, stats
    assert stats["rate_limited"]["max_connections"] == 44, stats
    flows = control_json(world, sluice_bin, px, "flows")["flows"]
    assert len(flows) == 256
    assert {f["host"] for f in flows} == {"www.example.test"}
    assert {f["state"] for f in flows} == {"relay"}
    m = scrape(world, px)
    assert m[("sluice_active_flows",)] == 256
    assert m[("sluice_rate_limited_total", ("limit", "max_connections"))] == 44
    assert m[("sluice_flows_total", ("proto", "tcp"), ("reason", "too_many_connections"),
              ("verdict", "deny"))] == 44
    done = last_json(client, 60)
    assert done["answered"] == 256, done
    limits = px.records(event="limit", limit="max_connections")
    assert len(limits) == 44
    assert all(r["reason"] == "too_many_connections" and r["verdict"] == "deny"
               for r in limits)


# ------------------------------------------------ new_connections_per_second

CONN_RATE = r"""
import json, socket, sys, time
addr, seconds = sys.argv[1], float(sys.argv[2])
ok, tried, t0 = [], 0, time.monotonic()
while time.monotonic() - t0 < seconds and tried < 100000:
    t = time.monotonic() - t0
    tried += 1
    try:
        s = socket.create_connection((addr, 80), 2)
        s.settimeout(2)
        s.sendall(b"GET / HTTP/1.1\r\nHost: plain.example.test\r\nConnection: close\r\n\r\n")
        if s.recv(12) == b"HTTP/1.1 200":
            ok.append(t)
        s.close()
    except OSError:
        pass
print(json.dumps({"ok": ok, "tried": tried, "elapsed": time.monotonic() - t0}))
"""


def test_new_connections_per_second(world, sluice, capture):
    rate, seconds = 20, 4.0
    px = sluice(policy(new_connections_per_second=rate))
    client = spawn_py(world, px.sb, CONN_RATE, ADDR.CAPTURE4, seconds)
    res = last_json(client, 30)
    assert res["tried"] > 10 * rate * seconds, "the client did not press hard enough"
    # the bucket is a second deep: the first second also spends it; after that,
    # what gets through is the rate
    assert res["elapsed"] >= seconds - 0.5, res["elapsed"]
    steady = [t for t in res["ok"] if 1.0 <= t < seconds]
    measured = len(steady) / (seconds - 1.0)
    assert abs(measured - rate) <= 0.15 * rate, (measured, len(res["ok"]), res["tried"])
    refused = px.records(event="limit", limit="new_connections_per_second")
    assert refused and all(r["reason"] == "rate_limited" for r in refused)
    assert world.capture_records() == []


# ------------------------------------------------------------------ bandwidth

def test_bandwidth_caps_each_way(world, sluice, tmp_path):
    down, up = 4 * MIB, 2 * MIB
    px = sluice(policy(download_bytes_per_second="4MiB", upload_bytes_per_second="2MiB"))
    # download over TLS (spliced) and plain HTTP
    for url in ("https://www.example.test/files/8m.bin", "http://plain.example.test/files/8m.bin"):
        r = curl(world, px.sb, url, "-o", "/dev/null", "-w", "%{size_download} %{speed_download}",
                 max_time=30)
        size, speed = map(float, r.stdout.split())
        assert size == 8 * MIB, (url, r.stdout, r.stderr)
        assert abs(speed - down) <= 0.15 * down, (url, speed / MIB)
    # uploads: plain HTTP (each request head checked in user space) and TLS (spliced)
    body = tmp_path / "4m.up"
    body.write_bytes(b"u" * (4 * MIB))
    for url in ("http://plain.example.test/uploads/lim.bin",
                "https://www.example.test/uploads/lim.bin"):
        r = curl(world, px.sb, url, "-T", str(body), "-o", "/dev/null", "-w",
                 "%{http_code} %{size_upload} %{speed_upload}", max_time=30)
        code, size, speed = r.stdout.split()
        assert code in ("201", "204") and float(size) == 4 * MIB, (url, r.stdout, r.stderr)
        assert abs(float(speed) - up) <= 0.15 * up, (url, float(speed) / MIB)
    (world.tmp / "www" / "uploads" / "lim.bin").unlink(missing_ok=True)
    limits = collections.Counter(r["limit"] for r in px.records(event="limit"))
    assert limits == {"download_bytes_per_second": 2, "upload_bytes_per_second": 2}, limits
    m = scrape(world, px)
    assert m[("sluice_rate_limited_total", ("limit", "download_bytes_per_second"))] == 2
    # throttled flows are allowed flows: nothing was denied
    assert not px.records(event="deny")


# ------------------------------------------------------------------ isolation

REQUESTS = DRAIN_PY + r"""
import json, socket, statistics, sys, time
addr, n = sys.argv[1], int(sys.argv[2])
times = []
for i in range(n):
    t = time.monotonic()
    s = socket.create_connection((addr, 80), 5)
    s.settimeout(5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: plain.example.test\r\nConnection: close\r\n\r\n")
    got = drain(s)
    assert got.startswith("HTTP/1.1 200"), got[:40]
    times.append(time.monotonic() - t)
    time.sleep(0.06)    # under the 20 connections a second both sandboxes are allowed
print(json.dumps({"median": statistics.median(times), "n": len(times)}))
"""

FLOOD = r"""
import json, random, socket, sys, time
kind, addr, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
t0, n = time.monotonic(), 0
if kind == "conns":
    while time.monotonic() - t0 < seconds and n < 200000:
        n += 1
        try:
            s = socket.create_connection((addr, 80), 1)
            s.sendall(b"GET / HTTP/1.1\r\nHost: plain.example.test\r\n\r\n")
            s.close()
        except OSError:
            pass
else:   # DNS queries, to a resolver address of the sandbox's choosing
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setblocking(False)
    while time.monotonic() - t0 < seconds and n < 500000:
        n += 1
        q = random.randbytes(2) + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + \
            b"\x03www\x07example\x04test\x00\x00\x01\x00\x01"
        try:
            u.sendto(q, ("192.0.2.53", 53))
            while True:
                u.recv(512)
        except OSError:
            pass
print(json.dumps({"kind": kind, "sent": n}))
"""


def test_a_flooding_sandbox_does_not_slow_its_neighbour(world, sluice, tmp_path):
    limits = dict(max_connections=64, new_connections_per_second=20,
                  download_bytes_per_second="1MiB")
    flooder = sluice(policy(**limits), sb=0, dns=True)
    victim = sluice(policy(**limits), sb=1)
    measure = lambda: last_json(spawn_py(world, victim.sb, REQUESTS, ADDR.CAPTURE4, 40,
                                         name="victim"), 60)["median"]
    measure()                                   # warm the victim's resolver cache
    quiet = measure()
    seconds = 12
    # the download first: once the connection flood runs, the flooder's own new
    # connections are refused too (8 MiB at 1 MiB/s outlasts the measurement)
    big = world.spawn(flooder.sb.name, ["curl", "-sS", "--max-time", str(seconds), "-o",
                                        "/dev/null", "--resolve",
                                        f"plain.example.test:80:{ADDR.CAPTURE4}",
                                        "http://plain.example.test/files/8m.bin"],
                      name="flood-bytes", nsenter=True)
    flooder.wait_record(event="flow_start", host="plain.example.test")
    floods = [spawn_py(world, flooder.sb, FLOOD, k, ADDR.CAPTURE4, seconds, name=f"flood-{k}")
              for k in ("conns", "dns")]
    try:
        time.sleep(1.0)                         # the floods are running
        loaded = measure()
    finally:
        sent = [last_json(f, seconds + 30) for f in floods]
        big.popen.wait(timeout=seconds + 10)
    print(f"neighbour's median: {quiet * 1e3:.2f} ms quiet, {loaded * 1e3:.2f} ms flooded")
    assert loaded <= 2 * quiet, f"neighbour's median {loaded * 1e3:.2f} ms under the flood, " \
                                f"{quiet * 1e3:.2f} ms without"
    # the flood was real, and the flooder's proxy held it to its limits
    assert all(s["sent"] > 1000 for s in sent), sent
    m = scrape(world, flooder)
    assert m[("sluice_rate_limited_total", ("limit", "new_connections_per_second"))] > 100
    assert m[("sluice_rate_limited_total", ("limit", "dns_queries_per_second"))] > 100
    assert m[("sluice_rate_limited_total", ("limit", "download_bytes_per_second"))] >= 1
    assert not victim.records(event="limit")


# --------------------------------------------------- metrics agree with the log

def test_metrics_agree_with_the_flow_log(world, sluice_bin, sluice, capture):
    px = sluice(policy(), dns=True)
    sb = px.sb
    for url in ("https://www.example.test/", "http://plain.example.test/",
                "https://other.example.test/", "http://other.example.test/",
                "https://www.example.test:8443/"):
        curl(world, sb, url)
    for name, qtype in (("www.example.test", "A"), ("www.example.test", "AAAA"),
                        ("secret.other.test", "A"), ("www.example.test", "TXT")):
        world.run(sb.name, ["dig", "+short", "+tries=1", "+time=2", f"@{ADDR.DNS4}", name,
                            qtype], nsenter=True)
    # a denied reload, then a good one
    good = px.policy.read_text()
    px.policy.write_text(good + "bogus: [\n")
    assert sluicectl(world, sluice_bin, px, "reload").returncode == 1
    px.policy.write_text(good.replace("egress:\n", "egress:\n  - domain: new.example.test\n"))
    assert sluicectl(world, sluice_bin, px, "reload").returncode == 0
    wait_for(lambda: control_json(world, sluice_bin, px, "stats")["active_flows"] == 0, 5,
             what="flows ended")
    recs = check_log(px)
    m = scrape(world, px)

    decisions = collections.Counter(
        (r["verdict"], r.get("reason", "none"), r["proto"]) for r in recs
        if r["event"] in ("flow_start", "deny"))
    scraped = {(dict(k[1:])["verdict"], dict(k[1:])["reason"], dict(k[1:])["proto"]): v
               for k, v in m.items() if k[0] == "sluice_flows_total"}
    assert scraped == decisions
    assert ("deny", "not_allowlisted", "tls") in scraped
    assert ("deny", "port_not_allowed", "tls") in scraped
    ends = [r for r in recs if r["event"] == "flow_end"]
    assert m[("sluice_bytes_total", ("direction", "up"))] == sum(r["bytes_up"] for r in ends)
    assert m[("sluice_bytes_total", ("direction", "down"))] == \
        sum(r["bytes_down"] for r in ends)
    dns = collections.Counter((r["verdict"], r["qtype"]) for r in recs if r["event"] == "dns")
    scraped_dns = {(dict(k[1:])["verdict"], dict(k[1:])["qtype"]): v for k, v in m.items()
                   if k[0] == "sluice_dns_queries_total"}
    assert scraped_dns == dns and ("deny", "A") in dns
    reloads = collections.Counter(r["verdict"] for r in recs if r["event"] == "reload")
    assert m[("sluice_policy_reloads_total", ("result", "ok"))] == reloads["allow"] >= 1
    assert m[("sluice_policy_reloads_total", ("result", "error"))] == reloads["deny"] >= 1
    # one connect per allowed flow, each in the histogram
    starts = [r for r in recs if r["event"] == "flow_start"]
    assert m[("sluice_upstream_connect_seconds_count",)] == len(starts) >= 2
    assert m[("sluice_upstream_connect_seconds_bucket", ("le", "+Inf"))] == len(starts)
    assert m[("process_open_fds",)] > 3 and m[("process_resident_memory_bytes",)] > 0
    # labels come from closed sets: no host name anywhere in the text
    assert not any("example.test" in str(k) for k in m)


def test_the_sandbox_cannot_reach_the_metrics(world, sluice_bin, sandboxes, tmp_path, capture):
    """Even bound on the gateway itself, the metrics port is not the sandbox's:
    all of its TCP goes to the transparent listener and is judged by name."""
    sb = sandboxes[0]
    d = tmp_path / "gw"
    d.mkdir(mode=0o755)
    px = Proxy(world, sluice_bin, sb, d, policy=policy(),
               args=["--metrics", f"{sb.gw}:{METRICS_PORT}"])
    try:
        r = world.run(sb.name, ["curl", "-sS", "--max-time", "3",
                                f"http://{sb.gw}:{METRICS_PORT}/metrics"], nsenter=True)
        assert "sluice_" not in r.stdout
        deny = px.wait_record(event="deny", port=METRICS_PORT)
        assert deny["orig_dst"] == f"{sb.gw}:{METRICS_PORT}"
        # the host itself (not the sandbox) reads it there
        h = world.run(world.host, ["curl", "-sS", "--max-time", "3",
                                   f"http://{sb.gw}:{METRICS_PORT}/metrics"], nsenter=True)
        assert "sluice_flows_total" in h.stdout
    finally:
        px.proc.stop()


BIND_V6_PY = r"""
import errno, socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
try:
    s.bind(("::", int(sys.argv[1])))
    print("bound")
except OSError as e:
    print(errno.errorcode[e.errno])
"""


def test_metrics_on_the_ipv4_wildcard_hold_the_ipv6_one_too(world, sluice_bin, sandboxes,
                                                            tmp_path):
    """Issue 14, finding 2: in a pod, a metrics port the proxy holds in one
    family only is one the workload could listen on in the other. --metrics
    0.0.0.0:PORT serves [::]:PORT as well, so nobody else can bind it."""
    port = METRICS_PORT + 100
    d = tmp_path / "wild"
    d.mkdir(mode=0o755)
    px = Proxy(world, sluice_bin, sandboxes[0], d, policy=policy(),
               args=["--metrics", f"0.0.0.0:{port}"])
    try:
        h = world.run(world.host, ["curl", "-sS", "--max-time", "3",
                                   f"http://[::1]:{port}/healthz"], nsenter=True)
        assert h.stdout.startswith("ok "), (h.stdout, h.stderr)
        squat = world.run(world.host, [PYTHON, "-c", BIND_V6_PY, str(port)], uid=65534)
        assert squat.stdout.strip() == "EADDRINUSE", squat
    finally:
        px.proc.stop()


# ------------------------------------------------------------ control socket

HOLD_SOME = r"""
import json, socket, ssl, sys, time
addr, ca, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
held = []
for i in range(n):
    t = ctx.wrap_socket(socket.create_connection((addr, 443), 5),
                        server_hostname="www.example.test")
    t.sendall(b"GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
    t.recv(4096)
    held.append(t)
print(json.dumps({"held": len(held)}), flush=True)
time.sleep(float(sys.argv[4]))
"""


def test_sluicectl_stats_flows_and_reload(world, sluice_bin, sluice):
    px = sluice(policy())
    client = spawn_py(world, px.sb, HOLD_SOME, ADDR.CAPTURE4, world.ca_cert, 3, 30)
    try:
        wait_for(lambda: '"held": 3' in client.log(), 15, what="3 held flows")
        stats = control_json(world, sluice_bin, px, "stats")
        assert stats["ok"] is True and stats["sandbox"] == px.ident
        assert stats["active_flows"] == 3 and stats["flows_allowed"] == 3
        assert stats["policy"]["file"] == str(px.policy)
        assert stats["policy"]["hash"] == px.records(event="flow_start")[0]["policy"]
        flows = control_json(world, sluice_bin, px, "flows")["flows"]
        starts = {r["flow"]: r for r in px.records(event="flow_start")}
        assert sorted(f["id"] for f in flows) == sorted(starts)
        for f in flows:
            assert f["host"] == "www.example.test" and f["port"] == 443
            assert f["upstream"] == starts[f["id"]]["upstream"]
            assert f["bytes_up"] > 100 and f["bytes_down"] > 100 and f["state"] == "relay"
        # the same for a person: a table with a row per flow
        table = sluicectl(world, sluice_bin, px, "flows")
        assert table.returncode == 0
        rows = [l for l in table.stdout.splitlines() if "www.example.test" in l]
        assert len(rows) == 3 and table.stdout.startswith("ID")
        text = sluicectl(world, sluice_bin, px, "stats").stdout
        assert re.search(r"^active_flows\s+3$", text, re.M), text
    finally:
        client.stop()
    # reload through the socket: effective when the command returns
    assert curl(world, px.sb, "http://other.example.test/", "-o", "/dev/null", "-w",
                "%{http_code}").stdout == "403"
    px.policy.write_text(px.policy.read_text().replace(
        "egress:\n", "egress:\n  - domain: other.example.test\n    ports: [80]\n"))
    r = sluicectl(world, sluice_bin, px, "reload")
    assert r.returncode == 0 and "in force" in r.stdout, r.stderr
    assert curl(world, px.sb, "http://other.example.test/").stdout == \
        "hello from other.example.test\n"
    # a bad policy: exit 1, FILE:LINE:COL, and the old policy stays
    px.policy.write_text(px.policy.read_text() + "limits:\n  max_connections: -3\n")
    r = sluicectl(world, sluice_bin, px, "reload")
    assert r.returncode == 1
    assert re.search(re.escape(str(px.policy)) + r":\d+:\d+: ", r.stderr), r.stderr
    assert curl(world, px.sb, "http://other.example.test/").stdout == \
        "hello from other.example.test\n"
    # usage errors and an absent socket
    assert sluicectl(world, sluice_bin, px, "bogus").returncode == 2
    gone = world.run(world.host, [sluice_bin("sluicectl"), "--control",
                                  str(px.control) + ".nope", "stats"], nsenter=True)
    assert gone.returncode == 1 and "is sluice-proxy running" in gone.stderr


# ----------------------------------------------------- descriptor exhaustion

HOLD_RAW = r"""
import json, socket, sys, time
addr, n, hold = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
held = []
for i in range(n):
    try:
        held.append(socket.create_connection((addr, 443), 3))
    except OSError:
        pass
print(json.dumps({"held": len(held)}), flush=True)
time.sleep(hold)
"""


def test_descriptor_exhaustion_pauses_accepting_and_recovers(world, sluice, capture):
    # 40 descriptors: enough for the listeners, the loop and a few flows
    px = sluice(policy(sniff="30s"), wrap=("prlimit", "--nofile=40:40", "--"))
    client = spawn_py(world, px.sb, HOLD_RAW, ADDR.CAPTURE4, 80, 30, name="hold-raw")
    try:
        wait_for(lambda: '"held"' in client.log(), 15, what="80 connections")
        wait_for(lambda: "pausing new connections" in px.proc.log(), 5, what="EMFILE backoff")
        before = proc_cpu_seconds(px.proc.pid)
        time.sleep(2.0)
        spent = proc_cpu_seconds(px.proc.pid) - before
        assert spent < 0.5, f"{spent:.2f} CPU-s in 2 s while out of descriptors: a busy loop"
        assert px.proc.alive()
    finally:
        client.stop()
    # the held connections go away: the proxy accepts and serves again by itself
    wait_for(lambda: curl(world, px.sb, "http://plain.example.test/").stdout ==
             "hello from plain.example.test\n", 15, what="serving again")
    assert px.proc.alive()
