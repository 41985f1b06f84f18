"""sluice under faults and attack, and its privileges (issue 8).

A sandbox made by sluice-netsetup inside `host`, a sluice-proxy per test on
its gateway (TCP and DNS), and things going wrong: the proxy SIGKILLed, the
upstream resolver down, an upstream resetting mid-transfer, slowloris heads,
ten thousand garbage connections, hostile names; then what the running proxy
may still do (its capabilities, user, no_new_privs, seccomp). Each result is
proved at the far end: the capture server, nginx's and dnsmasq's logs, inet's
packet counters, the flow log, /proc.
"""

import json
import os
import pwd
import signal
import time
from pathlib import Path

import pytest

from testworld import ADDR, PYTHON, open_path_to, wait_for
from test_netsetup import Netsetup
from test_proxy import HELLO_PY, Proxy, check_log, curl, py, stop_and_check

POLICY = """\
version: 1
mode: {mode}
egress:
  - domain: www.example.test
    ports: [80, 443]
  - domain: reset.example.test      # the resetting server below
    ports: [443]
destinations:
  allow_ranges: [203.0.113.0/24, 192.0.2.0/24, 2001:db8::/32]
timeouts:
  sniff: 2s
limits:                             # off: the junk flood below is 10,000 connections
  max_connections: 0
  new_connections_per_second: 0
"""

RESET_ADDR = "192.0.2.200"          # the resetting upstream, on inet's lo


@pytest.fixture(scope="module")
def fsb(world, sluice_bin, tmp_path_factory):
    """The sandbox every test here uses."""
    tmp = tmp_path_factory.mktemp("faults")
    ns = Netsetup(world, sluice_bin("sluice-netsetup"), tmp / "run")
    try:
        yield ns.up()
    finally:
        ns.cleanup()


@pytest.fixture
def proxies(world, sluice_bin, fsb, tmp_path):
    """Factory: proxies(mode=, upstream=, args=, wrap=, policy=) starts a
    sluice-proxy for fsb with TCP and DNS on its gateway. Stopped after the
    test; every line of its flow log is checked."""
    made = []

    def start(policy=None, *, mode="enforce", **kw):
        text = policy if policy is not None else POLICY.format(mode=mode)
        px = Proxy(world, sluice_bin, fsb, tmp_path / f"px{len(made)}", policy=text,
                   args=("--dns-listen", f"{fsb.gw}:15053", *kw.pop("args", ())), **kw)
        made.append(px)
        return px

    yield start
    stop_and_check(made)


def status(pid):
    """/proc/PID/status as a dict of its fields."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def default_user():
    """Whom a root-started proxy becomes: 'sluice' if it exists, else 'nobody'."""
    for name in ("sluice", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    pytest.skip("neither a 'sluice' nor a 'nobody' user exists")


# ------------------------------------------------------------------ 1. kill -9

# From the sandbox: TCP to three addresses and DNS to two, each timed.
DEAD_PROBE = r"""
import errno, json, socket, sys, time
out = {"tcp": [], "dns": []}
for addr, port in (("203.0.113.99", 443), ("203.0.113.10", 443), ("203.0.113.99", 80)):
    t0 = time.monotonic()
    try:
        socket.create_connection((addr, port), 5).close()
        e = 0
    except OSError as x:
        e = x.errno
    out["tcp"].append([addr, port, errno.errorcode.get(e, str(e)), time.monotonic() - t0])
query = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x04test\x00"
         b"\x00\x01\x00\x01")
