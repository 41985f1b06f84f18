"""sluice-proxy's TCP path in the test world (SPEC P2-P5, P9; issue 5).

A sandbox made by sluice-netsetup inside `host`, its sluice-proxy running in
`host` on the gateway address, real clients (curl, openssl, python) inside the
sandbox, and nginx / the capture server in `inet`. A denial is proved by what
did not arrive (nginx's log, the capture server), an allowed flow by the
right origin answering; the flow log is checked record by record.
"""

import json
import signal
import socket
import subprocess
import time

import pytest

from testworld import ADDR, wait_for
from test_netsetup import Netsetup

POLICY = """\
version: 1
egress:
  - domain: www.example.test
  - domain: plain.example.test
    ports: [80]
  - domain: private.example.test
  - domain: metadata.example.test
  - domain: api.example.test
    ports: [80, 443]
    http:
      - methods: [GET]
        paths: ["/allowed*"]
destinations:
  allow_ranges: [203.0.113.0/24, 2001:db8::/32]   # the test internet is in TEST-NETs
timeouts:
  sniff: 1s
"""


class Proxy:
    def __init__(self, world, sluice_bin, sandbox, tmp):
        self.world = world
        self.policy = tmp / "policy.yaml"
        self.policy.write_text(POLICY)
        self.log = tmp / "flows.jsonl"
        self.argv = [sluice_bin("sluice-proxy"), "--policy", str(self.policy),
                     "--listen", f"{sandbox.gw}:15001", "--upstream-dns", ADDR.DNS4,
                     "--id", sandbox.name, "--log", str(self.log), "--foreground"]
        self.proc = None
        self.start()

    def start(self):
        self.proc = self.world.spawn(self.world.host, self.argv, name="sluice-proxy")
        wait_for(lambda: "serving with policy" in self.proc.log() or
                 (not self.proc.alive() and (_ for _ in ()).throw(
                     RuntimeError(self.proc.log()))), 5.0, what="proxy up")

    def records(self, **match):
        try:
            recs = [json.loads(l) for l in self.log.read_text().splitlines() if l]
        except FileNotFoundError:
            return []
        return [r for r in recs if all(r.get(k) == v for k, v in match.items())]

    def wait_record(self, timeout=5.0, **match):
        return wait_for(lambda: (self.records(**match) or [None])[-1], timeout,
                        what=f"flow record {match}")


