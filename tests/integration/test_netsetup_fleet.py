"""sluice-netsetup for fleets (issue 20): inbound forwards, peer links, byte
counters, many sandboxes in one call.

Same world and helpers as test_netsetup.py: every command runs in the `host`
namespace; fwd_server.py inside a sandbox records every connection it gets
and whom it came from, the transparent stand-in proxy records what TPROXY
hands it, and the capture server in inet proves what never left.
"""

import json
import socket
import time

import pytest

from testworld import ADDR, PYTHON, wait_for
from test_netsetup import (HERE, RUN_NETNS, assert_nothing_reached_inet, assert_same_dump,
                           host_dump, listener, netsetup_bin, ns_tool, probe, run_dir, tcp,
                           token, udp)

__all__ = ["listener", "netsetup_bin", "ns_tool", "run_dir"]     # fixtures, used by name

MIB = 1 << 20
SERVER_PORT = 8000


class Server:
    """fwd_server.py inside sandbox SB on its own address."""

    def __init__(self, world, sb, ports=(SERVER_PORT,)):
        tag = token()
        self.out = world.tmp / f"fwd-{tag}.jsonl"
        ready = world.tmp / f"fwd-{tag}.ready"
        argv = [PYTHON, str(HERE / "fwd_server.py"), "--addr", sb.addr, "--out", str(self.out),
                "--ready", str(ready)]
        for p in ports:
            argv += ["--port", str(p)]
        self.proc = world.spawn(sb.name, argv, name="fwd-server")
        wait_for(ready.exists, 5.0, what="fwd_server ready")

    def records(self):
        try:
            return [json.loads(l) for l in self.out.read_text().splitlines() if l.strip()]
        except OSError:
            return []


def client(world, ns, addr, port, op, n, src=None, timeout=15):
    """One GET N or PUT N from namespace NS (optionally from source address SRC):
    the bytes received (GET) or the server's "OK n" line (PUT); None if no connection."""
    code = f"""
import socket, sys
s = socket.socket()
s.settimeout({timeout - 3})
{"s.bind(('%s', 0))" % src if src else ""}
try:
    s.connect(({addr!r}, {port}))
except OSError as e:
    print("NOCONN", e); sys.exit(0)
s.sendall(b"{op} {n}\\n")
if "{op}" == "PUT":
    chunk = b"y" * 65536
    left = {n}
    while left:
        k = min(left, len(chunk)); s.sendall(chunk[:k]); left -= k
    print(s.makefile().readline().strip())
else:
    got = 0
    while True:
        b = s.recv(65536)
        if not b: break
        got += len(b)
    print(got)
"""
    r = world.run(ns, [PYTHON, "-c", code], timeout=timeout)
    assert r.returncode == 0, r.stderr
    out = r.stdout.strip()
    return None if out.startswith("NOCONN") else out


def forward(ns_tool, *args, rc=0):
    r = ns_tool.run("forward", *args)
    assert r.returncode == rc, r.stderr
    return r


def fwd_status(ns_tool, name):
    return ns_tool.status(name)[0]["forwards"]


# ------------------------------------------------------------------ forwards