for addr in ("203.0.113.53", "9.9.9.9"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.connect((addr, 53))
    t0 = time.monotonic()
    try:
        s.send(query)
        s.recv(512)
        e = "answered"
    except ConnectionRefusedError:
        e = "ECONNREFUSED"
    except socket.timeout:
        e = "timeout"
    out["dns"].append([addr, e, time.monotonic() - t0])
print(json.dumps(out))
"""


def test_kill_9_fails_fast_leaks_nothing_and_a_restart_serves(world, fsb, proxies, capture):
    px = proxies()
    assert curl(world, fsb, "https://www.example.test/").stdout == "hello from www.example.test\n"
    assert world.dig(fsb.name, "www.example.test").values("A") == [ADDR.WWW4]

    px.proc.signal(signal.SIGKILL)
    wait_for(lambda: not px.proc.alive(), 3.0, what="proxy gone")
    world.capture_reset()
    world.nginx_reset()
    world.dns_reset()
    t0 = time.monotonic()
    out = py(world, fsb, DEAD_PROBE, timeout=30)
    # fail closed and fast: a reset for TCP, port-unreachable for DNS, no waiting
    for addr, port, err, took in out["tcp"]:
        assert err == "ECONNREFUSED" and took < 1.0, (addr, port, err, took)
    for addr, err, took in out["dns"]:
        assert err == "ECONNREFUSED" and took < 1.0, (addr, err, took)
    assert time.monotonic() - t0 < 10
    # and nothing went around the dead proxy
    assert world.capture_records() == []
    assert world.inet_counters() == {"from_sandboxes": 0, "to_capture": 0}
    assert world.dns_queries() == []
    assert world.nginx_requests() == []

    # a new proxy on the same addresses serves at once; netsetup is not rerun
    px.start()
    r = curl(world, fsb, "https://www.example.test/")
    assert r.returncode == 0 and r.stdout == "hello from www.example.test\n", r.stderr
    assert world.dig(fsb.name, "www.example.test").values("A") == [ADDR.WWW4]
    assert [q["site"] for q in world.nginx_requests()] == ["www.example.test"]


# ------------------------------------------------------------------ 2. upstream DNS down

@pytest.mark.parametrize("upstream,why", [
    (ADDR.WWW4, "refuses (nothing on port 53: ICMP port unreachable)"),
    (ADDR.CAPTURE4, "is silent (the capture server never answers)"),
], ids=["refusing", "silent"])
def test_upstream_dns_down_is_resolve_failed_never_the_dialled_address(
        world, fsb, proxies, capture, upstream, why):
    px = proxies(upstream=upstream)
    world.nginx_reset()
    t0 = time.monotonic()
    tls = curl(world, fsb, "https://www.example.test/", resolve_to=ADDR.CAPTURE4, max_time=10)
    http = curl(world, fsb, "http://www.example.test/", "-i", resolve_to=ADDR.CAPTURE4,
                max_time=10)
    assert time.monotonic() - t0 < 15, why
    assert tls.returncode != 0 and "hello from" not in tls.stdout + http.stdout
    denies = wait_for(lambda: len(px.records(event="deny")) >= 2 and px.records(event="deny"),
                      5.0, what="two denials")
    assert sorted((r["host"], r["port"], r["reason"]) for r in denies) == [
        ("www.example.test", 80, "resolve_failed"),
        ("www.example.test", 443, "resolve_failed")], (denies, http)
    assert "X-Sluice-Reason: resolve_failed" in http.stdout, http
    # never a fallback to what the sandbox dialled: no TCP reached the capture
    # server; what did reach it (silent case) are the proxy's own queries
    recs = world.capture_records()
    assert [r for r in recs if r["proto"] != "udp"] == [], recs
    assert all(r["local_port"] == 53 and r["peer"] == ADDR.HOST4
               for r in recs), recs
    assert world.nginx_requests() == []
    assert px.records(event="flow_start") == []


# ------------------------------------------------------------------ 3. upstream resets

RESET_SERVER = r"""
import socket, struct, sys
n = int(sys.argv[2])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((sys.argv[1], 443))
ls.listen(8)
print("listening", flush=True)
while True:
    c, peer = ls.accept()
    c.settimeout(10)
    hello = c.recv(65536)
    c.sendall(b"\x17" * n)                  # the first part of a download
    ack = c.recv(1)                         # the client got all of it
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()                               # then a reset, mid-transfer
    print("reset after", len(hello), n, ack, flush=True)
"""

RESET_CLIENT = HELLO_PY + r"""
n = int(sys.argv[1])
h = hello(b"reset.example.test")
s = socket.create_connection(("203.0.113.99", 443), 5)
s.settimeout(10)
s.sendall(h)
got = b""
while len(got) < n:
    b = s.recv(65536)
    if not b:
        break
    got += b
s.sendall(b"k")
err = None
try:
    while s.recv(65536):
        pass
except OSError as e:
    err = type(e).__name__
print(json.dumps({"hello": len(h), "got": len(got), "end": err}))
"""


@pytest.fixture
def reset_server(world):
    """A server on RESET_ADDR:443 (DNS name reset.example.test) that sends N
    bytes, waits for one byte back, then resets the connection."""
    n = 300_000
    world.add_inet_addr(RESET_ADDR)
    world.dns_add("reset.example.test", "A", RESET_ADDR)
    srv = None
    try:
        srv = world.spawn(world.inet, [PYTHON, "-c", RESET_SERVER, RESET_ADDR, str(n)],
                          name="reset-server")
        wait_for(lambda: "listening" in srv.log(), 5.0, what="reset server")
        yield srv, n
    finally:
        if srv:
            srv.stop()
        world.dns_remove("reset.example.test")
        world.run(world.inet, ["ip", "addr", "del", f"{RESET_ADDR}/32", "dev", "lo"])


def test_upstream_reset_mid_transfer_ends_the_flow_with_the_bytes_moved(
        world, fsb, proxies, reset_server, capture):
    srv, n = reset_server
    px = proxies()
    out = py(world, fsb, RESET_CLIENT, n, timeout=20)
    assert out["got"] == n, out
    wait_for(lambda: "reset after" in srv.log(), 5.0, what="the server's reset")
    start = px.wait_record(event="flow_start", host="reset.example.test")
    assert start["upstream"] == f"{RESET_ADDR}:443"
    end = px.wait_record(event="flow_end", flow=start["flow"])
    # exactly what moved before the reset: the hello and the ack up, n bytes down
    assert end["bytes_down"] == n, end
    assert end["bytes_up"] == out["hello"] + 1, (end, out)
    assert world.capture_records() == []


# ------------------------------------------------------------------ 4. slowloris

SLOWLORIS = r"""
import json, selectors, socket, sys, time
k, port = int(sys.argv[1]), int(sys.argv[2])
head = b"GET / HTTP/1.1\r\nHost: www.example.test\r\nUser-Agent: slow\r\n\r\n"
sel = selectors.DefaultSelector()
conns = []
for i in range(k):
    s = socket.create_connection(("203.0.113.99", port), 5)
    s.setblocking(False)
    conns.append({"s": s, "t0": time.monotonic(), "sent": 0, "closed": None, "got": b""})
    sel.register(s, selectors.EVENT_READ, conns[-1])
deadline = time.monotonic() + 8
next_byte = time.monotonic()
while time.monotonic() < deadline and any(c["closed"] is None for c in conns):
    now = time.monotonic()
    if now >= next_byte:                    # one byte a second on every connection
        for c in conns:
            if c["closed"] is None and c["sent"] < len(head):
                try:
                    c["s"].send(head[c["sent"]:c["sent"] + 1])
                    c["sent"] += 1
                except OSError:
                    c["closed"] = time.monotonic() - c["t0"]
        next_byte = now + 1.0
    for key, _ in sel.select(timeout=0.05):
        c = key.data
        try:
            b = c["s"].recv(4096)
        except OSError:
            b = b""
        c["got"] += b
        if not b and c["closed"] is None:
            c["closed"] = time.monotonic() - c["t0"]
            sel.unregister(c["s"])
print(json.dumps([[c["closed"], c["sent"], c["got"][:12].decode("latin-1")] for c in conns]))
"""


def test_slowloris_heads_are_closed_at_the_sniff_timeout(world, fsb, proxies, capture):
    px = proxies()                          # timeouts.sniff: 2s
    world.nginx_reset()
    k = 20
    res = py(world, fsb, SLOWLORIS, k, 80, timeout=20)
    for closed, sent, _ in res:
        assert closed is not None, "a one-byte-a-second head outlived the sniff timeout"
        assert 1.5 <= closed <= 3.5, res
        assert sent <= 4, res              # about two bytes got through in two seconds
    denies = wait_for(lambda: len(px.records(event="deny", reason="sniff_timeout")) >= k and
                      px.records(event="deny", reason="sniff_timeout"), 3.0,
                      what=f"{k} sniff_timeout records")
    assert len(denies) == k and all(d["orig_dst"] == f"{ADDR.CAPTURE4}:80" for d in denies)
    assert world.nginx_requests() == [] and world.capture_records() == []


# ------------------------------------------------------------------ 5. 10,000 bad connections

# asyncio client: TOTAL connections, CONCURRENT at a time, each sending one kind
# of junk and closing; bounded by a deadline.
GARBAGE = r"""
import asyncio, json, os, random, struct, sys, time
total, concurrent, deadline = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rnd = random.Random(8)
def rec(body, ver=b"\x03\x01"):
    return b"\x16" + ver + struct.pack("!H", len(body)) + body
KINDS = [
    lambda: bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 600))),   # noise
    lambda: b"",                                                               # nothing
    lambda: rec(b"\x01\xff\xff\xff" + os.urandom(60)),           # hello length lies
    lambda: rec(b"\x01\x00\x00\x30\x03\x03" + os.urandom(10)),   # truncated hello
    lambda: b"\x16\x03\x01\xff\xff" + os.urandom(200),           # record longer than sent
    lambda: rec(b"\x02\x00\x00\x04\x03\x03\x00\x00"),            # not a ClientHello
    lambda: rec(b"\x01\x00\x00\x26\x03\x03" + b"\x00" * 32 + b"\xff\xff"),  # session id overrun
    lambda: b"GET / HTTP/1.1\r\nHost: \x00\xff\r\n\r\n",          # bad Host
    lambda: b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",      # two Hosts
    lambda: b"\x00" * 4096,                                      # zeros
]
stats = {"ok": 0, "refused": 0, "error": 0}
async def one(i):
    port = (443, 80, 25)[i % 3]
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("203.0.113.99", port), 5)
    except ConnectionRefusedError:
        stats["refused"] += 1
        return
    except Exception:
        stats["error"] += 1
        return
    try:
        w.write(KINDS[i % len(KINDS)]())
        await w.drain()
        w.close()
        await asyncio.wait_for(w.wait_closed(), 2)
        stats["ok"] += 1
    except Exception:
        stats["ok"] += 1                    # a reset from the proxy is fine too
