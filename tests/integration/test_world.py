"""Tests of the test world itself: real DNS, real TLS vhosts, the capture server,
the helpers, and a teardown that leaves nothing behind (even after a crash)."""

import json
import signal
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import testworld
from testworld import ADDR, wait_for

HERE = Path(__file__).resolve().parent


def last_request(world, **match):
    """The newest nginx access-log record matching MATCH (waits: nginx logs
    after it has answered)."""
    def find():
        hits = [r for r in world.nginx_requests()
                if all(r.get(k) == v for k, v in match.items())]
        return hits[-1] if hits else None
    return wait_for(find, 3.0, what=f"nginx request {match}")


# ---------------------------------------------------------------- nginx + DNS

@pytest.mark.parametrize("family, client, server", [
    ("-4", ADDR.HOST4, ADDR.WWW4),
    ("-6", ADDR.HOST6, ADDR.WWW6),
])
def test_https_by_name_through_test_dns(world, family, client, server):
    world.dns_reset()
    token = uuid.uuid4().hex
    r = world.curl(world.host, f"https://www.example.test/{token}", family)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello from www.example.test\n"
    # The far end saw it: right vhost, right SNI, from host, on the expected address.
    req = last_request(world, request=f"GET /{token} HTTP/1.1")
    assert (req["site"], req["sni"], req["scheme"]) == ("www.example.test",
                                                        "www.example.test", "https")
    assert (req["remote"], req["server_addr"], req["server_port"]) == (client, server, "443")
    # And the name was resolved by the test DNS server, not by anything else.
    qtype = "A" if family == "-4" else "AAAA"
    assert (qtype, ADDR.HOST4) in [(q["qtype"], q["client"]) for q in world.dns_queries()
                                   if q["qname"] == "www.example.test"]


@pytest.mark.parametrize("name, addr", [
    ("api.example.test", ADDR.WWW4),      # same address as www: SNI picks the vhost
    ("other.example.test", ADDR.OTHER4),
    ("alias.example.test", ADDR.WWW4),    # CNAME to www, served by www's vhost
])
def test_sni_selects_vhost(world, name, addr):
    token = uuid.uuid4().hex
    r = world.curl(world.host, f"https://{name}/{token}", "-4")
    assert r.returncode == 0, r.stderr
    site = "www.example.test" if name == "alias.example.test" else name
    assert r.stdout == world.site(site).body
    req = last_request(world, request=f"GET /{token} HTTP/1.1")
    assert (req["site"], req["sni"], req["server_addr"]) == (site, name, addr)


def test_plain_http_vhost(world):
    token = uuid.uuid4().hex
    r = world.curl(world.host, f"http://plain.example.test/{token}")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello from plain.example.test\n"
    req = last_request(world, request=f"GET /{token} HTTP/1.1")
    assert (req["scheme"], req["host"], req["remote"]) == ("http", "plain.example.test",
                                                           ADDR.HOST4)


def test_plain_http_over_v6(world):
    r = world.curl(world.host, "http://www.example.test/whoami", "-6")
    assert r.returncode == 0, r.stderr
    assert f"remote={ADDR.HOST6} server={ADDR.WWW6}:80" in r.stdout


def test_tls_trust_comes_from_the_test_ca(world):
    # A valid name whose certificate comes from a CA we do not trust fails...
    world.nginx_reset()
    r = world.curl(world.host, "https://untrusted.example.test/")
    assert r.returncode == 60, (r.returncode, r.stderr)
    # ...and so does www without --cacert (the system store knows nothing of the test CA).
    r = world.run(world.host, ["curl", "-sS", "--max-time", "5", "https://www.example.test/"])
    assert r.returncode == 60, (r.returncode, r.stderr)
    time.sleep(0.2)
    assert world.nginx_requests() == []


def test_nginx_defaults_reject_unknown_names(world):
    r = world.run(world.host, ["openssl", "s_client", "-connect", f"{ADDR.WWW4}:443",
                               "-servername", "nope.example.test", "-brief"],
                  input="", timeout=10)
    assert r.returncode != 0
    assert "unrecognized name" in r.stderr, r.stderr
    r = world.curl(world.host, f"http://{ADDR.WWW4}/", "-H", "Host: nope.example.test",
                   "-o", "/dev/null", "-w", "%{http_code}")
    assert r.stdout == "421"


def test_large_file_is_served(world):
    r = world.run(world.host, ["curl", "-sS", "--max-time", "10", "--cacert",
                               str(world.ca_cert), "-o", "/dev/null", "-w", "%{size_download}",
                               "https://www.example.test/files/8m.bin"], timeout=15)
    assert r.returncode == 0, r.stderr
    assert r.stdout == str(8 << 20)


