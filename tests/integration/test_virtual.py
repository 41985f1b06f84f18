"""dns.answers: virtual: any TCP protocol allowed by name (issue 17).

A sandbox made by sluice-netsetup (with IPv6), one sluice-proxy per test in
`host` answering its DNS with virtual addresses, and a server that speaks
first (banner_server.py: an ssh-style greeting naming the address it was
reached on, then an echo) on addresses of its own in `inet`. Clients resolve
through the sandbox's resolv.conf (the proxy) and connect to what it answered.
A denial is proved at the far end: the banner server logs every connection.
"""

import ipaddress
import json
import os
import subprocess
import time
import uuid

import pytest

from testworld import ADDR, HERE, PYTHON, open_path_to, wait_for
from test_netsetup import (DNS_PORT, PROXY_AS_IN_MANIFESTS, PROXY_PORT, PROXY_UID, WORKLOAD,
                           Netsetup, v6_subnet)
from test_proxy import Proxy, check_log, curl

BANNER4 = "203.0.113.22"        # ssh.example.test (and moved.example.test at first)
BANNER4_B = "203.0.113.23"      # db.example.test (and moved.example.test later)
BANNER6 = "2001:db8:113::22"
BANNER_PORTS = (22, 5432)

POLICY = """\
version: 1
mode: {mode}
egress:
  - domain: ssh.example.test
    ports: [22]
  - domain: db.example.test
    ports: [5432]
  - domain: moved.example.test
    ports: [5432]
  - domain: www.example.test
  - domain: api.example.test
  - domain: plain.example.test
    ports: [80]
dns:
  answers: virtual
  max_ttl: {ttl}
destinations:
  allow_ranges: [203.0.113.0/24, 2001:db8::/32]
timeouts:
  sniff: 1s
"""

V4_POOL = ipaddress.ip_network("198.18.0.0/15")
V6_POOL = ipaddress.ip_network("fd73:6c75:6963:6576::/96")

# A raw TCP client: resolves NAME with the system resolver (the sandbox's
# resolv.conf: the proxy), connects to PORT, reads the greeting, says hello,
# reads the echo. Prints {addr, banner, echo} or {addr, error}.
CLIENT = r"""
import json, socket, sys
name, port, token, fam = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {}
try:
    family = {"4": socket.AF_INET, "6": socket.AF_INET6}.get(fam, 0)
    addr = name if fam == "addr" else socket.getaddrinfo(name, port, family,
                                                         socket.SOCK_STREAM)[0][4][0]
    out["addr"] = addr
    s = socket.create_connection((addr, port), timeout=3)
    f = s.makefile("rb")
    out["banner"] = f.readline().decode().strip()
    s.sendall(("hello %s\n" % token).encode())
    out["echo"] = f.readline().decode().strip()
except Exception as e:
    out["error"] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(out))
"""

# The same, holding the connection open after the echo until GO exists (at most 20 s),
# then saying hello once more.
HOLDER = CLIENT.replace('print(json.dumps(out))', r"""
import os, time
open(sys.argv[5] + ".ready", "w").write(json.dumps(out))
t0 = time.monotonic()
while not os.path.exists(sys.argv[5]) and time.monotonic() - t0 < 20:
    time.sleep(0.05)
try:
    s.sendall(b"hello again\n")
    out["again"] = f.readline().decode().strip()
except Exception as e:
    out["again_error"] = type(e).__name__
print(json.dumps(out))
""")