def test_forward_reaches_the_sandbox_and_opens_nothing_outward(world, ns_tool, listener,
                                                               capture):
    """A forward on 127.0.0.1 of the host reaches the server inside; its counters see a
    10 MiB upload and download within 1 %; the sandbox sees the gateway as the client;
    the sandbox's server cannot use the forward to open anything; unforward and down
    leave no residue; verify catches a deleted forward rule and a rerun repairs it."""
    before = host_dump(world, ns_tool)
    sb = ns_tool.up()
    lst = listener(capture.host, [sb.gw])
    srv = Server(world, sb)
    forward(ns_tool, sb.name, "18080", str(SERVER_PORT))
    # each way is measured alone (an upload's acks are bytes out, a download's in), next
    # to what the host-side interface itself counted (Ethernet frames: 14 bytes more
    # per packet than the IP packets nft counts)
    def snap():
        link = json.loads(world.run(world.host, ["ip", "-j", "-s", "link", "show", "dev",
                                                 sb.host_if], check=True).stdout)[0]["stats64"]
        return ns_tool.counters(sb.name), fwd_status(ns_tool, sb.name)[0], link

    c0, f0, l0 = snap()
    assert client(world, world.host, "127.0.0.1", 18080, "PUT", 10 * MIB) == f"OK {10 * MIB}"
    c1, f1, l1 = snap()
    assert client(world, world.host, "127.0.0.1", 18080, "GET", 10 * MIB) == str(10 * MIB)
    c2, f2, l2 = snap()
    recs = srv.records()
    assert [r["op"] for r in recs] == ["PUT", "GET"] and recs[0]["bytes"] == 10 * MIB
    assert {r["peer"] for r in recs} == {sb.gw}            # masqueraded: never the client
    # What crossed is the 10 MiB plus headers and whatever TCP sent again (veth reorders
    # now and then, and the sender's fast retransmits are real bytes on the link): the
    # counters must agree with the interface to 1 %, and carry the 10 MiB, not 10 % more.
    for what, dc, dl in (
            ("in", (c1["bytes_in"] - c0["bytes_in"], c1["packets_in"] - c0["packets_in"]),
             (l1["tx"]["bytes"] - l0["tx"]["bytes"], l1["tx"]["packets"] - l0["tx"]["packets"])),
            ("out", (c2["bytes_out"] - c1["bytes_out"], c2["packets_out"] - c1["packets_out"]),
             (l2["rx"]["bytes"] - l1["rx"]["bytes"], l2["rx"]["packets"] - l1["rx"]["packets"]))):
        wire = dl[0] - 14 * dl[1]
        assert abs(dc[0] - wire) <= 0.01 * wire, (what, dc, dl)
        assert 10 * MIB < dc[0] < 10 * MIB * 1.1, (what, dc)
    # the forward's own counters see the same flows (nothing else crossed meanwhile)
    assert abs((f1["bytes_in"] - f0["bytes_in"]) - (c1["bytes_in"] - c0["bytes_in"])) <= 0.01 * 10 * MIB
    assert abs((f2["bytes_out"] - f1["bytes_out"]) - (c2["bytes_out"] - c1["bytes_out"])) <= 0.01 * 10 * MIB
    assert c2["packets_in"] > c0["packets_in"] and c2["packets_out"] > c0["packets_out"]
    f = f2
    assert (f["proto"], f["addr"], f["port"], f["sandbox_port"], f["from"]) == \
        ("tcp", "127.0.0.1", 18080, SERVER_PORT, [])
    assert f["connections"] == 2
    text = ns_tool.run("status", sb.name).stdout
    assert "forward tcp 127.0.0.1:18080 -> port 8000 from any: 2 connections" in text, text

    # from the sandbox, its server's port opens nothing: TCP from port 8000 is TPROXYed
    # to the (stand-in) proxy like any other, UDP from it dropped; nothing reaches inet
    srv.proc.stop()
    code = f"""
import socket
for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('{sb.addr}', {SERVER_PORT}))
    s.settimeout(2)
    try:
        if kind == socket.SOCK_STREAM:
            s.connect(({ADDR.CAPTURE4!r}, 443)); s.sendall(b"from-8000")
        else:
            s.sendto(b"from-8000", ({ADDR.CAPTURE4!r}, 53))
    except OSError as e:
        print(e)
    s.close()
"""
    world.run(sb.name, [PYTHON, "-c", code], timeout=10, check=True)
    hit = lst.tcp_with("from-8000")
    assert hit["orig_dst"].startswith(ADDR.CAPTURE4), hit
    time.sleep(0.3)
    assert_nothing_reached_inet(world)

    # verify sees the forward; a deleted rule is caught, and forward again repairs it
    assert ns_tool.run("verify", sb.name).returncode == 0
    rules = json.loads(world.run(world.host, ["nft", "-j", "-a", "list", "chain", "inet",
                                               "sluice", "forwards"], check=True).stdout)
    handle = [x["rule"]["handle"] for x in rules["nftables"] if "rule" in x][0]
    world.run(world.host, ["nft", "delete", "rule", "inet", "sluice", "forwards", "handle",
                           str(handle)], check=True)
    v = ns_tool.run("verify", sb.name)
    assert v.returncode == 1 and "chain forwards (the rules of" in v.stdout, v.stdout
    forward(ns_tool, sb.name, "18080", str(SERVER_PORT))
    assert ns_tool.run("verify", sb.name).returncode == 0

    # unforward: gone, nothing arrives any more; down: nothing left at all
    srv = Server(world, sb)
    assert ns_tool.run("unforward", sb.name, "18080").returncode == 0
    assert fwd_status(ns_tool, sb.name) == []
    assert client(world, world.host, "127.0.0.1", 18080, "GET", 10) is None
    assert srv.records() == []
    assert ns_tool.run("unforward", sb.name, "18080").returncode == 0    # again: no-op
    ns_tool.down(sb.name)
    assert_same_dump(before, host_dump(world, ns_tool))