async def main():
    sem = asyncio.Semaphore(concurrent)
    end = time.monotonic() + deadline
    async def guarded(i):
        async with sem:
            if time.monotonic() < end:
                await one(i)
    await asyncio.gather(*(guarded(i) for i in range(total)))
t0 = time.monotonic()
asyncio.run(main())
stats["seconds"] = time.monotonic() - t0
print(json.dumps(stats))
"""


def rss_kib(pid):
    return int(status(pid)["VmRSS"].split()[0])


def test_ten_thousand_garbage_connections_leave_no_crash_and_no_growth(
        world, fsb, proxies, capture):
    px = proxies()
    # the starting value: a proxy that has run each code path once (an allowed
    # flow) and has held as many connections at once as the flood will (one
    # round of 400 at 200 concurrent). The heap's high-water mark (libevent's
    # per-descriptor tables, malloc's caches) is then part of the start, and
    # what is compared is memory kept per connection: a leak of 64 bytes per
    # connection would be 640 KiB, about 10 % of the whole process.
    assert curl(world, fsb, "https://www.example.test/").returncode == 0
    warm = py(world, fsb, GARBAGE, 400, 200, 20, timeout=40)
    assert warm["ok"] == 400, warm
    wait_for(lambda: len(px.records(event="deny")) >= 400, 5.0, what="warm-up denials")
    time.sleep(1.5)                         # the idle heap trim (TRIM_INTERVAL_MS)
    before = rss_kib(px.proc.pid)
    out = py(world, fsb, GARBAGE, 10_000, 200, 90, timeout=120)
    print(f"10,000 junk connections in {out['seconds']:.1f} s")
    assert out["ok"] == 10_000 and out["refused"] == 0 and out["error"] == 0, out
    assert px.proc.alive(), px.proc.log()
    # every connection was denied and logged, the tenth that said nothing and
    # closed too (unknown_protocol: an attempt all the same, a port scan's)
    total = 400 + 10_000
    denies = wait_for(lambda: len(px.records(event="deny")) >= total and
                      px.records(event="deny"), 20.0, what=f"{total} denials")
    assert len(denies) == total
    assert {d["reason"] for d in denies} == {"no_sni", "unknown_protocol", "invalid_hostname"}
    assert px.records(event="flow_start") == [px.records(event="flow_start")[0]]
    # memory comes back: within 10 % of where it started. ASan builds hold freed
    # memory in their quarantine by design, so there the leak check at exit
    # (the fixture stops the proxy with SIGTERM) is what judges instead
    if "libasan" not in Path(f"/proc/{px.proc.pid}/maps").read_text():
        wait_for(lambda: rss_kib(px.proc.pid) <= before * 1.10, 10.0,
                 what=f"RSS back within 10 % of {before} KiB (now {rss_kib(px.proc.pid)})")
    # still serving, and nothing reached the address the junk was sent to
    assert curl(world, fsb, "https://www.example.test/").returncode == 0
    assert world.capture_records() == []
    assert world.inet_counters()["to_capture"] == 0


# ------------------------------------------------------------------ 6. hostile names

HOSTILE_NAMES = HELLO_PY + r"""
def query(labels, qid):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for l in labels:
        q += bytes([len(l)]) + l
    return q + b"\x00\x00\x01\x00\x01"
