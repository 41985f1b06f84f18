"""What a policy reload does to flows already decided, and the host's own
addresses as destinations (issue 14: an independent red team's findings).

A reload must re-decide every flow the old policy let through, whatever let it
through (a name rule, a cidr rule, audit mode) and wherever it is (resolving,
connecting, relaying), and every record must name the policy that made its
decision. Denials are proved by what did not arrive at the far end.
"""

import hashlib
import json
import signal
import time

import pytest

from testworld import ADDR, PYTHON, wait_for
from test_netsetup import Netsetup, sink, v6_subnet
from test_proxy import KEEPALIVE, SLOW_SYN_NFT, Proxy, alert, curl, finish, stop_and_check

POLICY = """\
version: 1
mode: {mode}
egress:
  - domain: www.example.test
  - domain: self.example.test
    ports: [80]
  - cidr: {capture}/32
    ports: [5432]
destinations:
  allow_ranges: [203.0.113.0/24, 198.51.100.0/24, 2001:db8::/32]
timeouts:
  sniff: 1s
"""

# A raw TCP client: sends TAG-before (after a NUL: no protocol a sniffer knows), waits for GO (a file), sends "after", then
# reads until the far end closes (at most 5 s) and prints what happened.
RAW_PY = r"""
import json, os, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)
s.sendall(b"\0" + sys.argv[3].encode() + b"-before\n")     # no protocol at all
open(sys.argv[4], "w").close()
deadline = time.time() + 8
while not os.path.exists(sys.argv[5]) and time.time() < deadline:
    time.sleep(0.05)
out = {}
try:
    s.sendall(sys.argv[3].encode() + b"-after\n")
    time.sleep(0.3)
    s.sendall(sys.argv[3].encode() + b"-later\n")
    s.settimeout(5)
    out["read"] = len(s.recv(100))
except Exception as e:
    out["error"] = type(e).__name__
print(json.dumps(out), flush=True)
"""