def test_forward_from_only_admits_its_sources(world, ns_tool, netns):
    """--from: on loopback, 127.0.0.2 gets in and 127.0.0.1 does not; from another host
    through the host's inet-facing address, the listed client gets in and another
    does not. The proof is at the sandbox's server: what arrived, from whom."""
    sb = ns_tool.up()
    srv = Server(world, sb)
    forward(ns_tool, sb.name, "18081", str(SERVER_PORT), "--from", "127.0.0.2/32")
    assert client(world, world.host, "127.0.0.1", 18081, "GET", 5, src="127.0.0.1") is None
    assert client(world, world.host, "127.0.0.1", 18081, "GET", 5, src="127.0.0.2") == "5"
    assert len(srv.records()) == 1

    # remote clients: the host forwards from its exchange interface (the operator's job,
    # done here in the test's own host namespace and undone after)
    good, bad = netns(role="c" + token()[:4]), netns(role="c" + token()[:4])
    good_addr = world.links[good].addr4
    dev = world.run(world.host, ["ip", "-o", "route", "get", ADDR.INET_GW4],
                    check=True).stdout.split(" dev ")[1].split()[0]
    key = f"net.ipv4.conf.{dev}.forwarding"
    old = world.run(world.host, ["sysctl", "-n", key], check=True).stdout.strip()
    world.run(world.host, ["sysctl", "-q", f"{key}=1"], check=True)
    try:
        forward(ns_tool, sb.name, f"{ADDR.HOST4}:18082", str(SERVER_PORT), "--from",
                f"{good_addr}/32")
        assert client(world, good, ADDR.HOST4, 18082, "PUT", 1000) == "OK 1000"
        assert client(world, bad, ADDR.HOST4, 18082, "GET", 5, timeout=6) is None
    finally:
        world.run(world.host, ["sysctl", "-q", f"{key}={old}"], check=True)
    recs = srv.records()
    assert len(recs) == 2 and recs[1]["op"] == "PUT", recs
    [_, f] = fwd_status(ns_tool, sb.name)
    assert f["from"] == [f"{good_addr}/32"] and f["connections"] == 1, f


def test_forward_refuses_what_has_no_network_or_is_taken(world, ns_tool):
    """An isolated sandbox or a missing one; the same port forwarded to another sandbox."""
    iso = ns_tool.name()
    assert ns_tool.run("up", iso, "--isolated").returncode == 0
    r = ns_tool.run("forward", iso, "18083", "80")
    assert r.returncode == 2 and "isolated: it has no network" in r.stderr, r.stderr
    r = ns_tool.run("forward", "nosuch", "18083", "80")
    assert r.returncode == 1 and "no sandbox named nosuch" in r.stderr, r.stderr
    a, b = ns_tool.up(), ns_tool.up()
    forward(ns_tool, a.name, "18083", "80")
    r = ns_tool.run("forward", b.name, "18083", "81")
    assert r.returncode == 1 and f"is forwarded to sandbox {a.name}" in r.stderr, r.stderr
    forward(ns_tool, b.name, "18083", "81", "--udp")      # the other protocol is free