names = [b'q"uote.test', b"back\\slash.test", b"ctl\x01\x07\x1b[31m.test", b"nl\r\nx.test",
         b"nul\x00.test", b"\xff\xfe\xc3\x28.test", b"\xed\xa0\x80.test", b"\xc3\xa9.test",
         b"}{\"],.test"]
n_tcp = 0
for port, data in ([(443, hello(n)) for n in names] +
                   [(80, b"GET / HTTP/1.1\r\nHost: " + n + b"\r\n\r\n") for n in names]):
    s = socket.create_connection(("203.0.113.99", port), 3)
    s.settimeout(3)
    s.sendall(data)
    try:
        s.recv(1000)
    except OSError:
        pass
    s.close()
    n_tcp += 1
dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dns.settimeout(2)
n_dns = 0
for i, n in enumerate(names):
    dns.sendto(query(n.split(b"."), 0x4000 + i), ("203.0.113.53", 53))
    try:
        dns.recvfrom(512)
        n_dns += 1
    except socket.timeout:
        pass
print(json.dumps({"tcp": n_tcp, "dns": n_dns, "names": len(names)}))
"""


@pytest.mark.parametrize("mode", ["enforce", "audit"])
def test_hostile_sni_host_and_qnames_keep_every_log_line_json(world, fsb, proxies, mode):
    """Quotes, backslashes, control bytes, CRLF, NUL, invalid UTF-8 (overlong,
    surrogates) in the SNI, the Host header and DNS query names; in audit mode
    the flows go on and their start and end records carry what was seen."""
    px = proxies(mode=mode)
    out = py(world, fsb, HOSTILE_NAMES, timeout=60)
    assert out["dns"] == out["names"], out          # every query got an answer
    wait_for(lambda: len(px.records(event="dns")) >= out["names"], 3.0, what="dns records")
    decided = "deny" if mode == "enforce" else "audit"
    wait_for(lambda: len([r for r in px.records() if r.get("verdict") == decided]) >= out["tcp"],
             3.0, what=f"{out['tcp']} {decided} records")
    px.proc.signal(signal.SIGTERM)
    wait_for(lambda: not px.proc.alive(), 12.0, what="proxy drained")
    recs = check_log(px)                            # every line: printable ASCII JSON
    raw = px.log.read_bytes().splitlines()
    assert len(recs) == len(raw)
    qnames = [r.get("qname", "") for r in recs if r["event"] == "dns"]
    # escaped, not dropped: the hostile bytes come back out of the JSON
    for needle in ('q"uote', "back\\slash", "ctl\x01\x07\x1b", "nl\r\nx", "nul\x00", "}{\"],"):
        assert any(needle in q for q in qnames), (needle, qnames)
    # none of these names exists: audit mode may ask upstream (NXDOMAIN, SERVFAIL),
    # enforce mode answers itself; nobody gets an address
    assert {r["rcode"] for r in recs if r["event"] == "dns"} <= {"NXDOMAIN", "REFUSED",
                                                                 "SERVFAIL"}, recs


# ------------------------------------------------------------------ 7. privileges

ZERO_CAPS = "0000000000000000"


def test_running_proxy_holds_nothing(world, fsb, proxies):
    """Started as root: the default user, all five capability sets empty,
    no_new_privs, a seccomp filter; and it still serves and reloads."""
    px = proxies()
    st = status(px.proc.pid)
    user = default_user()
    assert st["Uid"].split() == [str(user.pw_uid)] * 4, st["Uid"]
    assert st["Gid"].split() == [str(user.pw_gid)] * 4, st["Gid"]
    assert st["Groups"].strip() == ""
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert st[key] == ZERO_CAPS, (key, st[key])
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2", st
    assert int(st.get("Seccomp_filters", "1")) >= 1
    assert f"running as {user.pw_name} (uid {user.pw_uid}), no capabilities, no_new_privs, " \
           "seccomp on" in px.proc.log()
    # the policy is still readable after the drop: a reload takes effect
    assert curl(world, fsb, "https://www.example.test/").returncode == 0
    px.policy.write_text(POLICY.format(mode="enforce").replace("    ports: [80, 443]\n",
                                                               "    ports: [80]\n", 1))
    px.proc.signal(signal.SIGHUP)
    px.wait_record(event="reload", verdict="allow")
    assert curl(world, fsb, "https://www.example.test/").returncode != 0
    assert px.records(event="deny", host="www.example.test")[-1]["reason"] == "port_not_allowed"
    assert px.proc.alive()


def test_flow_log_reopen_after_the_drop(world, fsb, proxies):
    """logrotate moves the log and creates the new file for the proxy's user
    (`create 0640 USER GROUP`); SIGUSR1 makes the unprivileged proxy reopen it."""
    px = proxies()
    user = default_user()
    assert curl(world, fsb, "https://www.example.test/").returncode == 0
    px.wait_record(event="flow_end")
    rotated = px.log.with_name("flows.jsonl.1")
    px.log.rename(rotated)
    px.log.touch(mode=0o640)
    os.chown(px.log, user.pw_uid, user.pw_gid)
    px.proc.signal(signal.SIGUSR1)
    time.sleep(0.2)
    assert curl(world, fsb, "https://www.example.test/").returncode == 0
    new = px.wait_record(event="flow_end")
    old = [json.loads(l) for l in rotated.read_text().splitlines()]
    assert new["flow"] not in {r.get("flow") for r in old}
    assert len(px.records(event="flow_start")) == 1
    # a rotation the proxy may not follow keeps the old file in use, and says so
    px.log.rename(px.log.with_name("flows.jsonl.2"))
    px.log.parent.chmod(0o711)                      # nobody may create files here
    px.proc.signal(signal.SIGUSR1)
    wait_for(lambda: "reopening the flow log: Permission denied" in px.proc.log(), 3.0,
             what="the reopen warning")
    assert px.proc.alive()


SIDECAR_UID = 1337


def sidecar_wrap(uid=SIDECAR_UID):
    """A Kubernetes sidecar's start: its own UID, CAP_NET_ADMIN only (ambient)."""
    return ("setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all,+net_admin", "--ambient-caps=-all,+net_admin", "--")