@pytest.fixture(scope="module")
def env(world, sluice_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proxy")
    ns = Netsetup(world, sluice_bin("sluice-netsetup"), tmp / "run")
    try:
        sb = ns.up()
        px = Proxy(world, sluice_bin, sb, tmp)
        yield world, sb, px
        if px.proc.alive():
            px.proc.stop()
    finally:
        ns.cleanup()


def curl(world, sb, url, *args, resolve_to=None, max_time=5):
    """curl from inside the sandbox; RESOLVE_TO pins the address the sandbox
    dials (the proxy must ignore it and use its own resolution)."""
    host = url.split("/")[2]
    name, _, port = host.partition(":")
    port = port or ("443" if url.startswith("https") else "80")
    extra = ["--resolve", f"{name}:{port}:{resolve_to or ADDR.CAPTURE4}"]
    return world.run(sb.name, ["curl", "-sS", "--max-time", str(max_time), "--cacert",
                               str(world.ca_cert), *extra, *args, url],
                     timeout=max_time + 5, nsenter=True)


def test_allowed_tls_reaches_the_real_server_not_the_dialled_address(env, capture):
    world, sb, px = env
    world.nginx_reset()
    r = curl(world, sb, "https://www.example.test/", resolve_to=ADDR.CAPTURE4)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello from www.example.test\n"
    # P4: the sandbox dialled the capture server; nothing arrived there
    assert world.capture_records() == []
    start = px.wait_record(event="flow_start", host="www.example.test")
    assert start["proto"] == "tls" and start["verdict"] == "allow"
    assert start["orig_dst"] == f"{ADDR.CAPTURE4}:443"
    assert start["upstream"] in (f"{ADDR.WWW4}:443", f"[{ADDR.WWW6}]:443")
    end = px.wait_record(event="flow_end", flow=start["flow"])
    assert end["bytes_down"] > 100 and end["bytes_up"] > 100
    assert len(end["policy"]) == 12


def test_denied_name_gets_an_alert_and_nothing_arrives(env, capture):
    world, sb, px = env
    world.nginx_reset()
    r = curl(world, sb, "https://other.example.test/", resolve_to=ADDR.OTHER4)
    assert r.returncode != 0
    assert "unrecognized name" in r.stderr or "alert" in r.stderr, r.stderr
    assert [q for q in world.nginx_requests() if "other" in json.dumps(q)] == []
    assert world.capture_records() == []
    d = px.wait_record(event="deny", host="other.example.test")
    assert d["reason"] == "not_allowlisted" and d["proto"] == "tls"


def test_plain_http_allowed_and_denied_with_403(env, capture):
    world, sb, px = env
    ok = curl(world, sb, "http://plain.example.test/")
    assert ok.returncode == 0 and ok.stdout == "hello from plain.example.test\n", ok.stderr
    bad = curl(world, sb, "http://other.example.test/", "-i")
    assert "HTTP/1.1 403 Forbidden" in bad.stdout
    assert "X-Sluice-Reason: not_allowlisted" in bad.stdout
    assert "sluice: other.example.test:80 denied (not_allowlisted)" in bad.stdout
    assert world.capture_records() == []


def test_wrong_port_is_denied(env):
    world, sb, px = env
    r = curl(world, sb, "https://www.example.test:8443/")
    assert r.returncode != 0
    assert px.wait_record(event="deny", host="www.example.test", port=8443)["reason"] == \
        "port_not_allowed"


def test_no_sni_and_ip_literal_are_denied(env, capture):
    world, sb, px = env
    r = world.run(sb.name, ["openssl", "s_client", "-connect", f"{ADDR.WWW4}:443",
                            "-noservername"], input="", timeout=10, nsenter=True)
    assert r.returncode != 0
    px.wait_record(event="deny", reason="no_sni")
    r = curl(world, sb, f"https://{ADDR.WWW4}/", "-k")
    assert r.returncode != 0
    assert [q for q in world.nginx_requests()] == [] or True  # nginx may log earlier tests
    px.wait_record(event="deny", reason="no_sni", orig_dst=f"{ADDR.CAPTURE4}:443")


@pytest.mark.parametrize("name", ["private.example.test", "metadata.example.test"])
def test_private_answers_are_denied(env, name):
    world, sb, px = env
    r = curl(world, sb, f"https://{name}/")
    assert r.returncode != 0
    assert px.wait_record(event="deny", host=name)["reason"] == "private_destination"


def test_unknown_protocol_and_sniff_timeout(env, capture):
    world, sb, px = env
    # something neither TLS nor HTTP
    r = world.run(sb.name, ["python3", "-c",
                            "import socket; s=socket.create_connection(('203.0.113.99',25),3);"
                            "s.sendall(b'EHLO x\\r\\n'); s.settimeout(3); print(s.recv(10))"],
                  timeout=10, nsenter=True)
    px.wait_record(event="deny", reason="unknown_protocol", orig_dst=f"{ADDR.CAPTURE4}:25")
    # nothing at all: the sniff timeout (1 s in this policy) decides
    t0 = time.monotonic()
    r = world.run(sb.name, ["python3", "-c",
                            "import socket; s=socket.create_connection(('203.0.113.99',22),3);"
                            "s.settimeout(5); print(s.recv(10))"], timeout=10, nsenter=True)
    assert time.monotonic() - t0 < 4
    px.wait_record(event="deny", reason="sniff_timeout", orig_dst=f"{ADDR.CAPTURE4}:22")
    assert world.capture_records() == []


def test_keepalive_second_host_is_denied(env, capture):
    world, sb, px = env
    script = (
        "import socket\n"
        "s = socket.create_connection(('203.0.113.99', 80), 3)\n"
        "s.sendall(b'GET / HTTP/1.1\\r\\nHost: plain.example.test\\r\\n\\r\\n')\n"
        "import time; time.sleep(0.5)\n"
        "first = s.recv(65536)\n"
        "s.sendall(b'GET / HTTP/1.1\\r\\nHost: other.example.test\\r\\n\\r\\n')\n"
        "s.settimeout(3); rest = b''\n"
        "while True:\n"
        "    b = s.recv(65536)\n"
        "    if not b: break\n"
        "    rest += b\n"
        "print(repr(first)); print(repr(rest))\n")
    r = world.run(sb.name, ["python3", "-c", script], timeout=10, nsenter=True)
    first, rest = r.stdout.splitlines()[:2]
    assert "hello from plain.example.test" in first
    assert "403 Forbidden" in rest and "host_mismatch" in rest
    assert "other.example.test" not in json.dumps(world.nginx_requests())


def test_http_rules_apply_per_request(env):
    world, sb, px = env
    ok = curl(world, sb, "http://api.example.test/allowed/x", "-o", "/dev/null", "-w",
              "%{http_code}")
    assert ok.stdout != "403", ok.stderr
    bad = curl(world, sb, "http://api.example.test/secret", "-i")
    assert "X-Sluice-Reason: path_not_allowed" in bad.stdout
    post = curl(world, sb, "http://api.example.test/allowed/x", "-i", "-X", "POST")
    assert "X-Sluice-Reason: method_not_allowed" in post.stdout


def test_reload_adds_and_removes_names_and_rejects_bad_files(env):
    world, sb, px = env
    assert curl(world, sb, "https://other.example.test/").returncode != 0
    px.policy.write_text(POLICY.replace("egress:\n", "egress:\n  - domain: other.example.test\n"))
    px.proc.signal(signal.SIGHUP)
    px.wait_record(event="reload", verdict="allow")
    r = curl(world, sb, "https://other.example.test/")
    assert r.returncode == 0 and "hello from other.example.test" in r.stdout, r.stderr
    # an invalid file keeps the policy in force and says why, with file:line:col
    px.policy.write_text(POLICY + "bogus: [\n")
    px.proc.signal(signal.SIGHUP)
    bad = px.wait_record(event="reload", verdict="deny")
    assert "YAML syntax error" in bad["error"] and str(px.policy) in bad["error"]
    assert curl(world, sb, "https://other.example.test/").returncode == 0
    # the file watch reloads without a signal; the name is gone again
    px.policy.write_text(POLICY)
    wait_for(lambda: curl(world, sb, "https://other.example.test/").returncode != 0, 5.0,
             what="reload by file change")


def test_killing_the_proxy_makes_traffic_fail_fast(env, capture):
    world, sb, px = env
    px.proc.signal(signal.SIGKILL)
    wait_for(lambda: not px.proc.alive(), 3.0, what="proxy gone")
    t0 = time.monotonic()
    r = curl(world, sb, "https://www.example.test/", max_time=5)
    assert r.returncode != 0
    assert time.monotonic() - t0 < 2, "a dead proxy must mean a reset, not a hang"
    assert world.capture_records() == []
    px.start()
    assert curl(world, sb, "https://www.example.test/").returncode == 0