# ------------------------------------------------------------------ links

def test_link_opens_one_way_to_the_linked_ports_only(world, ns_tool, listener, capture):
    """A reaches B on the linked port only (another port of B goes to A's proxy like any
    destination); B cannot reach A; C reaches neither; unlink and down remove it."""
    before = host_dump(world, ns_tool)
    a, b, c = ns_tool.up(), ns_tool.up(), ns_tool.up()
    lst = listener(capture.host, [a.gw, b.gw, c.gw])
    srv_b = Server(world, b, ports=(9000, 9001))
    srv_a = Server(world, a, ports=(9000,))
    assert ns_tool.run("link", a.name, b.name, "--ports", "9000").returncode == 0

    assert client(world, a.name, b.addr, 9000, "GET", 1000) == "1000"
    assert [(r["peer"], r["local_port"]) for r in srv_b.records()] == [(a.addr, 9000)]
    res = probe(world, a.name, tcp(b.addr, 9001, data="a-to-b-9001"))
    assert res[0]["connected"]                       # the stand-in proxy took it ...
    assert lst.tcp_with("a-to-b-9001")["orig_dst"].startswith(b.addr)
    assert len(srv_b.records()) == 1                 # ... and B's server never saw it
    probe(world, b.name, tcp(a.addr, 9000, data="b-to-a"))
    probe(world, c.name, tcp(b.addr, 9000, data="c-to-b"), tcp(a.addr, 9000, data="c-to-a"))
    assert srv_a.records() == [] and len(srv_b.records()) == 1
    assert ns_tool.status(a.name)[0]["links"] == [{"to": b.name, "ports": [9000]}]
    assert ns_tool.run("verify", a.name).returncode == 0
    assert_nothing_reached_inet(world)

    assert ns_tool.run("unlink", a.name, b.name).returncode == 0
    probe(world, a.name, tcp(b.addr, 9000, data="after-unlink"))
    assert len(srv_b.records()) == 1 and lst.tcp_with("after-unlink")
    assert ns_tool.status(a.name)[0]["links"] == []

    # down of either side removes the link: element, record, the other's sysctls
    assert ns_tool.run("link", a.name, b.name, "--ports", "9000,9001").returncode == 0
    assert ns_tool.run("link", c.name, a.name, "--ports", "9000").returncode == 0
    ns_tool.down(a.name)
    assert ns_tool.status(c.name)[0]["links"] == []
    sets = world.run(world.host, ["nft", "list", "set", "inet", "sluice", "links"],
                     check=True).stdout
    assert "elements" not in sets, sets
    for n in (b.name, c.name):
        ns_tool.down(n)
    assert_same_dump(before, host_dump(world, ns_tool))


# ------------------------------------------------------------------ many per call

def test_up_and_down_of_100_in_one_call(world, ns_tool):
    """100 names, one invalid in the middle: 99 up, 1 reported, no residue for it;
    down of all 100 in one call: zero residue."""
    before = host_dump(world, ns_tool)
    names = [ns_tool.name() for _ in range(99)]
    bad = "Bad_Name"
    argv = names[:50] + [bad] + names[50:]
    r = ns_tool.run("up", *argv, "--json", timeout=120)
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert [o["name"] for o in out] == argv
    assert [o["name"] for o in out if not o["ok"]] == [bad]
    assert "must be 1-15 characters" in out[50]["error"]
    assert f"up {bad}: NAME '{bad}'" in r.stderr
    subnets = {o["sandbox"]["sandbox_addr"] for o in out if o["ok"]}
    assert len(subnets) == 99
    assert sorted(ns_tool.records()) == sorted(names)
    st = ns_tool.status()
    assert {s["name"] for s in st} == set(names) and all(s["link_up"] for s in st)
    # every one of them works: TCP from the last one is intercepted (reset, no proxy)
    res = probe(world, names[-1], tcp(ADDR.CAPTURE4, 443, timeout=1))
    assert res[0]["connected"] is False

    r = ns_tool.run("down", *argv, "--json", timeout=120)
    assert r.returncode == 1                         # the bad name is reported again
    out = json.loads(r.stdout)
    assert all(o["ok"] and o["found"] for o in out if o["name"] != bad)
    assert ns_tool.records() == []
    assert_same_dump(before, host_dump(world, ns_tool))