def test_sidecar_started_unprivileged_stays_itself_and_drops_net_admin(
        world, sluice_bin, fsb, tmp_path):
    d = tmp_path / "sidecar"
    d.mkdir()
    open_path_to(d)
    os.chown(d, SIDECAR_UID, SIDECAR_UID)           # its log is its own to create
    px = Proxy(world, sluice_bin, fsb, d, policy=POLICY.format(mode="enforce"),
               listen=[f"{fsb.gw}:15001"], wrap=sidecar_wrap())
    try:
        st = status(px.proc.pid)
        assert st["Uid"].split() == [str(SIDECAR_UID)] * 4
        for key in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            assert st[key] == ZERO_CAPS, (key, st[key])
        # without CAP_SETPCAP the bounding set cannot shrink; no_new_privs and
        # the filter (no execve) leave nothing that could use it
        assert st["CapBnd"] != ZERO_CAPS
        assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2", st
        assert "(bounding set kept: no CAP_SETPCAP)" in px.proc.log()
        r = curl(world, fsb, "https://www.example.test/")
        assert r.returncode == 0 and r.stdout == "hello from www.example.test\n", r.stderr
        start = px.wait_record(event="flow_start", host="www.example.test")
        px.wait_record(event="flow_end", flow=start["flow"])      # the log is its own file
        assert [r["event"] for r in check_log(px)] == ["flow_start", "flow_end"]
    finally:
        px.proc.stop()