def token():
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def banner(world, tmp_path_factory):
    """The banner server on its own inet addresses, and the names that lead there."""
    tmp = tmp_path_factory.mktemp("banner")
    log = tmp / "banner.jsonl"
    addrs = (BANNER4, BANNER4_B, BANNER6)
    for a in addrs:
        world.add_inet_addr(a)
    world.dns_add("ssh.example.test", "A", BANNER4, restart=False)
    world.dns_add("ssh.example.test", "AAAA", BANNER6, restart=False)
    world.dns_add("db.example.test", "A", BANNER4_B, restart=False)
    world.dns_add("moved.example.test", "A", BANNER4, ttl=1)
    specs = [f"{a}:{p}" if ":" not in a else f"[{a}]:{p}" for a in addrs for p in BANNER_PORTS]
    proc = world.spawn(world.inet, [PYTHON, HERE / "banner_server.py", "--log", log,
                                    *[x for s in specs for x in ("--listen", s)]],
                       name="banner")
    try:
        wait_for(lambda: os.path.exists(f"{log}.ready") or
                 (not proc.alive() and (_ for _ in ()).throw(RuntimeError(proc.log()))),
                 5.0, what="banner server up")

        class Banner:
            def seen(self, tok=None):
                """Connections that ended, optionally only those that said TOK."""
                try:
                    lines = log.read_text().splitlines()
                except FileNotFoundError:
                    return []
                recs = [json.loads(l) for l in lines if l]
                return [r for r in recs if tok is None or tok in r["data"]]
        yield Banner()
    finally:
        proc.stop()
        for name in ("ssh.example.test", "db.example.test"):
            world.dns_remove(name, restart=False)
        world.dns_remove("moved.example.test")
        for a in addrs:
            plen = 128 if ":" in a else 32
            world.run(world.inet, ["ip", "addr", "del", f"{a}/{plen}", "dev", "lo"])


@pytest.fixture(scope="module")
def nsv(world, sluice_bin, tmp_path_factory):
    ns = Netsetup(world, sluice_bin("sluice-netsetup"), tmp_path_factory.mktemp("virt") / "run")
    try:
        yield ns
    finally:
        ns.cleanup()


@pytest.fixture(scope="module")
def sbv(nsv):
    """The sandbox of these tests, with IPv6."""
    return nsv.up("--ipv6", v6_subnet())


@pytest.fixture
def vproxy(world, sluice_bin, sbv, tmp_path):
    """Factory: vproxy(mode=, ttl=, args=, policy=) starts a proxy for sbv (both
    families, its DNS too); stopped after the test, its flow log checked."""
    made = []

    def start(*, mode="enforce", ttl=30, args=(), policy=None, sb=None):
        sb = sb or sbv
        listens = [f"{sb.gw}:{PROXY_PORT}"] + ([f"[{sb.gw6}]:{PROXY_PORT}"] if sb.gw6 else [])
        dns = [f"{sb.gw}:{DNS_PORT}"] + ([f"[{sb.gw6}]:{DNS_PORT}"] if sb.gw6 else [])
        d = tmp_path / f"px{len(made)}"
        d.mkdir(parents=True)
        px = Proxy(world, sluice_bin, sb, d,
                   policy=policy or POLICY.format(mode=mode, ttl=ttl), listen=listens,
                   args=(*[x for a in dns for x in ("--dns-listen", a)],
                         "--control", str(open_path_to(d) / "control.sock"), *args))
        px.control = d / "control.sock"
        made.append(px)
        return px

    yield start
    for px in made:
        if px.proc.alive():
            px.proc.stop()
    for px in made:
        check_log(px)


def raw(world, sb, name, port, tok, fam="any"):
    """CLIENT in SB through `ip netns exec` (its resolv.conf applies)."""
    r = world.run(sb.name, [PYTHON, "-c", CLIENT, name, port, tok, fam], timeout=15)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def holder(world, sb, name, port, tok, go):
    proc = world.spawn(sb.name, [PYTHON, "-c", HOLDER, name, port, tok, "any", go],
                       name="holder")
    got = wait_for(lambda: os.path.exists(f"{go}.ready") and
                   json.loads(open(f"{go}.ready").read()), 10.0, what="holder connected")
    return proc, got


def dig(world, sb, name, qtype="A"):
    return world.dig(sb.name, name, qtype, server=sb.gw)


