#!/usr/bin/env python3
"""The cost of the alert detectors: the same sluice-proxy with every detector on
(the default thresholds) and with `alerts: false`, the policy reloaded between
them, in the same run.

- connections per second (raw TCP by a cidr rule, each connection accepted and
  closed by the origin) and the proxy's CPU per connection;
- a 256 MiB download and a 256 MiB upload over raw TCP: MiB/s and the proxy's
  CPU per GiB (the upload is what upload_burst watches, chunk by chunk).

Rounds are interleaved (the order rotates); each ratio on/off is the median
with the spread over rounds. The proxy is pinned to one CPU, the clients and
the origin to the other. The world is bench_virtual's (its namespaces, origin
and cleanup); see tests/bench/README.md.

usage: bench_alerts.py [--quick] [--proxy PATH] [--netsetup PATH]
"""

import json
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import benchlib                                     # noqa: E402
from benchlib import log                            # noqa: E402
from bench_proxy import NO_LIMITS, cpu_seconds, med  # noqa: E402
import bench_virtual                                # noqa: E402
from bench_virtual import CLIENT_CPU, ORIGIN, PIN_CPU, spread  # noqa: E402
from testworld import PYTHON, wait_for              # noqa: E402

GOAL = 0.97                 # on / off: connections/s and MiB/s
SINK_PORT = 5003            # reads until EOF, then closes
MODES = ("on", "off")

POLICY = f"""\
version: 1
egress:
  - cidr: {ORIGIN}/32
    ports: [{bench_virtual.CLOSE_PORT}, {bench_virtual.BULK_PORT}, {SINK_PORT}]
destinations:
  allow_ranges: [203.0.113.0/24]
limits:
""" + "".join(f"  {k}: {v}\n" for k, v in NO_LIMITS.items()) + "{alerts}"

SINK = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(64)
def one(c):
    buf = bytearray(1 << 20)
    while c.recv_into(buf):
        pass
    c.close()
print("ready", flush=True)
while True:
    c, _ = s.accept(); threading.Thread(target=one, args=(c,), daemon=True).start()
"""

UPLOAD = r"""
import json, socket, sys, time
buf = bytes(1 << 20); n = int(sys.argv[3])
t0 = time.monotonic()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
for _ in range(n >> 20):
    s.sendall(buf)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print(json.dumps({"bytes": n, "seconds": time.monotonic() - t0}))
