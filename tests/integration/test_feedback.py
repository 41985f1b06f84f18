"""Why-blocked feedback to the sandbox (issue 18, part 3; `feedback: true|false`).

Two sandboxes made by sluice-netsetup, each with its own sluice-proxy (DNS
included). Denials are provoked with real clients from inside a sandbox; what
the sandbox is told is read the way its code would read it: dig's Extended DNS
Error, the body of a 403, and http://sluice.internal/, which the proxy answers
and serves itself (dnsmasq's query log and the capture server prove it is
never forwarded).
"""

import json
import re

import pytest

from testworld import ADDR
from test_netsetup import DNS_PORT, PROXY_PORT, Netsetup
from test_proxy import Proxy, check_log

POLICY = """\
version: 1
feedback: {feedback}
egress:
  - domain: www.example.test
  - domain: plain.example.test
    ports: [80]
  - domain: api.example.test
    ports: [80]
    http:
      - methods: [GET]
        paths: ["/allowed*"]
destinations:
  allow_ranges: [203.0.113.0/24, 2001:db8::/32]
timeouts:
  sniff: 1s
"""


@pytest.fixture(scope="module")
def nsf(world, sluice_bin, tmp_path_factory):
    ns = Netsetup(world, sluice_bin("sluice-netsetup"), tmp_path_factory.mktemp("fb") / "run")
    try:
        yield ns
    finally:
        ns.cleanup()


@pytest.fixture
def fproxy(world, sluice_bin, nsf, tmp_path):
    """Factory: fproxy(feedback=True) -> (sandbox, proxy), a fresh sandbox each."""
    made = []

    def start(feedback=True):
        sb = nsf.up()
        d = tmp_path / f"px{len(made)}"
        px = Proxy(world, sluice_bin, sb, d, policy=POLICY.format(
            feedback="true" if feedback else "false"), listen=[f"{sb.gw}:{PROXY_PORT}"],
            args=("--dns-listen", f"{sb.gw}:{DNS_PORT}"))
        made.append((sb, px))
        return sb, px

    yield start
    for sb, px in made:
        if px.proc.alive():
            px.proc.stop()
        check_log(px)
        nsf.down(sb.name)


def run(world, sb, argv, timeout=15):
    """ARGV in SB through `ip netns exec`: its resolv.conf (the proxy) applies."""
    return world.run(sb.name, argv, timeout=timeout)


def page(world, sb, json_=False):
    argv = ["curl", "-sS", "--max-time", "5", "-i", "http://sluice.internal/"]
    if json_:
        argv[1:1] = ["-H", "Accept: application/json"]
    return run(world, sb, argv)


def test_a_refused_name_carries_an_extended_dns_error(world, fproxy):
    sb, px = fproxy()
    bad = run(world, sb, ["dig", "+time=2", "+tries=1", "other.example.test"])
    assert "status: NXDOMAIN" in bad.stdout, bad.stdout
    ede = re.search(r"; EDE: 15 \(Blocked\): \((.*)\)", bad.stdout)
    assert ede, bad.stdout
    assert ede.group(1) == (f"sluice: not_allowlisted by policy {px.records()[0]['policy']}; "
                            "recent denials: http://sluice.internal/")
    ok = run(world, sb, ["dig", "+time=2", "+tries=1", "www.example.test"])
    assert "status: NOERROR" in ok.stdout and "EDE" not in ok.stdout, ok.stdout
    # without EDNS there is no OPT record to carry it
    plain = run(world, sb, ["dig", "+noedns", "+time=2", "+tries=1", "other.example.test"])
    assert "status: NXDOMAIN" in plain.stdout and "EDE" not in plain.stdout


