#!/usr/bin/env python3
"""sluice-netsetup benchmark: sandbox lifecycle against a shell reference, and
connections/s through interception with 1 against many sandboxes, in one run.

Everything happens in network namespaces this script makes ("host" worlds
named slb<token>-<tag>) and in the sandbox namespaces made inside them; nothing
runs in the machine's own namespace but `ip netns add/del` and `ip -n`. Every
namespace, /etc/netns entry, process and temp dir it made is removed at the
end, after a failure, on Ctrl-C or SIGTERM. See tests/bench/README.md.

usage: bench_netsetup.py [--quick] [--binary PATH] [--strace] [--fleet N] [--json FILE]
"""

import argparse
import difflib
import os
import random
import re
import select
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from benchlib import log

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
REFERENCE = HERE / "netsetup_reference.sh"
HELPERS = ("conn_client", "tproxy_sink")
RUN_NETNS = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")

GOAL_MS = 5.0           # wall ms per up and per down
GOAL_SPEEDUP = 5.0      # sluice vs the shell reference, at every N
GOAL_SCALE = 1.5        # per-sandbox cost at the largest N / at N=10
GOAL_CONN = 0.9         # connections/s with many sandboxes / with one
GOAL_BATCH_UP = 1 / 3   # one call for N names / one process per name, per sandbox
GOAL_BATCH_DOWN = 1 / 2
GOAL_BATCH_SCRIPT = 10.0    # the shell script / one call, per sandbox
BATCH_ROUNDS = 3
DNS_PROBE = r"""
import socket, struct, sys, time
q = struct.pack(">HHHHHH", 0x5c5c, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l for l in b"sluice.internal".split(b".")) + b"\0"
q += struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.005)
end = time.monotonic() + 5
while time.monotonic() < end:
    try:
        s.sendto(q, (sys.argv[1], 53))
        if s.recv(512)[:2] == q[:2]:
            sys.exit(0)
    except OSError:
        time.sleep(0.002)
sys.exit(1)
"""
SCALE_BASE_N = 10
FLOOR_VETHS = 7         # bare veth pairs deleted to show the kernel's share of `down`

PROXY_PORT = 15001      # sluice-netsetup's default --proxy-port
CONN_PORT = 443
CONN_DST = "203.0.113.{}"   # TEST-NET-3: TPROXY takes it; no route would
CMD_TIMEOUT = 60.0


def sh(argv, check=True, timeout=CMD_TIMEOUT, **kw):
    """A command in this process's own namespace: only `ip netns ...`/`ip -n`."""
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def ns_id(path):
    st = os.stat(path)
    return st.st_dev, st.st_ino


class Host:
    """One simulated host: a network namespace plus sluice's run directory."""

    def __init__(self, name, rundir):
        self.name = name
        self.path = RUN_NETNS / name
        self.rundir = rundir
        self.env = dict(os.environ, SLUICE_RUN_DIR=str(rundir),
                        SLUICE_BENCH_NETNS=str(self.path))