DIG_CASES = [
    # (name, type, expected status, expected (type, data) answers)
    ("www.example.test", "A", "NOERROR", [("A", ADDR.WWW4)]),
    ("www.example.test", "AAAA", "NOERROR", [("AAAA", ADDR.WWW6)]),
    ("alias.example.test", "A", "NOERROR", [("CNAME", "www.example.test."),
                                             ("A", ADDR.WWW4)]),
    ("txt.example.test", "TXT", "NOERROR", [("TXT", '"sluice test txt record"')]),
    ("plain.example.test", "AAAA", "NOERROR", []),            # NODATA: v4 only
    ("www.example.test", "MX", "NOERROR", []),
    ("nope.example.test", "A", "NXDOMAIN", []),
    ("sub.www.example.test", "A", "NXDOMAIN", []),             # no wildcards
    ("example.com", "A", "NXDOMAIN", []),                     # never forwarded
]


@pytest.mark.parametrize("server, tcp", [(ADDR.DNS4, False), (ADDR.DNS6, False),
                                         (ADDR.DNS4, True)])
@pytest.mark.parametrize("name, qtype, status, answers", DIG_CASES)
def test_dns_answers(world, server, tcp, name, qtype, status, answers):
    res = world.dig(world.host, name, qtype, server=server, tcp=tcp)
    assert res.status == status, res.raw
    assert [(t, d) for (_, t, d, _) in res.answers] == answers, res.raw
    assert all(ttl == testworld.DNS_TTL for (*_, ttl) in res.answers)


def test_dns_query_log_and_reset(world):
    world.dns_reset()
    assert world.dns_queries() == []
    name = f"q{uuid.uuid4().hex[:12]}.example.test"
    world.dig(world.host, name, "AAAA")
    world.dig(world.host, name, "TXT", server=ADDR.DNS6)
    wait_for(lambda: len(world.dns_queries()) >= 2, 3.0, what="query log")
    assert world.dns_queries() == [
        {"qtype": "AAAA", "qname": name, "client": ADDR.HOST4},
        {"qtype": "TXT", "qname": name, "client": ADDR.HOST6},
    ]


def test_host_resolver_uses_test_dns(world):
    # getaddrinfo in host (glibc, /etc/netns/<host>/resolv.conf) asks dnsmasq.
    world.dns_reset()
    r = world.run(world.host, ["getent", "ahostsv4", "other.example.test"])
    assert r.returncode == 0 and ADDR.OTHER4 in r.stdout, r
    assert any(q["qname"] == "other.example.test" for q in world.dns_queries())
    r = world.run(world.host, ["getent", "hosts", "nope.example.test"])
    assert r.returncode == 2                                  # not found


def test_dns_records_table_can_change(world):
    name = "added.example.test"
    assert world.dig(world.host, name).status == "NXDOMAIN"
    world.dns_add(name, "A", ADDR.OTHER4)
    try:
        res = world.dig(world.host, name)
        assert (res.status, res.values("A")) == ("NOERROR", [ADDR.OTHER4])
    finally:
        world.dns_remove(name)
    assert world.dig(world.host, name).status == "NXDOMAIN"


# ---------------------------------------------------------------- capture server

def test_capture_records_tcp_and_udp(capture):
    world = capture
    tcp_token, udp_token = f"tcp-{uuid.uuid4().hex}", f"udp-{uuid.uuid4().hex}"
    r = world.run(world.host, ["nc", "-N", "-w", "3", ADDR.CAPTURE4, "5432"],
                  input=tcp_token)
    assert r.stdout == ""                                     # silent: no banner, no reply
    world.run(world.host, ["socat", "-u", "-", f"UDP6-SENDTO:[{ADDR.CAPTURE6}]:443"],
              input=udp_token, check=True)

    def both():
        recs = world.capture_records()
        return recs if len(recs) >= 2 and all(r["end"] for r in recs) else None
    recs = wait_for(both, 3.0, what="two capture records")
    tcp = next(r for r in recs if r["proto"] == "tcp")
    udp = next(r for r in recs if r["proto"] == "udp")
    assert (tcp["peer"], tcp["local"], tcp["local_port"], tcp["data"]) == \
        (ADDR.HOST4, ADDR.CAPTURE4, 5432, tcp_token.encode())
    assert (udp["peer"], udp["local"], udp["local_port"], udp["data"]) == \
        (ADDR.HOST6, ADDR.CAPTURE6, 443, udp_token.encode())
    assert tcp_token.encode() in world.capture_bytes(port=5432)
    assert world.inet_counters()["to_capture"] > 0
    assert world.inet_counters()["from_sandboxes"] == 0

    world.capture_reset()
    assert world.capture_records() == []
    assert world.capture_bytes() == b""
    assert world.inet_counters() == {"from_sandboxes": 0, "to_capture": 0}