def policy_hash(text):
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@pytest.fixture(scope="module")
def sb(world, sluice_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("revocation")
    ns = Netsetup(world, sluice_bin("sluice-netsetup"), tmp / "run")
    try:
        yield ns.up("--ipv6", v6_subnet())
    finally:
        ns.cleanup()


@pytest.fixture
def proxy(world, sluice_bin, sb, tmp_path):
    """Factory: proxy(mode) starts sb's proxy with POLICY; stopped and its log
    checked after the test."""
    made = []

    def start(mode="enforce"):
        text = POLICY.format(mode=mode, capture=ADDR.CAPTURE4)
        px = Proxy(world, sluice_bin, sb, tmp_path / f"px{len(made)}", policy=text,
                   listen=[f"{sb.gw}:15001", f"[{sb.gw6}]:15001"],
                   args=("--dns-listen", f"{sb.gw}:15053"))
        px.text = text
        made.append(px)
        return px

    yield start
    stop_and_check(made)


def reload(px, text):
    px.policy.write_text(text)
    px.text = text
    px.proc.signal(signal.SIGHUP)
    return px.wait_record(event="reload", policy=policy_hash(text))


def raw_client(world, sb, tmp_path, tag, port):
    ready, go = tmp_path / f"{tag}.ready", tmp_path / f"{tag}.go"
    proc = world.spawn(sb.name, [PYTHON, "-c", RAW_PY, ADDR.CAPTURE4, str(port), tag, ready,
                                 go], name=f"raw-{tag}", nsenter=True)
    wait_for(ready.exists, 5.0, what=f"{tag} connected")
    return proc, go


def test_reload_revokes_a_raw_tcp_flow_whose_cidr_rule_is_gone(world, sb, proxy, capture,
                                                               tmp_path):
    """Finding 3: a flow a cidr rule allowed is re-decided on reload; nothing
    it sends afterwards reaches the destination, and its records name the
    policy that decided each of them."""
    px = proxy()
    old = px.text
    client, go = raw_client(world, sb, tmp_path, "pg", 5432)
    try:
        start = px.wait_record(event="flow_start", proto="tcp", port=5432)
        assert start["rule"] == f"{px.policy}:7" and start["policy"] == policy_hash(old)
        wait_for(lambda: b"pg-before" in world.capture_bytes(5432), 3.0,
                 what="the first bytes at the capture server")
        new = old.replace(f"  - cidr: {ADDR.CAPTURE4}/32\n    ports: [5432]\n", "")
        assert new != old
        reload(px, new)
        deny = px.wait_record(event="deny", flow=start["flow"])
        assert deny["reason"] == "revoked" and deny["policy"] == policy_hash(new)
        assert "rule" not in deny                   # the new policy has no rule for it
        end = px.wait_record(event="flow_end", flow=start["flow"])
        assert end["reason"] == "revoked" and end["policy"] == policy_hash(new)
        assert "rule" not in end
        go.touch()
        finish(client, 10)
        time.sleep(0.5)
        got = world.capture_bytes(5432)
        assert b"pg-before" in got and b"pg-after" not in got and b"pg-later" not in got, got
    finally:
        client.stop()


def test_a_reload_that_keeps_a_flow_makes_it_the_deciding_policy(world, sb, proxy, capture,
                                                                 tmp_path):
    """A flow the new policy still allows goes on, and its flow_end names the
    new policy and the new policy's rule (it moved to another line)."""
    px = proxy()
    client, go = raw_client(world, sb, tmp_path, "keep", 5432)
    try:
        start = px.wait_record(event="flow_start", proto="tcp", port=5432)
        new = px.text.replace("egress:\n", "egress:\n  - domain: other.example.test\n")
        reload(px, new)
        go.touch()
        assert finish(client, 10) == 0
        wait_for(lambda: b"keep-later" in world.capture_bytes(5432), 3.0,
                 what="the later bytes at the capture server")
        assert not px.records(event="deny", flow=start["flow"])
    finally:
        client.stop()
    px.proc.stop()
    end = px.wait_record(event="flow_end", flow=start["flow"])
    assert end["policy"] == policy_hash(new) and end["rule"] == f"{px.policy}:8", end
    assert "reason" not in end


def test_a_switch_from_audit_to_enforce_revokes_what_audit_let_through(world, sb, proxy,
                                                                      capture, tmp_path):
    """Finding 4: a TLS flow to a name enforce denies, and a flow no protocol
    could be read from, both let through in audit mode, end when the policy
    switches to enforce; neither gets another byte through."""
    px = proxy(mode="audit")
    ready, go = tmp_path / "ka.ready", tmp_path / "go"
    ka = world.spawn(sb.name, [PYTHON, "-c", KEEPALIVE, ADDR.CAPTURE4,
                               "other.example.test", world.ca_cert, ready, go],
                     name="keepalive", nsenter=True)
    junk, junk_go = raw_client(world, sb, tmp_path, "junk", 8443)
    try:
        wait_for(ready.exists, 5.0, what="the first answer from other.example.test")
        tls = px.wait_record(event="flow_start", host="other.example.test")
        raw = px.wait_record(event="flow_start", port=8443)
        assert tls["verdict"] == raw["verdict"] == "audit"
        wait_for(lambda: b"junk-before" in world.capture_bytes(8443), 3.0,
                 what="the audited bytes at the capture server")
        world.nginx_reset()
        enforce = px.text.replace("mode: audit", "mode: enforce")
        reload(px, enforce)
        wait_for(lambda: {tls["flow"], raw["flow"]} <= {
            r["flow"] for r in px.records(event="deny", reason="revoked")}, 3.0,
            what="both audited flows revoked")
        for f in (tls["flow"], raw["flow"]):
            end = px.wait_record(event="flow_end", flow=f)
            assert end["reason"] == "revoked" and end["policy"] == policy_hash(enforce)
        go.touch()
        junk_go.touch()
        assert finish(ka, 10) == 0, ka.log()
        got = json.loads(ka.log().splitlines()[-1])
        assert "hello from other.example.test" in got["first"]
        assert "second" not in got and got["second_error"], got
        assert world.nginx_requests() == []
        finish(junk, 10)
        time.sleep(0.5)
        assert b"junk-after" not in world.capture_bytes(8443)
    finally:
        ka.stop()
        junk.stop()


def test_a_flow_still_connecting_at_a_reload_is_decided_by_the_new_policy(world, sb, proxy):
    """Finding 4: a flow between its decision and its relay (here: connecting,
    its first SYN dropped by inet) is re-decided at a reload; the name the
    new policy removed is refused the TLS way, and nginx sees nothing."""
    px = proxy()
    nft = world.tmp / "slowsyn-revoke.nft"
    nft.write_text(SLOW_SYN_NFT)
    r = world.run(world.inet, ["nft", "-f", str(nft)])
    assert r.returncode == 0, r.stderr
    try:
        world.nginx_reset()
        c = world.spawn(sb.name, ["curl", "-sS", "--max-time", "8", "--cacert",
                                  str(world.ca_cert), "--resolve",
                                  f"www.example.test:443:{ADDR.CAPTURE4}",
                                  "https://www.example.test/"], name="curl-slow",
                        nsenter=True)

        def syn_dropped():
            seen = world.run(world.inet, ["nft", "list", "set", "inet", "slt_slowsyn", "seen"])
            return "elements = {" in seen.stdout
        wait_for(syn_dropped, 5.0, what="the proxy's first SYN dropped")
        reload(px, px.text.replace("  - domain: www.example.test\n", ""))
        assert finish(c, 10) != 0
        assert alert(c.log()) == "access denied", c.log()
        d = px.wait_record(event="deny", host="www.example.test")
        assert d["reason"] == "revoked"
        assert not px.records(event="flow_start", host="www.example.test")
        time.sleep(1.5)                 # past the SYN retransmission
        assert world.nginx_requests() == []
    finally:
        world.run(world.inet, ["nft", "delete", "table", "inet", "slt_slowsyn"])


def test_the_hosts_own_addresses_are_never_destinations(world, sb, proxy, capture):
    """Suspected: a name whose DNS an attacker controls resolves to one of the
    host's own addresses (here inside allow_ranges, so no special-range check
    stops it). The kernel says the address is local: private_destination,
    over DNS and over TCP, and the host's service sees nothing."""
    px = proxy()
    name = "self.example.test"
    world.dns_add(name, "A", ADDR.HOST4, restart=False)
    world.dns_add(name, "AAAA", ADDR.HOST6)
    sinks = [sink(world, world.host, 80, addr=a) for a in (ADDR.HOST4, ADDR.HOST6)]
    try:
        for flags in ((), ("-6",)):
            r = curl(world, sb, f"http://{name}/", *flags, "-o", "/dev/null", "-w",
                     "%{http_code}",
                     resolve_to=f"[{ADDR.CAPTURE6}]" if flags else ADDR.CAPTURE4)
            assert r.stdout == "502", (flags, r.stdout, r.stderr)   # the way failed
        denials = px.records(event="deny", host=name)
        assert len(denials) == 2 and {d["reason"] for d in denials} == {"private_destination"}
        for qtype in ("A", "AAAA"):
            ans = world.dig(sb.name, name, qtype, server=sb.gw)
            assert ans.status == "NOERROR" and ans.answers == [], (qtype, ans)
        dns = px.records(event="dns", qname=name)
        assert dns and {d["reason"] for d in dns} == {"private_destination"}
        time.sleep(0.3)
        assert [records() for _, records in sinks] == [[], []]
        assert world.capture_records() == []
    finally:
        for proc, _ in sinks:
            proc.stop()
        world.dns_remove(name)


def test_an_address_that_becomes_the_hosts_own_is_refused_at_once(world, sb, proxy):
    """The kernel's answer to "is this the host's own address?" is kept per
    address (proxy/route.c) until the kernel announces a change: a destination
    that was someone else's and reachable, then added to the host, is refused
    on the very next connection, and the host's service sees nothing."""
    px = proxy()
    name, addr = "self.example.test", "198.51.100.77"     # in allow_ranges
    world.run(world.inet, ["ip", "addr", "add", f"{addr}/32", "dev", "lo"], check=True)
    world.dns_add(name, "A", addr)
    far, far_seen = sink(world, world.inet, 80, addr=addr)
    near = None
    try:
        r = curl(world, sb, f"http://{name}/", "-o", "/dev/null", max_time=2)
        assert r.returncode == 28, (r.returncode, r.stderr)     # the silent sink held it
        assert px.wait_record(event="flow_start", host=name)["upstream"] == f"{addr}:80"
        wait_for(lambda: far_seen(), 3.0, what="the first connection at inet's sink")
        # now the host's own: the kept "not local" must be forgotten
        world.run(world.host, ["ip", "addr", "add", f"{addr}/32", "dev", "lo"], check=True)
        near, near_seen = sink(world, world.host, 80, addr=addr)
        before = len(far_seen())
        r = curl(world, sb, f"http://{name}/", "-o", "/dev/null", "-w", "%{http_code}",
                 max_time=2)
        assert r.stdout == "502", (r.stdout, r.stderr)
        d = px.wait_record(event="deny", host=name)
        assert d["reason"] == "private_destination"
        assert len(px.records(event="flow_start", host=name)) == 1
        time.sleep(0.3)
        assert near_seen() == [] and len(far_seen()) == before
    finally:
        far.stop()
        if near:
            near.stop()
        world.run(world.host, ["ip", "addr", "del", f"{addr}/32", "dev", "lo"], check=False)
        world.run(world.inet, ["ip", "addr", "del", f"{addr}/32", "dev", "lo"], check=False)
        world.dns_remove(name)