def ctl(sluice_bin, px, cmd):
    r = subprocess.run([sluice_bin("sluicectl"), "--control", str(px.control), cmd, "--json"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def in_pool(addr):
    a = ipaddress.ip_address(addr)
    return a in (V6_POOL if a.version == 6 else V4_POOL)


# ---------------------------------------------------------------- names and addresses

def test_ssh_by_name_reaches_the_server_and_the_log_names_the_host(world, sbv, vproxy,
                                                                   banner):
    px = vproxy()
    r = dig(world, sbv, "ssh.example.test")
    assert r.status == "NOERROR" and len(r.answers) == 1, r.raw
    vaddr = r.answers[0][2]
    assert in_pool(vaddr) and r.answers[0][3] <= 30, r.raw
    # the same name keeps its address
    assert dig(world, sbv, "ssh.example.test").answers[0][2] == vaddr
    # a real ssh client: it reads the server's greeting, says its own, is closed
    ssh = world.run(sbv.name, ["ssh", "-v", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                               "-o", "StrictHostKeyChecking=no", "-o",
                               "UserKnownHostsFile=/dev/null", "-4", "-p", "22",
                               "tester@ssh.example.test", "true"], timeout=20)
    assert "remote software version sluice-banner" in ssh.stderr, ssh.stderr
    seen = wait_for(lambda: [s for s in banner.seen() if "SSH-2.0-OpenSSH" in s["data"]],
                    5.0, what="the ssh client's banner at the server")
    assert seen[-1]["local"] == f"{BANNER4}:22" and seen[-1]["peer"] == ADDR.HOST4
    start = px.wait_record(event="flow_start", host="ssh.example.test")
    assert start["proto"] == "tcp" and start["port"] == 22 and start["verdict"] == "allow"
    assert start["orig_dst"] == f"{vaddr}:22" and start["upstream"] == f"{BANNER4}:22"
    end = px.wait_record(event="flow_end", flow=start["flow"])
    assert end["bytes_up"] > 20 and end["bytes_down"] > 20
    # a client-first protocol on another allowed name and port
    tok = token()
    got = raw(world, sbv, "db.example.test", 5432, tok, "4")
    assert got.get("echo") == f"echo hello {tok}", got
    assert got["banner"] == f"SSH-2.0-sluice-banner at {BANNER4_B}:5432"


def test_an_unlisted_name_is_nxdomain_and_a_listed_name_on_another_port_is_refused(
        world, sbv, vproxy, banner):
    px = vproxy()
    r = dig(world, sbv, "other.example.test")
    assert r.status == "NXDOMAIN" and r.answers == [], r.raw
    tok = token()
    got = raw(world, sbv, "other.example.test", 22, tok)
    assert "error" in got and "addr" not in got, got           # never resolved
    # ssh.example.test is allowed on 22 only: 5432 on its address is refused
    got = raw(world, sbv, "ssh.example.test", 5432, tok, "4")
    assert in_pool(got["addr"]) and "echo" not in got, got
    deny = px.wait_record(event="deny", port=5432)
    assert deny["reason"] == "port_not_allowed" and deny["host"] == "ssh.example.test"
    time.sleep(0.3)
    assert banner.seen(tok) == []


def test_unmapped_foreign_and_real_addresses_carry_nothing(world, nsv, sbv, vproxy, banner):
    """A virtual address never handed out, one another sandbox's proxy handed
    out, and the allowed name's real address: all denied, nothing arrives."""
    px = vproxy()
    mine = dig(world, sbv, "ssh.example.test").answers[0][2]
    sb2 = nsv.up()
    try:
        other = vproxy(sb=sb2)
        theirs = dig(world, sb2, "db.example.test").answers[0][2]
        assert in_pool(theirs) and theirs != mine
        # the other sandbox has no IPv6: its AAAA answers are empty, not virtual
        six = dig(world, sb2, "db.example.test", "AAAA")
        assert six.status == "NOERROR" and six.answers == [], six.raw
        assert raw(world, sb2, "db.example.test", 5432, token(), "4").get("echo")
        unmapped = "198.19.200.1"              # in the /15, beyond the pool's slots
        tok = token()
        for addr, port in ((unmapped, 22), (theirs, 5432), (BANNER4, 22), (BANNER4_B, 5432)):
            got = raw(world, sbv, addr, port, tok, "addr")
            assert "echo" not in got, (addr, got)
        denies = wait_for(lambda: len(px.records(event="deny")) >= 4 and
                          px.records(event="deny"), 5.0, what="four deny records")
        by_dst = {d["orig_dst"]: d["reason"] for d in denies}
        assert by_dst[f"{unmapped}:22"] == "not_allowlisted"
        assert by_dst[f"{theirs}:5432"] == "not_allowlisted"
        # the real address: sniffed for a name (as under real answers), and the
        # client waits for a greeting, so none comes
        assert by_dst[f"{BANNER4}:22"] == "sniff_timeout"
        assert by_dst[f"{BANNER4_B}:5432"] == "sniff_timeout"
        time.sleep(0.3)
        assert banner.seen(tok) == []
        assert other.records(event="deny") == []
    finally:
        nsv.down(sb2.name)


def test_tls_and_http_on_a_virtual_address_must_name_its_name(world, sbv, vproxy, capture):
    px = vproxy()
    www = dig(world, sbv, "www.example.test").answers[0][2]
    plain = dig(world, sbv, "plain.example.test").answers[0][2]
    # the sandbox's own resolution, end to end: the right name on its own address
    ok = world.run(sbv.name, ["curl", "-sS", "--max-time", "5", "-4", "--cacert",
                              str(world.ca_cert), "https://www.example.test/"], timeout=10)
    assert ok.returncode == 0 and ok.stdout == "hello from www.example.test\n", ok.stderr
    start = px.wait_record(event="flow_start", host="www.example.test")
    assert start["proto"] == "tls" and start["orig_dst"] == f"{www}:443"
    world.nginx_reset()
    # api.example.test is allowed, but www's address carries only www
    bad = curl(world, sbv, "https://api.example.test/", resolve_to=www)
    assert bad.returncode != 0
    http = curl(world, sbv, "http://www.example.test/", "-i", resolve_to=plain)
    assert http.stdout.startswith("HTTP/1.1 403"), http.stdout
    assert "X-Sluice-Reason: host_mismatch" in http.stdout
    denies = [d for d in px.records(event="deny") if d["reason"] == "host_mismatch"]
    assert {(d["orig_dst"], d["host"]) for d in denies} == {
        (f"{www}:443", "www.example.test"), (f"{plain}:80", "plain.example.test")}
    assert world.nginx_requests() == []


def test_a_moved_name_is_reached_at_its_new_address_through_the_same_virtual_one(
        world, sbv, vproxy, banner):
    """moved.example.test has TTL 1 upstream; the proxy re-resolves at connect
    time (its cache keeps an answer at least 5 s), the sandbox keeps its
    virtual address all along."""
    name = "moved.example.test"
    px = vproxy()
    vaddr = dig(world, sbv, name).answers[0][2]
    first = raw(world, sbv, name, 5432, token(), "4")
    assert first["addr"] == vaddr and first["banner"].endswith(f"{BANNER4}:5432"), first
    world.dns_remove(name, restart=False)
    world.dns_add(name, "A", BANNER4_B, ttl=1)
    try:
        def moved():
            got = raw(world, sbv, name, 5432, token(), "4")
            return got.get("banner", "").endswith(f"{BANNER4_B}:5432") and got
        got = wait_for(moved, 12.0, interval=0.5, what="the new address reached")
        assert got["addr"] == vaddr
        ups = {r["upstream"] for r in px.records(event="flow_start", host=name)}
        assert ups == {f"{BANNER4}:5432", f"{BANNER4_B}:5432"}
        assert {r["orig_dst"] for r in px.records(event="flow_start", host=name)} == {
            f"{vaddr}:5432"}
    finally:
        world.dns_remove(name, restart=False)
        world.dns_add(name, "A", BANNER4, ttl=1)


def test_ipv6_answers_and_connections(world, sbv, vproxy, banner):
    px = vproxy()
    r = dig(world, sbv, "ssh.example.test", "AAAA")
    assert r.status == "NOERROR" and len(r.answers) == 1, r.raw
    v6 = r.answers[0][2]
    assert ipaddress.ip_address(v6) in V6_POOL
    v4 = dig(world, sbv, "ssh.example.test").answers[0][2]
    # one slot: the two families' addresses are the same mapping
    assert int(ipaddress.ip_address(v6)) & 0xffffffff == \
        int(ipaddress.ip_address(v4)) - int(V4_POOL.network_address)
    # db has no AAAA upstream: its virtual AAAA still leads there (over IPv4)
    db6 = dig(world, sbv, "db.example.test", "AAAA").answers[0][2]
    tok = token()
    got = raw(world, sbv, db6, 5432, tok, "addr")
    assert got.get("echo") == f"echo hello {tok}", got
    start = px.wait_record(event="flow_start", host="db.example.test")
    assert start["orig_dst"] == f"[{db6}]:5432" and start["upstream"] == f"{BANNER4_B}:5432"


# ---------------------------------------------------------------- the pool

def test_a_full_pool_reuses_the_oldest_idle_mapping_never_one_in_use(world, sluice_bin, sbv,
                                                                     vproxy, banner,
                                                                     tmp_path):
    """--virtual-pool 2, TTL 1 (a mapping lives TTL + 5 s past its last answer or
    flow): ssh's held by an open flow, www's idle; after its life www's slot goes
    to api, never ssh's; then nothing is free: SERVFAIL and a limit record."""
    px = vproxy(ttl=1, args=("--virtual-pool", "2", "--metrics", "127.0.0.1:15391"))
    ssh = dig(world, sbv, "ssh.example.test").answers[0][2]
    go = tmp_path / "go"
    proc, held = holder(world, sbv, "ssh.example.test", 22, token(), go)
    try:
        assert held["addr"] == ssh and held.get("echo"), held
        www = dig(world, sbv, "www.example.test").answers[0][2]
        full = dig(world, sbv, "api.example.test")
        assert full.status == "SERVFAIL", full.raw             # both within their lives
        time.sleep(6.5)
        api = dig(world, sbv, "api.example.test")
        assert api.status == "NOERROR" and api.answers[0][2] == www, api.raw
        none = dig(world, sbv, "plain.example.test")
        assert none.status == "SERVFAIL", none.raw
        limits = px.records(event="limit", limit="virtual_pool")
        assert {l["qname"] for l in limits} == {"api.example.test", "plain.example.test"}
        stats = ctl(sluice_bin, px, "stats")
        assert stats["virtual"] == {"size": 2, "mapped": 2, "in_use": 1, "evictions": 1}
        assert stats["rate_limited"]["virtual_pool"] == 2
        flows = ctl(sluice_bin, px, "flows")["flows"]
        assert [(f["host"], f["orig_dst"], f.get("virtual")) for f in flows] == [
            ("ssh.example.test", f"{ssh}:22", True)]
        text = subprocess.run([sluice_bin("sluicectl"), "--control", str(px.control),
                               "flows"], capture_output=True, text=True, timeout=10).stdout
        assert f"{ssh}:22*" in text and "ssh.example.test" in text, text
        metrics = world.run(world.host, ["curl", "-sS", "http://127.0.0.1:15391/metrics"],
                            check=True).stdout
        assert 'sluice_virtual_addresses{state="in_use"} 1' in metrics
        assert 'sluice_virtual_addresses{state="idle"} 1' in metrics
        assert "sluice_virtual_address_evictions_total 1" in metrics
        assert 'sluice_rate_limited_total{limit="virtual_pool"} 2' in metrics
        # the held flow still works: its mapping was never taken
        go.write_text("")
        assert proc.popen.wait(timeout=10) == 0
        out = json.loads(proc.log().strip().splitlines()[-1])
        assert out.get("again") == "echo hello again", out
    finally:
        proc.stop()


def test_reload_removing_a_name_revokes_its_raw_flow_and_its_address(world, sbv, vproxy,
                                                                      banner, tmp_path):
    px = vproxy()
    db = dig(world, sbv, "db.example.test").answers[0][2]
    go = tmp_path / "go"
    proc, held = holder(world, sbv, "db.example.test", 5432, token(), go)
    try:
        assert held.get("echo"), held
        start = px.wait_record(event="flow_start", host="db.example.test")
        px.policy.write_text(POLICY.format(mode="enforce", ttl=30).replace(
            "  - domain: db.example.test\n    ports: [5432]\n", ""))
        px.wait_record(event="reload", verdict="allow")
        deny = px.wait_record(event="deny", flow=start["flow"])
        assert deny["reason"] == "revoked" and deny["host"] == "db.example.test"
        end = px.wait_record(event="flow_end", flow=start["flow"])
        assert end["reason"] == "revoked"
        go.write_text("")
        proc.popen.wait(timeout=10)
        out = json.loads(proc.log().strip().splitlines()[-1])
        assert "again" not in out or out["again"] == "", out        # the flow was cut
        assert dig(world, sbv, "db.example.test").status == "NXDOMAIN"
        tok = token()
        got = raw(world, sbv, db, 5432, tok, "addr")
        assert "echo" not in got, got
        assert px.wait_record(event="deny", orig_dst=f"{db}:5432", port=5432,
                              reason="revoked")
        time.sleep(0.3)
        assert banner.seen(tok) == []
    finally:
        proc.stop()


def test_audit_mode_answers_every_name_and_marks_its_flows(world, sbv, vproxy, banner):
    px = vproxy(mode="audit")
    r = dig(world, sbv, "other.example.test")
    assert r.status == "NOERROR" and in_pool(r.answers[0][2]), r.raw
    # a listed name on a port its rule lacks passes, marked audit
    tok = token()
    got = raw(world, sbv, "ssh.example.test", 5432, tok, "4")
    assert got.get("echo") == f"echo hello {tok}", got
    start = px.wait_record(event="flow_start", port=5432)
    assert start["verdict"] == "audit" and start["host"] == "ssh.example.test"
    audit = px.wait_record(event="deny", flow=start["flow"])
    assert audit["verdict"] == "audit" and audit["reason"] == "port_not_allowed"


def test_a_reload_turns_virtual_answers_on_and_off(world, sbv, vproxy, banner):
    """The pool is made by the first policy that asks for it (after the privilege
    drop and under the syscall filter) and outlives it: an address handed out
    still means its name under real answers."""
    virtual = POLICY.format(mode="enforce", ttl=30)
    real = virtual.replace("  answers: virtual\n", "")
    px = vproxy(policy=real)
    assert dig(world, sbv, "ssh.example.test").answers[0][2] == BANNER4
    px.policy.write_text(virtual)
    px.wait_record(event="reload", verdict="allow")
    vaddr = dig(world, sbv, "ssh.example.test").answers[0][2]
    assert in_pool(vaddr)
    tok = token()
    assert raw(world, sbv, "ssh.example.test", 22, tok, "4").get("echo") == f"echo hello {tok}"
    px.policy.write_text(real)
    wait_for(lambda: len(px.records(event="reload", verdict="allow")) == 2, 5.0,
             what="the second reload")
    assert dig(world, sbv, "ssh.example.test").answers[0][2] == BANNER4
    tok = token()
    assert raw(world, sbv, vaddr, 22, tok, "addr").get("echo") == f"echo hello {tok}"
    assert px.proc.alive()


# ---------------------------------------------------------------- pod mode

def test_pod_mode_reaches_a_name_by_its_virtual_address(world, sluice_bin, netns, banner,
                                                        tmp_path):
    """The sidecar shape: the proxy as UID 1337 on 127.0.0.1 in the workload's
    own namespace, the workload (UID 1000) resolving through it."""
    name = netns("vpod")
    run_dir = tmp_path / "run"
    env = dict(os.environ, SLUICE_RUN_DIR=str(run_dir))
    r = world.run(name, [sluice_bin("sluice-netsetup"), "pod", "--json"], env=env,
                  nsenter=True)
    assert r.returncode == 0, r.stderr
    try:
        (tmp_path / "px").mkdir()
        d = open_path_to(tmp_path / "px")
        os.chown(d, PROXY_UID, PROXY_UID)               # it starts as that UID: its log
        policy = d / "policy.yaml"
        policy.write_text(POLICY.format(mode="enforce", ttl=30))
        log = d / "flows.jsonl"
        proc = world.spawn(name, [*PROXY_AS_IN_MANIFESTS, sluice_bin("sluice-proxy"),
                                  "--policy", policy, "--listen", f"127.0.0.1:{PROXY_PORT}",
                                  "--dns-listen", f"127.0.0.1:{DNS_PORT}", "--upstream-dns",
                                  ADDR.DNS4, "--id", "vpod", "--log", log],
                           name="sluice-proxy", nsenter=True)
        wait_for(lambda: "serving with policy" in proc.log() or (
            not proc.alive() and (_ for _ in ()).throw(RuntimeError(proc.log()))), 5.0,
            what="proxy up")
        tok = token()
        out = world.run(name, [PYTHON, "-c", CLIENT, "db.example.test", 5432, tok, "4"],
                        uid=WORKLOAD, timeout=15)
        got = json.loads(out.stdout.splitlines()[-1])
        assert in_pool(got["addr"]) and got.get("echo") == f"echo hello {tok}", got
        seen = wait_for(lambda: banner.seen(tok), 5.0, what="the pod's hello at the server")
        assert seen[0]["peer"] == world.links[name].addr4      # the proxy connected
        recs = [json.loads(l) for l in log.read_text().splitlines()]
        assert [(x["proto"], x["host"]) for x in recs if x["event"] == "flow_start"] == [
            ("tcp", "db.example.test")]
        proc.stop()
    finally:
        world.run(name, [sluice_bin("sluice-netsetup"), "down", "--pod"], env=env,
                  nsenter=True)