def test_capture_by_name_on_https_port(capture):
    world = capture
    token = uuid.uuid4().hex
    world.run(world.host, ["nc", "-N", "-w", "3", "capture.test", "443"], input=token)
    wait_for(lambda: token.encode() in world.capture_bytes(port=443), 3.0, what="token")


def test_leak_from_sandbox_range_is_seen(capture, netns):
    """A namespace behind host in 10.200.0.0/16 with plain forwarding (no
    sluice): its traffic reaches inet, and the world notices: the capture server
    records the sandbox address and the from_sandboxes counter moves."""
    world = capture
    sbx = netns("sbx", connect=False)
    world.veth(world.host, sbx, "tsbx", "eth0", ["10.200.255.1/30", "2001:db8:200:ff::1/64"],
               ["10.200.255.2/30", "2001:db8:200:ff::2/64"])
    world.run(sbx, ["ip", "route", "add", "default", "via", "10.200.255.1"], check=True)
    world.run(sbx, ["ip", "-6", "route", "add", "default", "via", "2001:db8:200:ff::1"],
              check=True)
    token = uuid.uuid4().hex
    for addr in (ADDR.CAPTURE4, ADDR.CAPTURE6):
        world.run(sbx, ["nc", "-N", "-w", "3", addr, "22"], input=token)
    recs = wait_for(lambda: [r for r in world.capture_records() if r["data"] == token.encode()
                             and r["end"]] or None, 3.0, what="leaked token")
    assert {r["peer"] for r in recs} <= {"10.200.255.2", "2001:db8:200:ff::2"}
    assert len(recs) == 2
    assert world.inet_counters()["from_sandboxes"] > 0


# ---------------------------------------------------------------- helpers

def test_host_is_ready_for_sandboxes(world):
    r = world.run(world.host, ["sysctl", "-n", "net.ipv4.ip_forward",
                               "net.ipv6.conf.all.forwarding"], check=True)
    assert r.stdout.split() == ["1", "1"]
    r = world.run(world.inet, ["ip", "route", "get", "10.200.1.2"], check=True)
    assert f"via {ADDR.HOST4}" in r.stdout
    r = world.run(world.inet, ["ip", "-6", "route", "get", "2001:db8:200::2"], check=True)
    assert f"via {ADDR.HOST6}" in r.stdout


def test_run_timeout_kills_the_command(world):
    marker = f"sleep-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        world.run(world.host, ["bash", "-c", f"exec -a {marker} sleep 30"], timeout=0.5)
    assert time.monotonic() - t0 < 5
    pids = testworld.netns_pids(world.host)
    cmdlines = [Path(f"/proc/{p}/cmdline").read_bytes() for p in pids
                if Path(f"/proc/{p}/cmdline").exists()]
    assert not any(marker.encode() in c for c in cmdlines)


def test_nsenter_mode_keeps_created_namespaces(world):
    """What later tests must know to run `sluice-netsetup up` inside host."""
    lost, kept = world.name("lost"), world.name("kept")
    # ip netns exec: the child's mount namespace is private, its netns vanishes.
    world.run(world.host, ["ip", "netns", "add", lost], check=True)
    assert world.run(world.host, ["true"]).returncode == 0
    assert subprocess.run(["ip", "netns", "exec", lost, "true"], capture_output=True,
                          timeout=5).returncode != 0
    # nsenter --net: it persists (and the world's teardown will remove it).
    world.run(world.host, ["ip", "netns", "add", kept], nsenter=True, check=True)
    assert world.run(kept, ["ip", "-br", "link"], check=True).stdout.startswith("lo ")
    for n in (lost, kept):
        subprocess.run(["ip", "netns", "del", n], capture_output=True, timeout=5)


def test_run_as_other_uid(world):
    r = world.run(world.host, ["id", "-u"], uid=1000, check=True)
    assert r.stdout.strip() == "1000"
    r = world.run(world.host, ["sh", "-c", "id -u; id -g"], uid=1337, gid=1337, check=True)
    assert r.stdout.split() == ["1337", "1337"]


def test_spawn_and_remove_ns(world):
    ns = world.add_ns("rm", connect=True)
    try:
        proc = world.spawn(ns, ["sleep", "60"], name="sleeper")
        wait_for(lambda: proc.pid in testworld.netns_pids(ns), 3.0, what="sleeper in ns")
        r = world.curl(ns, "https://www.example.test/")   # extra namespaces reach inet
        assert r.stdout == "hello from www.example.test\n", r.stderr
    finally:
        world.remove_ns(ns)
    assert ns not in testworld.list_netns()
    assert not proc.alive()
    assert proc not in world.procs or proc.popen.returncode is not None