"""


class Bench(bench_virtual.Bench):
    def setup(self):
        super().setup()
        w = self.w
        sink = w.spawn(w.inet, ["taskset", "-c", CLIENT_CPU, PYTHON, "-c", SINK, ORIGIN,
                                SINK_PORT], name="sink")
        wait_for(lambda: "ready" in sink.log(), 5.0, what="sink server")
        self.alerts("on")

    def alerts(self, mode):
        """Reloads with every detector on (the defaults) or off; waits for the reload."""
        if mode == getattr(self, "amode", None):
            return
        self.amode = mode
        self.policy.write_text(POLICY.format(alerts="" if mode == "on" else "alerts: false\n"))
        self.reloads += 1
        self.proxy.signal(signal.SIGHUP)
        wait_for(lambda: sum(r.get("event") == "reload" and r.get("verdict") == "allow"
                             for r in self.records()) >= self.reloads, 5.0,
                 what=f"reload with alerts {mode}")

    def upload(self):
        pid = self.proxy.pid
        c0 = cpu_seconds(pid)
        r = self.run(self.sb, ["taskset", "-c", CLIENT_CPU, PYTHON, "-c", UPLOAD, ORIGIN,
                               str(SINK_PORT), str(bench_virtual.BULK_BYTES)], timeout=120)
        got = json.loads(r.stdout)
        got["cpu_gib"] = (cpu_seconds(pid) - c0) / (got["bytes"] / (1 << 30))
        got["mibs"] = got["bytes"] / got["seconds"] / (1 << 20)
        return got

    def sanity(self):
        before = len(self.records())
        got = self.download("cidr")
        if got["bytes"] != bench_virtual.BULK_BYTES:
            raise RuntimeError(f"download: {got['bytes']} bytes")
        self.upload()
        recs = self.records()[before:]
        alerts = [r for r in recs if r.get("event") == "alert"]
        if [a.get("kind") for a in alerts] != ["upload_burst"]:
            raise RuntimeError(f"a 256 MiB upload with the detectors on gave {alerts}")
        log("check: a 256 MiB download and upload relayed; the upload fired upload_burst "
            "once (the detectors are on and watching)")

    def measure(self):
        a = self.args
        res = {k: {m: [] for m in MODES} for k in ("conns", "down", "up")}
        self.conns("cidr", 200, a.concurrency)      # warm-up
        for rnd in range(a.rounds):
            for mode in (MODES if rnd % 2 == 0 else MODES[::-1]):
                self.alerts(mode)
                res["conns"][mode].append(self.conns("cidr", a.conns, a.concurrency))
                res["down"][mode].append(self.download("cidr"))
                res["up"][mode].append(self.upload())
            log(f"  round {rnd + 1}/{a.rounds}: " + "; ".join(
                f"{m}: {res['conns'][m][-1]['rate']:.0f} conn/s, "
                f"down {res['down'][m][-1]['mibs']:.0f}, up {res['up'][m][-1]['mibs']:.0f} MiB/s"
                for m in MODES))
        return res


def report(b, res, wall):
    goals = []
    log()
    log(f"alert detectors on (defaults) against alerts: false, same sluice-proxy, same run, "
        f"{b.args.rounds} interleaved rounds; ratio on/off = median (min-max)")
    log(f"(the proxy pinned to CPU {PIN_CPU}; clients and the origin to CPU {CLIENT_CPU})")
    log(f"{'':36} {'on':>10} {'off':>10} {'ratio':>20}")
    for label, key, field in (("raw TCP connections/s", "conns", "rate"),
                              ("256 MiB download, MiB/s", "down", "mibs"),
                              ("256 MiB upload, MiB/s", "up", "mibs")):
        v = res[key]
        r, lo, hi = spread(v["on"], v["off"], field)
        log(f"{label:36} {med([x[field] for x in v['on']]):>10.0f} "
            f"{med([x[field] for x in v['off']]):>10.0f} {f'{r:.2f} ({lo:.2f}-{hi:.2f})':>20}")
        goals.append((f"{label}: on >= {GOAL:g} x off", f"{r:.2f}", r >= GOAL))
    log()
    log("the proxy's own CPU (user+system, /proc), medians; ratio on/off:")
    for label, key, field, unit, fmt in (("per connection", "conns", "cpu_us", "us", "{:.0f}"),
                                         ("per GiB down", "down", "cpu_gib", "s", "{:.2f}"),
                                         ("per GiB up", "up", "cpu_gib", "s", "{:.2f}")):
        v = res[key]
        r, lo, hi = spread(v["on"], v["off"], field)
        log(f"  {label}: on {fmt.format(med([x[field] for x in v['on']]))} {unit}, "
            f"off {fmt.format(med([x[field] for x in v['off']]))} {unit}, "
            f"{r:.2f} ({lo:.2f}-{hi:.2f})")
    log()
    log("goals:")
    for what, got, ok in goals:
        log(f"  {what}: {got} {'MET' if ok else 'NOT MET'}")
    log(f"\nwall time {wall:.0f} s")


def main():
    ap = benchlib.parser(__doc__, "fewer, shorter rounds (a smoke run)")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--conns", type=int)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-seconds", type=float, default=900)
    a = ap.parse_args()
    a.rounds = a.rounds or (2 if a.quick else 6)
    a.conns = a.conns or (500 if a.quick else 10000)
    rc = benchlib.preflight("bench_alerts", bench_virtual.TOOLS, (a.proxy, a.netsetup))
    if rc is not None:
        return rc

    def body(b, t0):
        b.setup()
        b.sanity()
        res = b.measure()
        b.check_flowlog()
        report(b, res, time.monotonic() - t0)
    return benchlib.run(Bench(a), body)


if __name__ == "__main__":
    sys.exit(main())