def test_the_sandbox_reads_its_own_denials_at_sluice_internal(world, fproxy, capture):
    sb, px = fproxy()
    other_sb, other_px = fproxy()
    world.dns_reset()
    # provoke: a TLS name no rule knows (an alert is all TLS can say), a refused query
    tls = run(world, sb, ["curl", "-sS", "--max-time", "5", "--cacert", str(world.ca_cert),
                          "--resolve", f"other.example.test:443:{ADDR.CAPTURE4}",
                          "https://other.example.test/"])
    assert tls.returncode != 0
    run(world, sb, ["dig", "+time=2", "+tries=1", "secret-name.example.test"])
    run(world, other_sb, ["dig", "+time=2", "+tries=1", "only-mine.example.test"])
    # the name resolves to the gateway, from the proxy itself
    addr = run(world, sb, ["dig", "+short", "+time=2", "+tries=1", "sluice.internal"])
    assert addr.stdout.strip() == sb.gw, addr.stdout
    r = page(world, sb)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition("\n\n")
    assert head.startswith("HTTP/1.1 200 OK") and "text/plain" in head, head
    lines = body.splitlines()
    assert lines[0].startswith("sluice: the last 2 denials of this sandbox, newest first")
    assert re.match(r"\S+Z  dns   secret-name\.example\.test  not_allowlisted  ", lines[1]), lines
    assert re.match(r"\S+Z  tls   other\.example\.test:443  not_allowlisted  ", lines[2]), lines
    assert "only-mine" not in body                      # another sandbox's denial
    j = json.loads(page(world, sb, json_=True).stdout.partition("\n\n")[2])
    assert [(d["proto"], d["host"], d.get("port"), d["reason"]) for d in j["denials"]] == [
        ("dns", "secret-name.example.test", None, "not_allowlisted"),
        ("tls", "other.example.test", 443, "not_allowlisted")]
    assert j["policy"] == px.records()[0]["policy"] and j["denials"][0]["hint"]
    theirs = page(world, other_sb).stdout
    assert "only-mine.example.test" in theirs and "secret-name" not in theirs
    # never forwarded: not to the resolver, not to any server
    assert not [q for q in world.dns_queries() if "sluice.internal" in q["qname"]]
    assert world.capture_records() == []
    assert not [r for r in px.records() if r.get("event") in ("flow_start", "deny") and
                r.get("host") == "sluice.internal"]


def test_a_403_says_what_would_allow_the_request(world, fproxy):
    sb, px = fproxy()
    port = run(world, sb, ["curl", "-sS", "--max-time", "5", "-i", "--resolve",
                           f"www.example.test:80:{ADDR.CAPTURE4}",
                           "http://www.example.test/"])
    assert port.stdout.startswith("HTTP/1.1 403"), port.stdout
    body = port.stdout.partition("\n\n")[2]
    assert body.splitlines() == [
        "sluice: www.example.test:80 denied (port_not_allowed)",
        "the rule at line 4 of policy.yaml allows www.example.test on port 443; listing 80 "
        "there would allow this",
        "this sandbox's recent denials: http://sluice.internal/"]
    method = run(world, sb, ["curl", "-sS", "--max-time", "5", "-i", "-X", "POST", "--resolve",
                             f"api.example.test:80:{ADDR.CAPTURE4}",
                             "http://api.example.test/allowed/x"])
    body = method.stdout.partition("\n\n")[2]
    assert "denied (method_not_allowed)" in body
    assert "the rule at line 7 of policy.yaml allows api.example.test for:\n  methods GET, paths " \
           "/allowed*\n" in body, body
    unknown = run(world, sb, ["curl", "-sS", "--max-time", "5", "-i", "--resolve",
                              f"other.example.test:80:{ADDR.CAPTURE4}",
                              "http://other.example.test/"])
    assert ("no rule names other.example.test; a rule '- domain: other.example.test' with "
            "ports [80] would allow this") in unknown.stdout


def test_feedback_false_tells_nothing(world, fproxy, capture):
    sb, px = fproxy(feedback=False)
    world.dns_reset()
    bad = run(world, sb, ["dig", "+time=2", "+tries=1", "other.example.test"])
    assert "status: NXDOMAIN" in bad.stdout and "EDE" not in bad.stdout
    name = run(world, sb, ["dig", "+time=2", "+tries=1", "sluice.internal"])
    assert "status: NXDOMAIN" in name.stdout, name.stdout
    # dialled by address anyway: refused, never forwarded
    r = run(world, sb, ["curl", "-sS", "--max-time", "5", "-i", "--resolve",
                        f"sluice.internal:80:{sb.gw}", "http://sluice.internal/"])
    assert r.stdout.startswith("HTTP/1.1 403"), r.stdout
    assert r.stdout.endswith("sluice: sluice.internal:80 denied (not_allowlisted)\n")
    port = run(world, sb, ["curl", "-sS", "--max-time", "5", "-i", "--resolve",
                           f"www.example.test:80:{ADDR.CAPTURE4}", "http://www.example.test/"])
    assert port.stdout.endswith("denied (port_not_allowed)\n"), port.stdout     # no hint
    assert not [q for q in world.dns_queries() if "sluice.internal" in q["qname"]]
    assert world.capture_records() == []