def test_user_switch_without_root_is_refused(world, sluice_bin, fsb, tmp_path):
    policy = open_path_to(tmp_path) / "policy.yaml"
    policy.write_text(POLICY.format(mode="enforce"))
    r = world.run(world.host, [*sidecar_wrap(), sluice_bin("sluice-proxy"), "--policy", policy,
                               "--listen", f"{fsb.gw}:15002", "--upstream-dns", ADDR.DNS4,
                               "--log", "-", "--user", "nobody"], timeout=10)
    assert r.returncode == 1, r
    assert "--user nobody: the proxy runs as uid 1337 and only root can switch users" in r.stderr
    assert "serving" not in r.stderr


def test_no_seccomp_warns(world, fsb, proxies):
    px = proxies(args=("--no-seccomp",))
    assert "--no-seccomp: running without the syscall filter; for debugging only" in \
        px.proc.log()
    st = status(px.proc.pid)
    assert st["Seccomp"] == "0" and st["NoNewPrivs"] == "1" and st["CapEff"] == ZERO_CAPS


# ------------------------------------------------------------------ 8. netsetup privileges

def test_netsetup_verify_without_cap_net_raw_exits_3(world, sluice_bin, tmp_path):
    """verify probes with a raw ICMP socket: without CAP_NET_RAW it must say so
    up front (exit 3), not half-run its probes."""
    ns = Netsetup(world, sluice_bin("sluice-netsetup"), tmp_path / "run")
    try:
        sb = ns.up()
        wrap = ("setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw", "--")
        r = ns.run("verify", sb.name, wrap=wrap)
        assert r.returncode == 3, r
        assert "verify needs CAP_NET_RAW" in r.stderr, r.stderr
        assert ns.run("verify", sb.name).returncode == 0
    finally:
        ns.cleanup()