def test_netns_fixture_connects(world, netns):
    ns = netns()
    link = world.links[ns]
    r = world.curl(ns, "http://plain.example.test/whoami", "-4")
    assert r.returncode == 0
    assert f"remote={link.addr4} " in r.stdout


def test_root_namespace_untouched(world, root_baseline):
    now = testworld.root_snapshot()
    assert {k: v for k, v in now.items() if root_baseline.get(k) != v} == {}
    assert not any(n.startswith(world.prefix) for n in
                   subprocess.run(["ip", "-br", "link"], capture_output=True, text=True,
                                  timeout=5).stdout.split())


# ---------------------------------------------------------------- teardown

def proc_starttime(pid):
    """Start time of live process PID (None if gone or a zombie awaiting its reaper)."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if f[0] in ("Z", "X") else f[19]


def world_processes(prefix):
    """{pid: starttime} of every process inside namespaces with PREFIX."""
    out = {}
    for n in testworld.list_netns():
        if n.startswith(prefix):
            for p in testworld.netns_pids(n):
                out[p] = proc_starttime(p)
    return out


def assert_gone(prefix, procs, tmp):
    assert not [n for n in testworld.list_netns() if n.startswith(prefix)]
    survivors = [p for p, st in procs.items() if st is not None and proc_starttime(p) == st]
    assert survivors == [], survivors
    assert not list(testworld.ETC_NETNS.glob(prefix + "*"))
    assert not Path(tmp).exists()


def test_teardown_removes_everything():
    w = testworld.World()
    try:
        w.setup()
        extra = w.add_ns("x", connect=True)
        w.spawn(extra, ["sleep", "60"])
        w.write_resolv_conf(extra)
        # A namespace made behind the world's back (as sluice-netsetup does)
        # is found by its prefix.
        subprocess.run(["ip", "netns", "add", w.name("sbx")], check=True, timeout=5)
        procs = world_processes(w.prefix)
        names = {n for n in testworld.list_netns() if n.startswith(w.prefix)}
        assert names == {w.inet, w.host, extra, w.name("sbx")}
        assert len(procs) >= 5          # dnsmasq, nginx master + worker, capture, sleep
        assert w.dnsmasq.alive() and w.nginx.alive() and w.capture.alive()
    finally:
        w.teardown()
    assert_gone(w.prefix, procs, w.tmp)


def test_teardown_after_failure():
    with pytest.raises(ZeroDivisionError):
        with testworld.World() as w:
            procs = world_processes(w.prefix)
            assert procs
            1 / 0
    assert_gone(w.prefix, procs, w.tmp)


CHILD = textwrap.dedent("""
    import json, subprocess, sys, time
    sys.path.insert(0, {here!r})
    import testworld
    testworld.install_signal_handlers()
    w = testworld.World().setup()
    x = w.add_ns("x", connect=True)
    # No parent-death signal and its own session: only namespace cleanup can end it.
    subprocess.Popen(["ip", "netns", "exec", x, "sleep", "120"], start_new_session=True)
    with open({out!r} + ".tmp", "w") as f:
        json.dump({{"prefix": w.prefix, "tmp": str(w.tmp)}}, f)
    import os; os.rename({out!r} + ".tmp", {out!r})
    time.sleep(120)
""")


def start_child_world(tmp_path):
    out = tmp_path / "child.json"
    child = subprocess.Popen([testworld.PYTHON, "-c", CHILD.format(here=str(HERE),
                                                                   out=str(out))],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: out.exists() or child.poll() is not None, 20.0, what="child world")
        assert out.exists(), child.stderr.read().decode()
    except BaseException:
        child.kill()
        child.wait(5)
        raise
    info = json.loads(out.read_text())
    procs = wait_for(lambda: (lambda p: p if len(p) >= 5 else None)(
        world_processes(info["prefix"])), 5.0, what="child world processes")
    return child, info, procs


def test_sigterm_tears_world_down(tmp_path):
    child, info, procs = start_child_world(tmp_path)
    child.send_signal(signal.SIGTERM)
    assert child.wait(15) == 128 + signal.SIGTERM, child.stderr.read().decode()
    assert_gone(info["prefix"], procs, info["tmp"])


def test_reap_stale_after_sigkill(tmp_path):
    child, info, procs = start_child_world(tmp_path)
    child.kill()
    child.wait(5)
    # Nothing could clean up: the namespaces and the detached process are still there.
    assert [n for n in testworld.list_netns() if n.startswith(info["prefix"])]
    removed = testworld.reap_stale()
    assert {n for n in removed if n.startswith(info["prefix"])} == \
        {info["prefix"] + r for r in ("inet", "host", "x")}
    assert_gone(info["prefix"], procs, info["tmp"])