class Bench:
    def __init__(self, args):
        self.args = args
        self.token = "".join(random.choice(string.ascii_lowercase + string.digits)
                             for _ in range(4))
        self.name_re = re.compile(rf"^(slb|sb|sr|so){self.token}-[a-z0-9]+$")
        self.tmp = Path(tempfile.mkdtemp(prefix=f"sluice-bench-{self.token}-"))
        self.hosts = []
        self.procs = []
        self.bin = {}
        self.deadline = time.monotonic() + args.max_seconds
        self.cleaned = False
        self.own_netns = ns_id("/proc/self/ns/net")
        self.findings = []      # correctness problems: they make the exit status 1

    # ---- names and safety ----

    def host_name(self, tag):
        return f"slb{self.token}-{tag}"

    def sandbox(self, kind, i):
        return f"{kind}{self.token}-{i}"     # <= 12 chars: host_if "sl-NAME" fits

    def _ours(self, name):
        if not self.name_re.match(name):
            raise RuntimeError(f"refusing to touch namespace {name!r}: not this run's")
        path = RUN_NETNS / name
        if not path.exists() or ns_id(path) == self.own_netns:
            raise RuntimeError(f"{path} is missing or is this process's own namespace")
        return path

    def in_ns(self, name, argv, env=None, check=True, timeout=CMD_TIMEOUT):
        """Runs ARGV inside namespace NAME; returns (wall ms, CompletedProcess)."""
        if time.monotonic() > self.deadline:
            raise RuntimeError(f"time limit of {self.args.max_seconds} s reached")
        full = ["nsenter", f"--net={self._ours(name)}", "--", *argv]
        t0 = time.perf_counter()
        r = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=env)
        ms = (time.perf_counter() - t0) * 1e3
        if check and r.returncode != 0:
            raise RuntimeError(f"in {name}: {' '.join(argv)}: exit {r.returncode}: "
                               f"{(r.stderr or r.stdout).strip()}")
        return ms, r

    def new_host(self, tag):
        name = self.host_name(tag)
        self.hosts.append(name)             # before it exists: cleanup tries it anyway
        sh(["ip", "netns", "add", name])
        sh(["ip", "-n", name, "link", "set", "lo", "up"])
        self._ours(name)
        rundir = self.tmp / f"run-{tag}"
        rundir.mkdir()
        return Host(name, rundir)

    def drop_host(self, host):
        sh(["ip", "netns", "del", host.name], check=False)
        self.hosts.remove(host.name)

    # ---- cleanup: everything this run made, whatever state it is in ----

    def cleanup(self):
        if self.cleaned:
            return
        self.cleaned = True
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for p in self.procs:
                if p.poll() is None:
                    p.kill()
                    try:
                        p.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        pass
            mine = [n for n in self._listed() if self.name_re.match(n)]
            # sandboxes first (their netns mounts), then the hosts, whose deletion
            # takes the veths, addresses, routes, rules and nft table with them
            for n in sorted(mine, key=lambda n: n.startswith("slb")):
                sh(["ip", "netns", "del", n], check=False)
            for n in self.hosts:
                if (RUN_NETNS / n).exists():
                    sh(["ip", "netns", "del", n], check=False)
            if ETC_NETNS.is_dir():
                for d in ETC_NETNS.iterdir():
                    if self.name_re.match(d.name):
                        shutil.rmtree(d, ignore_errors=True)
            shutil.rmtree(self.tmp, ignore_errors=True)
            left = [n for n in self._listed() if self.name_re.match(n)]
            if left:
                log(f"WARNING: namespaces left behind: {' '.join(left)}")
            else:
                log("cleanup: no namespace of this run is left (ip netns list checked)")
        finally:
            signal.signal(signal.SIGINT, old)

    @staticmethod
    def _listed():
        r = sh(["ip", "netns", "list"], check=False)
        names = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
        if RUN_NETNS.is_dir():
            names |= {p.name for p in RUN_NETNS.iterdir()}
        return sorted(names)

    # ---- tools ----

    def build_helpers(self):
        for h in HELPERS:
            out = self.tmp / h
            sh(["cc", "-O2", "-Wall", "-o", str(out), str(HERE / f"{h}.c")])
            self.bin[h] = str(out)

    def up_argv(self, tool, name, slot):
        if tool == "sluice":
            return [self.args.binary, "up", name]
        return ["bash", str(REFERENCE), "up", name, str(slot)]

    def down_argv(self, tool, name):
        if tool == "sluice":
            return [self.args.binary, "down", name]
        return ["bash", str(REFERENCE), "down", name]

    # ---- checks ----

    def snapshot(self, host, sandboxes):
        """What a world holds, with this run's names replaced, for comparisons."""
        cmds = ("nft list ruleset; ip rule; ip route show table all; ip -6 route show "
                "table all; ip -o addr; ip -o link | sed 's/ link\\/ether.*//'; "
                "sysctl -a 2>/dev/null | grep -E '^net.ipv6.conf.*(accept_ra|disable_ipv6) '")
        _, r = self.in_ns(host.name, ["sh", "-c", cmds])
        text = r.stdout
        for sb in sandboxes:
            _, ri = self.in_ns(sb, ["sh", "-c", cmds])
            text += f"--- inside {sb}\n" + ri.stdout
            resolv = ETC_NETNS / sb / "resolv.conf"
            text += "".join(l for l in resolv.read_text().splitlines(True)
                            if not l.startswith("#")) if resolv.exists() else "no resolv.conf\n"
        text = re.sub(rf"s[bro]{self.token}-", "NAME-", text)
        text = re.sub(r"@if\d+|link-netns \S+|link-netnsid \d+|^\d+: ", "", text, flags=re.M)
        text = re.sub(r"valid_lft.*", "", text)
        return text

    def residue(self, host, names):
        """What is left in HOST and on disk after every down: should be nothing."""
        problems = []
        _, r = self.in_ns(host.name, ["sh", "-c", "nft list ruleset; ip rule; "
                                      "ip route show table all; ip -o link"])
        for line in r.stdout.splitlines():
            if not line.strip() or re.match(r"^(0|32766|32767):\s", line):
                continue
            if re.search(r"\bdev lo\b.*table local|^1: lo:", line) and "21324" not in line:
                continue
            problems.append(line.strip())
        for n in names:
            if (RUN_NETNS / n).exists():
                problems.append(f"{RUN_NETNS / n}")
            if (ETC_NETNS / n).exists():
                problems.append(f"{ETC_NETNS / n}")
        for sub in ("sandboxes", "reference"):
            d = host.rundir / sub
            if d.is_dir() and any(d.iterdir()):
                problems.append(f"records left in {d}: {sorted(p.name for p in d.iterdir())}")
        return problems

    # ---- 1. lifecycle ----

    def lifecycle(self, n, conn_test):
        """Ups N sandboxes with each tool, interleaved call by call so that both see
        the same machine load, then downs them; ms per call. Below N=10 the cycle
        is repeated so that every figure is a median of at least 10 calls."""
        hosts = {"sluice": self.new_host(f"s{n}"), "script": self.new_host(f"r{n}")}
        kinds = {"sluice": "sb", "script": "sr"}
        names = {t: [self.sandbox(kinds[t], i) for i in range(n)] for t in hosts}
        ups = {t: [] for t in hosts}
        downs = {t: [] for t in hosts}
        conn = extra = None
        for cycle in range(max(1, SCALE_BASE_N // n)):
            c, e = self._cycle(n, hosts, names, ups, downs, conn_test and cycle == 0,
                               cycle == 0)
            conn, extra = conn or c, extra or e
        for t, h in hosts.items():
            self.drop_host(h)
        return ups, downs, conn, extra

    def _cycle(self, n, hosts, names, ups, downs, conn_test, first):
        gws = []
        for i in range(n):
            order = ("sluice", "script") if i % 2 == 0 else ("script", "sluice")
            for t in order:
                ms, r = self.in_ns(hosts[t].name, self.up_argv(t, names[t][i], i),
                                   env=hosts[t].env)
                ups[t].append(ms)
                if t == "sluice":
                    kv = dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l)
                    gws.append(kv["proxy_listen"].rsplit(":", 1)[0])
        if n == 1 and first:
            a = self.snapshot(hosts["sluice"], names["sluice"])
            b = self.snapshot(hosts["script"], names["script"])
            if a != b:
                diff = "".join(difflib.unified_diff(a.splitlines(True), b.splitlines(True),
                                                    "sluice", "script", n=0))
                log("the reference does not build the same world as sluice:\n" + diff)
                self.findings.append("netsetup_reference.sh no longer builds what sluice "
                                     "builds (see the diff above): its ratios mean little")
            else:
                log("check: the reference builds what sluice builds (nft ruleset, rules, "
                    "routes, addresses, links, sysctls, resolv.conf; inside and out)")
        extra = None
        if self.args.strace and n == max(self.args.sizes) and first:
            extra = self.strace_one(hosts["sluice"], n)
        conn = self.connections(hosts["sluice"], names["sluice"], gws) if conn_test else None
        for i in range(n):
            order = ("sluice", "script") if i % 2 == 0 else ("script", "sluice")
            for t in order:
                ms, _ = self.in_ns(hosts[t].name, self.down_argv(t, names[t][i]),
                                   env=hosts[t].env)
                downs[t].append(ms)
        for t, h in hosts.items():
            left = self.residue(h, names[t])
            if left:
                self.findings.append(f"{t} at N={n}: residue after down: {left[:10]}")
        return conn, extra

    def strace_one(self, host, n):
        """One more up and down at N installed, under strace -c; their summaries."""
        name = self.sandbox("sb", n)
        out = {}
        for cmd, argv in (("up", self.up_argv("sluice", name, n)),
                          ("down", self.down_argv("sluice", name))):
            trace = self.tmp / f"strace-{cmd}.txt"
            self.in_ns(host.name, ["strace", "-f", "-c", "-w", "-o", str(trace), *argv],
                       env=host.env)
            out[cmd] = trace.read_text()
        return out

    # ---- 1b. many sandboxes in one call ----

    def batch(self, n):
        """`up` of N names in one call, then `down` of them in one call, BATCH_ROUNDS
        times in a fresh world; ms per sandbox of each call."""
        h = self.new_host(f"b{n}")
        ups, downs = [], []
        for rnd in range(BATCH_ROUNDS):
            names = [self.sandbox("sb", 1000 + i) for i in range(n)]
            ms, r = self.in_ns(h.name, [self.args.binary, "up", *names], env=h.env,
                               check=False, timeout=CMD_TIMEOUT * 4)
            if r.returncode != 0 or r.stdout.count(" ok\n") != n:
                self.findings.append(f"batch up of {n}: exit {r.returncode}: "
                                     f"{r.stderr.strip()[:300]}")
            ups.append(ms / n)
            ms, r = self.in_ns(h.name, [self.args.binary, "down", *names], env=h.env,
                               check=False, timeout=CMD_TIMEOUT * 4)
            if r.returncode != 0:
                self.findings.append(f"batch down of {n}: exit {r.returncode}: "
                                     f"{r.stderr.strip()[:300]}")
            downs.append(ms / n)
            left = self.residue(h, names)
            if left:
                self.findings.append(f"batch at N={n}: residue after down: {left[:10]}")
        self.drop_host(h)
        return ups, downs

    # ---- 1c. from `up` to a fresh proxy's first DNS answer ----

    def dns_boot(self):
        """The fleet: for --fleet sandboxes, one after the other, `up` (one process),
        start a sluice-proxy on its addresses and ask its DNS from inside the sandbox
        every 5 ms until it answers (ms from the start of `up` to that answer); then,
        with every proxy idle, their proportional set sizes (PSS: a page shared by
        K processes counts 1/K to each), summed, per sandbox. Returns (the times,
        {"pss_kib": per sandbox, "rss_kib": median per proxy, "n": proxies})."""
        h = self.new_host("dns")
        policy = self.tmp / "boot-policy.yaml"
        policy.write_text("version: 1\negress:\n  - domain: example.com\n")
        times, names, procs = [], [], []
        try:
            for i in range(self.args.fleet):
                name = self.sandbox("sb", 2000 + i)
                names.append(name)
                t0 = time.perf_counter()
                _, r = self.in_ns(h.name, [self.args.binary, "up", name], env=h.env)
                kv = dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l)
                argv = ["nsenter", f"--net={self._ours(h.name)}", "--",
                        self.args.proxy_binary, "--policy", str(policy),
                        "--listen", kv["proxy_listen"], "--dns-listen", kv["dns_listen"],
                        "--upstream-dns", "127.0.0.1:9", "--id", name,
                        "--log", str(self.tmp / f"{name}.jsonl"), "--foreground"]
                p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
                procs.append(p)
                self.procs.append(p)
                gw = kv["gateway_addr"].split("/")[0]
                _, r = self.in_ns(name, [sys.executable, "-c", DNS_PROBE, gw], check=False)
                if r.returncode != 0:
                    self.findings.append(f"dns boot: no answer from {name}'s proxy in 5 s")
                    continue
                times.append((time.perf_counter() - t0) * 1e3)
            time.sleep(1.0)                 # every proxy idle, its start-up done
            live = [p.pid for p in procs if p.poll() is None]
            if len(live) != len(procs):
                self.findings.append(f"fleet: {len(procs) - len(live)} proxies exited")
            mem = {"n": len(live),
                   "pss_kib": sum(smaps_kib(pid, "Pss") for pid in live) / max(1, len(live)),
                   "rss_kib": statistics.median(smaps_kib(pid, "Rss") for pid in live)}
        finally:
            for p in procs:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                self.procs.remove(p)
            self.in_ns(h.name, [self.args.binary, "down", *names], env=h.env, check=False)
            self.drop_host(h)
        return times, mem

    # ---- 2. connections through interception ----

    def start_sink(self, host, addrs):
        argv = ["nsenter", f"--net={self._ours(host.name)}", "--", self.bin["tproxy_sink"],
                str(PROXY_PORT), *addrs]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        ready, _, _ = select.select([p.stdout], [], [], 10)
        line = p.stdout.readline() if ready else ""
        if line.strip() != "ready":
            p.kill()
            raise RuntimeError(f"tproxy_sink in {host.name} did not start: {p.stderr.read()}")
        return p

    def stop_sink(self, p):
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=10)
        m = re.search(r"accepted=(\d+) orig_dst=(\d+)", out)
        if not m:
            raise RuntimeError(f"tproxy_sink: no totals ({err.strip()})")
        return int(m.group(1)), int(m.group(2))

    def client(self, sandbox, dst, count):
        a = self.args
        _, r = self.in_ns(sandbox, [self.bin["conn_client"], dst, str(CONN_PORT), str(count),
                                    str(a.concurrency), str(a.conn_seconds)], check=False,
                          timeout=a.conn_seconds + 30)
        m = re.search(r"ok=(\d+) failed=(\d+) seconds=([\d.]+) rate=([\d.]+)", r.stdout)
        if r.returncode != 0 or not m:
            raise RuntimeError(f"conn_client in {sandbox} to {dst}: exit {r.returncode}: "
                               f"{r.stdout.strip()} {r.stderr.strip()}")
        return int(m.group(1)), float(m.group(4))

    def connections(self, many_host, many_names, many_gws):
        """conn/s from the last of MANY's sandboxes, and from a world with one."""
        a = self.args
        one = self.new_host("one")
        one_name = self.sandbox("so", 0)
        _, r = self.in_ns(one.name, self.up_argv("sluice", one_name, 0), env=one.env)
        one_gw = dict(l.split("=", 1) for l in r.stdout.splitlines()
                      if "=" in l)["proxy_listen"].rsplit(":", 1)[0]
        worlds = {1: (one_name, self.start_sink(one, [one_gw])),
                  len(many_names): (many_names[-1], self.start_sink(many_host, many_gws))}
        sent = {k: 0 for k in worlds}
        rates = {k: [] for k in worlds}
        keys = list(worlds)
        for k in keys:                                  # warm-up, not counted
            ok, _ = self.client(worlds[k][0], CONN_DST.format(9), min(1000, a.conns))
            sent[k] += ok
        for rnd in range(a.rounds):
            # a fresh destination each round keeps every 4-tuple new; the two worlds
            # run back to back, in alternating order, so each round is a fair pair
            dst = CONN_DST.format(10 + rnd)
            for k in (keys if rnd % 2 == 0 else keys[::-1]):
                ok, rate = self.client(worlds[k][0], dst, a.conns)
                sent[k] += ok
                rates[k].append(rate)
        for k, (name, sink) in worlds.items():
            accepted, orig = self.stop_sink(sink)
            self.procs.remove(sink)
            if accepted != sent[k] or orig != accepted:
                self.findings.append(f"connections with {k} installed: the client finished "
                                     f"{sent[k]}, the listener accepted {accepted}, "
                                     f"{orig} with the original destination")
        self.in_ns(one.name, self.down_argv("sluice", one_name), env=one.env)
        self.drop_host(one)
        return {k: med(v) for k, v in rates.items()}, rates

    def floors(self):
        """What any tool pays: `nsenter --net=HOST true` (every timed call includes
        it), `ip` doing nothing, and the kernel deleting a bare veth pair."""
        h = self.new_host("f")
        out = {"spawn": med([self.in_ns(h.name, ["true"])[0] for _ in range(21)]),
               "ip": med([self.in_ns(h.name, ["ip", "-o", "link", "show", "lo"])[0]
                          for _ in range(11)])}
        for i in range(FLOOR_VETHS):
            self.in_ns(h.name, ["ip", "link", "add", f"fl{i}", "type", "veth", "peer", "name",
                                f"flp{i}"])
            self.in_ns(h.name, ["ip", "link", "set", f"fl{i}", "up"])
        out["veth_del"] = med([self.in_ns(h.name, ["ip", "link", "del", f"fl{i}"])[0]
                               for i in range(FLOOR_VETHS)])
        self.drop_host(h)
        return out


