"""What every benchmark here does around its measurements: check that the
tools and the built programs are there, and run the body so that its
namespaces, processes and temp dirs are removed whatever happens (a failure,
Ctrl-C, SIGTERM, SIGHUP), then report the failed checks."""

import argparse
import atexit
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parser(doc, quick_help):
    """The command line the proxy benchmarks share: --quick, --proxy, --netsetup
    (the programs of this checkout's build by default)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--proxy", default=os.path.join(REPO, "build/proxy/sluice-proxy"))
    ap.add_argument("--netsetup", default=os.path.join(REPO, "build/netsetup/sluice-netsetup"))
    add_json(ap)
    return ap


def add_json(ap):
    """--json FILE: where the benchmark also writes its figures for tests/bench/report."""
    ap.add_argument("--json", metavar="FILE",
                    help="also write the figures (every round's value) as JSON to FILE")


def write_json(args, data):
    """DATA (plain dicts, lists, numbers, strings) to --json's file, when one was given."""
    if getattr(args, "json", None):
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")


def log(msg=""):
    print(msg, flush=True)


def preflight(name, tools=(), programs=()):
    """None when every tool is on PATH and every program is built; otherwise
    the exit status, after saying what is missing (3: not root)."""
    if os.geteuid() != 0:
        print(f"{name}: needs root (network namespaces, nftables)", file=sys.stderr)
        return 3
    for tool in tools:
        if not shutil.which(tool):
            print(f"{name}: {tool} not found (scripts/deps)", file=sys.stderr)
            return 1
    for p in programs:
        if not os.access(p, os.X_OK):
            print(f"{name}: {p} missing (ninja -C build)", file=sys.stderr)
            return 1
    return None


def run(bench, body):
    """BODY(bench, t0) with BENCH.cleanup() guaranteed. Returns the exit status:
    130 when interrupted, 1 when BENCH.findings holds failed checks (bugs, not
    timings), 0 otherwise."""
    atexit.register(bench.cleanup)
    signal.signal(signal.SIGINT, signal.default_int_handler)   # even if started ignoring it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))     # exit through finally
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    try:
        body(bench, time.monotonic())
    except KeyboardInterrupt:
        log("\ninterrupted: cleaning up")
        return 130
    finally:
        bench.cleanup()
    if bench.findings:
        log("\nFAILED checks (bugs, not timings):")
        for f in bench.findings:
            log(f"  {f}")
        return 1
    return 0


def teardown_world(w, netsetup=None, sandbox=None, env=None):
    """Downs SANDBOX with NETSETUP inside W's host (tidy: deleting the host
    would take it anyway), tears the world down, and says whether any of its
    namespaces is left."""
    import testworld                                # tests/integration, on sys.path
    prefix = w.prefix
    if sandbox and (testworld.RUN_NETNS / sandbox).exists():
        try:
            w.run(w.host, [netsetup, "down", sandbox], env=env, nsenter=True, timeout=20)
        except Exception as e:
            log(f"netsetup down: {e}")
    try:
        w.teardown()
    except Exception as e:
        log(f"WARNING: {e}")
    left = [n for n in testworld.list_netns() if n.startswith(prefix)]
    if left:
        log(f"WARNING: namespaces left behind: {' '.join(left)}")
    else:
        log(f"cleanup: no namespace {prefix}* is left (ip netns list checked)")


class WorldBench:
    """What a benchmark on a test world with one sluice sandbox keeps: its
    bounds (--max-seconds), the world W, the sandbox SB, a temp dir, the failed
    checks, and a cleanup that downs the sandbox and tears the world down once."""

    def __init__(self, args, name):
        self.args = args
        self.deadline = time.monotonic() + args.max_seconds
        self.w = None
        self.sb = None
        self.tmp = Path(tempfile.mkdtemp(prefix=f"sluice-bench-{name}-"))
        self.findings = []          # correctness problems: they make the exit status 1
        self.netsetup_env = dict(os.environ)
        self.cleaned = False

    def guard(self):
        if time.monotonic() > self.deadline:
            raise RuntimeError(f"time limit of {self.args.max_seconds:g} s reached")

    def run(self, ns, argv, timeout=60, check=True, env=None):
        """ARGV inside namespace NS (one of the world's: checked by testworld)."""
        self.guard()
        r = self.w.run(ns, argv, timeout=timeout, nsenter=True, env=env)
        if check and r.returncode != 0:
            raise RuntimeError(f"in {ns}: {' '.join(map(str, argv))}: exit {r.returncode}: "
                               f"{(r.stderr or r.stdout).strip()[-2000:]}")
        return r

    def cleanup(self):
        if self.cleaned:
            return
        self.cleaned = True
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if self.w:
                teardown_world(self.w, self.args.netsetup, self.sb, self.netsetup_env)
            shutil.rmtree(self.tmp, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, old)