def test_batches_from_files_in_parallel_take_turns(world, ns_tool):
    """--from-file (one NAME and its options a line), two calls at once: the lock
    serialises them, subnets never clash, a bad line fails alone; then all go."""
    before = host_dump(world, ns_tool)
    sets = [[ns_tool.name() for _ in range(15)] for _ in range(2)]
    files = []
    for k, names in enumerate(sets):
        f = world.tmp / f"batch-{token()}.txt"
        lines = [f"{n} --max-conntrack {100 + i}" for i, n in enumerate(names)]
        lines.insert(3, "# a comment, then a blank line and a bad option")
        lines.insert(4, "")
        lines.insert(5, f"{names[0]}x --bogus")
        f.write_text("\n".join(lines) + "\n")
        files.append(f)
    env = dict(ns_tool.env)
    procs = [world.spawn(world.host, [ns_tool.bin, "up", "--from-file", str(f), "--json"],
                         name=f"batch{k}", env=env, nsenter=True) for k, f in enumerate(files)]
    for p in procs:
        wait_for(lambda: not p.alive(), 60.0, what="batch up")
    outs = [json.loads(p.log()[p.log().index("["):p.log().rindex("]") + 1]) for p in procs]
    for names, out in zip(sets, outs):
        assert [o["name"] for o in out if o["ok"]] == names
        [badrec] = [o for o in out if not o["ok"]]
        assert badrec["error"] == "line 6: up: unknown or incomplete option '--bogus'"
    addrs = [o["sandbox"]["sandbox_addr"] for out in outs for o in out if o["ok"]]
    assert len(set(addrs)) == 30
    lst = world.tmp / f"down-{token()}.txt"
    lst.write_text("\n".join(sets[0] + sets[1]) + "\n")
    r = ns_tool.run("down", "--from-file", str(lst), timeout=60)
    assert r.returncode == 0 and r.stdout.count(" ok\n") == 30, r.stdout + r.stderr
    assert ns_tool.records() == []
    assert not any((RUN_NETNS / n).exists() for names in sets for n in names)
    assert_same_dump(before, host_dump(world, ns_tool))


def test_down_of_many_keeps_the_others_and_their_links(world, ns_tool, listener, capture):
    """Down of two of four in one call: the others keep working, a link between the
    two that stay survives, links to those gone are dropped from the records."""
    a, b, c, d = (ns_tool.up() for _ in range(4))
    for x, y in ((a, b), (c, d), (c, a)):
        assert ns_tool.run("link", x.name, y.name, "--ports", "9000").returncode == 0
    forward(ns_tool, a.name, "18090", "80")
    r = ns_tool.run("down", a.name, b.name)
    assert r.returncode == 0, r.stderr
    assert ns_tool.status(c.name)[0]["links"] == [{"to": d.name, "ports": [9000]}]
    assert ns_tool.run("verify", c.name).returncode == 0
    assert ns_tool.run("verify", d.name).returncode == 0
    rules = world.run(world.host, ["nft", "list", "chain", "inet", "sluice", "forwards"],
                      check=True).stdout
    assert a.name not in rules
    srv = Server(world, d, ports=(9000,))
    assert client(world, c.name, d.addr, 9000, "GET", 10) == "10"
    assert len(srv.records()) == 1