def mean(v):
    return sum(v) / len(v)


def med(v):
    return statistics.median(v)


def tail(v):
    """Median of the last 10% of the calls (at least 5): the cost with ~N installed."""
    return statistics.median(v[-max(5, len(v) // 10):])


def verdict(ok):
    return "PASS" if ok else "MISS"


def smaps_kib(pid, key):
    """KEY (Pss, Rss...) of PID from /proc/PID/smaps_rollup, in KiB."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/{pid}/smaps_rollup")


def p95(v):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))]


def report_batch(results, batches, boot, goals):
    if batches:
        log()
        log(f"many in one call: ms per sandbox of one `up`/`down` with all N names "
            f"(median of {BATCH_ROUNDS} rounds, range),")
        log("next to one process per sandbox (the medians above, same run) and the script")
        log(f"{'N':>5} | {'up: call':>9} {'range':>13} {'/proc':>6} {'script/':>8} | "
            f"{'down: call':>10} {'range':>13} {'/proc':>6} {'script/':>8}")
        for n, (bu, bd) in sorted(batches.items()):
            ups, downs = results[n]
            cols = []
            for b, per in ((bu, ups), (bd, downs)):
                cols.append(f"{med(b):9.2f} {min(b):6.2f}-{max(b):6.2f} "
                            f"{med(b) / med(per['sluice']):6.2f} "
                            f"{med(per['script']) / med(b):7.1f}x")
            log(f"{n:>5} | {cols[0]} | {cols[1]}")
            goals.append((f"one call up at N={n} <= 1/3 of one process each",
                          f"{med(bu) / med(ups['sluice']):.2f}",
                          med(bu) / med(ups["sluice"]) <= GOAL_BATCH_UP))
            goals.append((f"one call down at N={n} <= 1/2 of one process each",
                          f"{med(bd) / med(downs['sluice']):.2f}",
                          med(bd) / med(downs["sluice"]) <= GOAL_BATCH_DOWN))
            for what, b, per in (("up", bu, ups), ("down", bd, downs)):
                r = med(per["script"]) / med(b)
                goals.append((f"one call {what} at N={n} >= {GOAL_BATCH_SCRIPT:g}x the script",
                              f"{r:.1f}x", r >= GOAL_BATCH_SCRIPT))
    if boot:
        times, mem = boot
        log()
        log(f"the fleet: {mem['n']} sandboxes, each with its own idle sluice-proxy")
        log(f"  from `sluice-netsetup up` to a fresh sluice-proxy's first DNS answer inside "
            f"the sandbox: median {med(times):.1f} ms, p95 {p95(times):.1f} ms "
            f"(range {min(times):.0f}-{max(times):.0f})")
        log(f"  memory: PSS {mem['pss_kib'] / 1024:.2f} MiB per sandbox (all the proxies' "
            f"PSS summed / {mem['n']}); RSS of one proxy {mem['rss_kib'] / 1024:.2f} MiB "
            "(median), most of it the shared libraries PSS divides among them")


def report(b, results, conn, floor, wall, batches=None, boot=None):
    sizes = sorted(results)
    up = {n: results[n][0] for n in sizes}
    down = {n: results[n][1] for n in sizes}
    log()
    log("sluice-netsetup lifecycle: wall ms per sandbox (median of the N calls; at N < 10 "
        "of 10 calls),")
    log("one process per call as operators run it, each through nsenter")
    log(f"  floors: `nsenter true` {floor['spawn']:.2f} ms; `ip link show lo` "
        f"{floor['ip']:.2f} ms; `ip link del` of a bare veth pair {floor['veth_del']:.2f} ms "
        "(the kernel's share of any down)")
    log(f"{'':>5} | {'up':^37} | {'down':^37}")
    log(f"{'N':>5} | {'sluice':>7} {'tail':>7} {'mean':>7} {'script':>7} {'ratio':>6} | "
        f"{'sluice':>7} {'tail':>7} {'mean':>7} {'script':>7} {'ratio':>6}")
    for n in sizes:
        cols = []
        for d in (up[n], down[n]):
            cols.append(f"{med(d['sluice']):7.2f} {tail(d['sluice']):7.2f} "
                        f"{mean(d['sluice']):7.2f} {med(d['script']):7.2f} "
                        f"{med(d['script']) / med(d['sluice']):5.1f}x")
        log(f"{n:>5} | {cols[0]} | {cols[1]}")
    log("  tail: median of the last 10% of the calls (at least 5): up with ~N installed, "
        "down with few left;")
    log("  mean: total time / calls; ratio: script / sluice (medians)")

    goals = []
    for what, d in (("up", up), ("down", down)):
        worst = max(sizes, key=lambda n: med(d[n]["sluice"]))
        goals.append((f"sluice {what:<4} <= {GOAL_MS:g} ms per sandbox (worst N={worst})",
                      f"{med(d[worst]['sluice']):.2f} ms", med(d[worst]["sluice"]) <= GOAL_MS))
    for what, d in (("up", up), ("down", down)):
        worst = min(sizes, key=lambda n: med(d[n]["script"]) / med(d[n]["sluice"]))
        r = med(d[worst]["script"]) / med(d[worst]["sluice"])
        goals.append((f"sluice {what:<4} >= {GOAL_SPEEDUP:g}x faster than the script "
                      f"(worst N={worst})", f"{r:.1f}x", r >= GOAL_SPEEDUP))
    big = sizes[-1]
    if SCALE_BASE_N in results and big != SCALE_BASE_N:
        for what, d in (("up", up), ("down", down)):
            r = med(d[big]["sluice"]) / med(d[SCALE_BASE_N]["sluice"])
            rt = tail(d[big]["sluice"]) / tail(d[SCALE_BASE_N]["sluice"])
            goals.append((f"sluice {what:<4} per sandbox, N={big} / N={SCALE_BASE_N} "
                          f"<= {GOAL_SCALE:g}", f"{r:.2f} (tail {rt:.2f})", r <= GOAL_SCALE))
    if conn:
        medians, rates = conn
        few, many = min(medians), max(medians)
        log()
        log(f"connections/s through TPROXY: a client in one sandbox, {b.args.conns} short "
            f"connections a round, {b.args.concurrency} at a time,")
        log(f"to {CONN_DST.format('10+round')}:{CONN_PORT}, accepted and closed by a "
            f"transparent listener on the gateway; {b.args.rounds} rounds, each one a pair")
        for k in (few, many):
            log(f"  {k:>4} sandbox{'es' if k > 1 else '  '} installed: {medians[k]:9.0f}/s   "
                f"rounds: {' '.join(f'{x:.0f}' for x in rates[k])}")
        pairs = [m / f for f, m in zip(rates[few], rates[many])]
        r = med(pairs)
        log(f"  ratio {many}/{few}, per round: {' '.join(f'{x:.2f}' for x in pairs)}; "
            f"their median {r:.3f}, ratio of the medians {medians[many] / medians[few]:.3f}")
        goals.append((f"connections/s with {many} / with {few} installed >= {GOAL_CONN:g}",
                      f"{r:.3f}", r >= GOAL_CONN))
    report_batch(results, batches or {}, boot or [], goals)
    log()
    log("goals (a MISS does not change the exit status)")
    for text, value, ok in goals:
        log(f"  {text:<56} {value:>17}  {verdict(ok)}")
    log()
    log(f"run time: {wall:.1f} s")
    return goals


def figures(results, conn, batches, boot, goals, wall):
    """Every call's and round's value, for --json (tests/bench/report): ms per
    sandbox, connections/s per round, the fleet's times and memory."""
    out = {"bench": "netsetup", "seconds": wall,
           "lifecycle_ms": {str(n): {"up": up, "down": down}
                            for n, (up, down) in results.items()},
           "batch_ms": {str(n): {"up": bu, "down": bd} for n, (bu, bd) in batches.items()},
           "goals": [{"text": t, "value": v, "met": ok} for t, v, ok in goals]}
    if conn:
        out["conn_per_s"] = {str(k): v for k, v in conn[1].items()}
    if boot:
        out["fleet"] = {"dns_boot_ms": boot[0], **boot[1]}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: N = 1, 10 and fewer connections")
    ap.add_argument("--binary", default=str(REPO / "build/netsetup/sluice-netsetup"))
    ap.add_argument("--proxy-binary", default=str(REPO / "build/proxy/sluice-proxy"),
                    help="the proxy started for the DNS boot time")
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                    help="comma-separated N (default 1,10,100,500; quick: 1,10)")
    ap.add_argument("--conns", type=int, help="connections per round (default 3000; "
                    "quick: 1000)")
    ap.add_argument("--rounds", type=int, help="timed rounds per world (default 21; "
                    "quick: 5)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--conn-seconds", type=float, default=30.0,
                    help="time limit of one client round")
    ap.add_argument("--no-conn", action="store_true", help="skip the connection test")
    ap.add_argument("--strace", action="store_true",
                    help="also run one up and one down at the largest N under strace -c")
    ap.add_argument("--fleet", type=int, help="sandboxes with a proxy each for the fleet "
                    "figures (default 200; quick: 20)")
    benchlib.add_json(ap)
    ap.add_argument("--max-seconds", type=float, default=900.0,
                    help="give up (and clean up) after this long")
    args = ap.parse_args()
    args.sizes = args.sizes or ([1, 10] if args.quick else [1, 10, 100, 500])
    args.conns = args.conns or (1000 if args.quick else 3000)
    args.rounds = args.rounds or (5 if args.quick else 21)
    args.fleet = args.fleet or (20 if args.quick else 200)
    if not 1 <= args.fleet <= 1000:
        ap.error("--fleet must be 1-1000")
    if any(not 1 <= n <= 500 for n in args.sizes):
        ap.error("every N must be 1-500")
    if not 1 <= args.conns <= 20000:
        ap.error("--conns must be 1-20000 (each round's 4-tuples must stay unique)")
    err = benchlib.preflight("bench_netsetup", ("ip", "nft", "nsenter", "cc", "sysctl",
                                                *(["strace"] if args.strace else [])),
                             (args.binary, args.proxy_binary))
    if err is not None:
        return err

    def body(b, t0):
        results = {}
        conn = None
        b.build_helpers()
        log(f"bench_netsetup: token {b.token}, sizes {args.sizes}, binary {args.binary}")
        log(f"machine: {os.cpu_count()} CPUs, kernel {os.uname().release}, load "
            f"{open('/proc/loadavg').read().split()[0]}")
        floor = b.floors()
        big = max(args.sizes)
        for n in args.sizes:
            t = time.monotonic()
            do_conn = not args.no_conn and n == big and big > 1
            ups, downs, c, extra = b.lifecycle(n, do_conn)
            results[n] = (ups, downs)
            conn = c or conn
            log(f"N={n}: median ms: sluice up {med(ups['sluice']):.2f}, down "
                f"{med(downs['sluice']):.2f}; script up {med(ups['script']):.2f}, "
                f"down {med(downs['script']):.2f}  ({time.monotonic() - t:.1f} s)")
            if extra:
                for cmd, text in extra.items():
                    log(f"strace -c of one sluice-netsetup {cmd} with {n} installed:")
                    log("\n".join(text.splitlines()[:14]))
        batches = {n: b.batch(n) for n in args.sizes if n >= 100}
        for n, (bu, bd) in batches.items():
            log(f"N={n} in one call: ms per sandbox, up {med(bu):.2f}, down {med(bd):.2f}")
        boot = b.dns_boot()
        wall = time.monotonic() - t0
        goals = report(b, results, conn, floor, wall, batches, boot)
        benchlib.write_json(args, figures(results, conn, batches, boot, goals, wall))

    return benchlib.run(Bench(args), body)

if __name__ == "__main__":
    sys.exit(main())
