"""Inspect mode (issue 16): TLS terminated under the name-constrained CA, each
HTTP request checked (Host == SNI, methods, canonical paths), credentials
injected by the proxy, upstream TLS verified.

Real clients inside a sandbox trust the sluice CA (curl --cacert, python
requests through REQUESTS_CA_BUNDLE, urllib through SSL_CERT_FILE, openssl
s_client); nginx in `inet` says what arrived, with the Authorization header
it got. The proxy verifies nginx against the test world's CA (--upstream-ca).
"""

import json
import os
import re
import signal
import subprocess
import time

import pytest

from testworld import ADDR, PYTHON, open_path_to, wait_for
from test_netsetup import Netsetup
from test_proxy import Proxy
from test_limits import scrape

SECRET = "s3cr3t-XYZZY-0123456789"
SECRET2 = "r0tated-PLUGH-9876543210"

POLICY = """\
version: 1
egress:
  - domain: api.example.test
    inspect: true
    http:
      - methods: [GET, HEAD]
        paths: ["/allowed*", "/whoami"]
    inject:
      - header: Authorization
        value_file: {secret}
        prefix: "Bearer "
  - domain: www.example.test
    inspect: true
  - domain: untrusted.example.test
    inspect: true
  - domain: expired.example.test
    inspect: true
  - domain: wrongname.example.test
    inspect: true
  - domain: nodns.example.test        # allowed and inspected; DNS has no such name
    inspect: true
  - domain: other.example.test
destinations:
  allow_ranges: [203.0.113.0/24, 2001:db8::/32]
timeouts:
  sniff: 2s
limits:
  new_connections_per_second: 1000
"""


def write_private(path, text, mode=0o644):
    path.write_text(text)
    os.chmod(path, mode)


@pytest.fixture(scope="module")
def env(world, sluice_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inspect")
    open_path_to(tmp)
    secret = tmp / "gh-token"
    # the proxy rereads it on reload as its own user: readable by it
    write_private(secret, SECRET + "\n")
    policy = POLICY.format(secret=secret)
    # the CA also covers other.example.test, which a test makes an inspect rule
    (tmp / "ca-policy.yaml").write_text(policy.replace(
        "  - domain: other.example.test\n", "  - domain: other.example.test\n    inspect: true\n"))
    r = subprocess.run([sluice_bin("sluicectl"), "ca", "init", str(tmp / "ca"), "--policy",
                        str(tmp / "ca-policy.yaml")], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 0, r.stderr
    ca = tmp / "ca"
    os.chmod(ca, 0o755)
    os.chmod(ca / "ca.pem", 0o644)
    ns = Netsetup(world, sluice_bin("sluice-netsetup"), tmp / "run")
    try:
        # netsetup places the CA where `ip netns exec` shows it: /etc/ssl/certs
        sb = ns.up("--ca", str(ca / "ca.pem"))
        px = Proxy(world, sluice_bin, sb, tmp / "proxy", policy=policy,
                   args=("--dns-listen", f"{sb.gw}:15053",
                         "--ca-cert", str(ca / "ca.pem"), "--ca-key", str(ca / "ca.key"),
                         "--upstream-ca", str(world.ca_cert), "--metrics",
                         f"127.0.0.1:{15190}", "--control", str(tmp / "proxy" / "ctl.sock")))
        px.metrics_url = "http://127.0.0.1:15190/metrics"
        px.control = tmp / "proxy" / "ctl.sock"
        px.secret = secret
        px.ca = "/etc/ssl/certs/sluice-ca.pem"   # as the sandbox sees it
        px.ca_dir = ca
        px.ns = ns
        yield world, sb, px
        if px.proc.alive():
            px.proc.stop()
    finally:
        ns.cleanup()


def curl(world, sb, px, url, *args, max_time=8):
    """curl in the sandbox, trusting the sluice CA; -i: the status and headers too."""
    return world.run(sb.name, ["curl", "-sS", "-i", "--max-time", str(max_time), "--cacert",
                               str(px.ca), *args, url], timeout=max_time + 5)


def status_of(out):
    m = re.match(r"HTTP/[\d.]+ (\d+)", out)
    return int(m.group(1)) if m else None


def reason_of(out):
    m = re.search(r"^x-sluice-reason: (\S+)", out, re.I | re.M)
    return m.group(1) if m else None


def requests_of(world, path_part):
    return [r for r in world.nginx_requests() if path_part in r["request"]]


def test_get_allowed_post_denied_inside_tls(env):
    world, sb, px = env
    world.nginx_reset()
    r = curl(world, sb, px, "https://api.example.test/allowed/a")
    assert r.returncode == 0, r.stderr
    assert status_of(r.stdout) == 200 and r.stdout.endswith("hello from api.example.test\n")
    r = curl(world, sb, px, "https://api.example.test/allowed/b", "-X", "POST", "-d", "x=1")
    assert r.returncode == 0, r.stderr
    assert status_of(r.stdout) == 403, r.stdout
    assert reason_of(r.stdout) == "method_not_allowed"
    assert "sluice: api.example.test:443 denied (method_not_allowed)" in r.stdout
    # the POST never reached the server; the GET did
    assert [q["request"] for q in requests_of(world, "/allowed/")] == ["GET /allowed/a HTTP/1.1"]
    ok = px.wait_record(event="request", path="/allowed/a")
    assert ok["method"] == "GET" and ok["status"] == 200 and ok["verdict"] == "allow"
    assert ok["bytes_down"] > 20 and ok["bytes_up"] > 20 and ok["host"] == "api.example.test"
    denied = px.wait_record(event="request", path="/allowed/b")
    assert denied["method"] == "POST" and denied["status"] == 403
    assert denied["verdict"] == "deny" and denied["reason"] == "method_not_allowed"


@pytest.mark.parametrize("path,reason", [
    ("/secret", "path_not_allowed"),
    ("/allowed/../secret", "path_not_allowed"),
    ("/allowed/%2e%2e/secret", "path_not_allowed"),
])
def test_paths_outside_the_globs_are_denied(env, path, reason):
    world, sb, px = env
    world.nginx_reset()
    r = curl(world, sb, px, f"https://api.example.test{path}", "--path-as-is")
    assert r.returncode == 0, r.stderr
    assert status_of(r.stdout) == 403 and reason_of(r.stdout) == reason, r.stdout
    assert world.nginx_requests() == []


def test_fronting_another_allowed_name_is_denied_and_reaches_nothing(env):
    world, sb, px = env
    world.nginx_reset()
    # SNI api.example.test, Host www.example.test: both allowed, not together
    r = curl(world, sb, px, "https://api.example.test/allowed/x", "-H", "Host: www.example.test")
    assert status_of(r.stdout) == 403 and reason_of(r.stdout) == "host_mismatch", r.stdout
    r = curl(world, sb, px, "https://api.example.test/allowed/x", "-H",
             "Host: api.example.test:8443")
    assert status_of(r.stdout) == 403 and reason_of(r.stdout) == "host_mismatch", r.stdout
    assert world.nginx_requests() == []
    rec = px.wait_record(event="request", reason="host_mismatch")
    assert rec["verdict"] == "deny" and rec["status"] == 403


KEEPALIVE = r"""
import http.client, json, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
c = http.client.HTTPSConnection("api.example.test", 443, context=ctx, timeout=8)
out = []
for method, path in (("GET", "/allowed/1"), ("POST", "/allowed/2"), ("GET", "/allowed/3"),
                     ("DELETE", "/allowed/4"), ("GET", "/whoami")):
    c.request(method, path)
    r = c.getresponse()
    body = r.read().decode()
    out.append([r.status, r.getheader("X-Sluice-Reason"), body])
out.append(c.sock.version())
print(json.dumps(out))
"""


def test_keep_alive_allowed_denied_allowed_on_one_connection(env):
    world, sb, px = env
    world.nginx_reset()
    before = len(px.records(event="flow_start", host="api.example.test"))
    r = world.run(sb.name, [PYTHON, "-c", KEEPALIVE, str(px.ca)], timeout=20)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [o[0] for o in out[:5]] == [200, 403, 200, 403, 200], out
    assert out[1][1] == "method_not_allowed" and out[3][1] == "method_not_allowed"
    assert out[0][2] == "hello from api.example.test\n"
    assert "sni=api.example.test" in out[4][2] and "host=api.example.test" in out[4][2]
    # one client connection, one flow, one upstream connection for the allowed requests
    assert len(px.records(event="flow_start", host="api.example.test")) == before + 1
    got = requests_of(world, "")
    assert [q["request"].split()[1] for q in got] == ["/allowed/1", "/allowed/3", "/whoami"]
    assert len({q["remote_port"] for q in got}) == 1, got


def test_tls_versions_and_session_resumption(env):
    world, sb, px = env
    sess = px.ca_dir.parent / "sess.pem"
    for version in ("-tls1_2", "-tls1_3"):
        r = world.run(sb.name, ["openssl", "s_client", "-connect", f"{ADDR.CAPTURE4}:443",
                                "-servername", "api.example.test", "-CAfile", str(px.ca),
                                "-verify_return_error", version, "-sess_out", str(sess)],
                      input="", timeout=15)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Verify return code: 0 (ok)" in r.stdout
        if version == "-tls1_2":
            r2 = world.run(sb.name, ["openssl", "s_client", "-connect", f"{ADDR.CAPTURE4}:443",
                                     "-servername", "api.example.test", "-CAfile", str(px.ca),
                                     version, "-sess_in", str(sess)],
                           input="", timeout=15)
            assert "Reused, TLSv1.2" in r2.stdout, r2.stdout


def test_the_leaf_is_for_the_sni_only_and_short_lived(env):
    world, sb, px = env
    r = world.run(sb.name, ["sh", "-c",
                            f"openssl s_client -connect {ADDR.CAPTURE4}:443 -servername "
                            f"www.example.test -CAfile {px.ca} </dev/null 2>/dev/null | "
                            "openssl x509 -noout -ext subjectAltName,extendedKeyUsage "
                            "-startdate -enddate"], timeout=15)
    assert r.returncode == 0, r.stderr
    assert "DNS:www.example.test" in r.stdout and "DNS:api" not in r.stdout
    assert "TLS Web Server Authentication" in r.stdout
    fmt = "%b %d %H:%M:%S %Y %Z"
    start = re.search(r"notBefore=(.*)", r.stdout).group(1).replace("  ", " ")
    end = re.search(r"notAfter=(.*)", r.stdout).group(1).replace("  ", " ")
    span = time.mktime(time.strptime(end, fmt)) - time.mktime(time.strptime(start, fmt))
    assert 0 < span <= 24 * 3600


@pytest.mark.parametrize("name", ["untrusted", "expired", "wrongname"])
def test_an_upstream_whose_certificate_fails_is_a_502(env, name):
    world, sb, px = env
    host = f"{name}.example.test"
    r = curl(world, sb, px, f"https://{host}/")
    assert r.returncode == 0, r.stderr
    assert status_of(r.stdout) == 502 and reason_of(r.stdout) == "upstream_cert_invalid", \
        r.stdout
    rec = px.wait_record(event="deny", host=host)
    assert rec["reason"] == "upstream_cert_invalid"


H2_ONLY = r"""
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.set_alpn_protocols(["h2"])
s = ctx.wrap_socket(socket.create_connection((sys.argv[2], 443), timeout=5),
                    server_hostname="api.example.test")
print("alpn", s.selected_alpn_protocol())
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
data = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    data += b
print("answer", data.split(b"\r\n")[0].decode())
"""


def test_an_h2_only_client_gets_http1_or_a_clean_end(env):
    world, sb, px = env
    r = curl(world, sb, px, "https://api.example.test/allowed/h2", "--http2")
    assert status_of(r.stdout) == 200 and r.stdout.startswith("HTTP/1.1"), r.stdout
    t0 = time.monotonic()
    r = world.run(sb.name, [PYTHON, "-c", H2_ONLY, str(px.ca), ADDR.CAPTURE4], timeout=15)
    assert r.returncode == 0, r.stderr
    assert "alpn None" in r.stdout
    assert "answer HTTP/1.1 403" in r.stdout, px.proc.log()[-3000:]
    assert time.monotonic() - t0 < 5


def test_credentials_are_injected_and_the_sandbox_cannot_send_its_own(env, sluice_bin):
    world, sb, px = env
    world.nginx_reset()
    for i in range(2):
        r = curl(world, sb, px, f"https://api.example.test/allowed/inj{i}", "-H",
                 "Authorization: Bearer placeholder-from-sandbox", "-H",
                 "authorization: Basic second-try")
        assert status_of(r.stdout) == 200, r.stdout
    got = requests_of(world, "/allowed/inj")
    assert len(got) == 2
    assert all(q["auth"] == f"Bearer {SECRET}" for q in got), got
    # a request the policy refuses carries nothing anywhere
    r = curl(world, sb, px, "https://api.example.test/allowed/x", "-H", "Host: www.example.test")
    assert status_of(r.stdout) == 403
    assert all(q["auth"] in ("", "-") for q in world.nginx_requests() if q["host"] != "api.example.test")
    # the flow records name the header, never the value
    start = px.wait_record(event="flow_start", host="api.example.test")
    assert start["injected"] == "Authorization"
    # the value is nowhere the proxy writes or shows
    places = {"flow log": px.log.read_text(), "stderr": px.proc.log()}
    r = world.run(world.host, ["curl", "-sS", px.metrics_url], nsenter=True)
    places["metrics"] = r.stdout
    for cmd in ("stats", "flows"):
        r = world.run(world.host, [sluice_bin("sluicectl"), "--control", str(px.control), cmd,
                                   "--json"], nsenter=True)
        assert r.returncode == 0, r.stderr
        places[cmd] = r.stdout
    places["cmdline"] = open(f"/proc/{px.proc.pid}/cmdline", "rb").read().decode(errors="replace")
    for where, text in places.items():
        assert SECRET not in text and "XYZZY" not in text, where


def test_a_changed_secret_file_takes_effect_on_reload(env):
    world, sb, px = env
    write_private(px.secret, SECRET2 + "\n")
    try:
        n = len(px.records(event="reload"))
        px.proc.signal(signal.SIGHUP)
        wait_for(lambda: len(px.records(event="reload")) > n, 5, what="reload record")
        assert px.records(event="reload")[-1]["verdict"] == "allow"
        world.nginx_reset()
        r = curl(world, sb, px, "https://api.example.test/allowed/rotated")
        assert status_of(r.stdout) == 200
        assert requests_of(world, "/allowed/rotated")[0]["auth"] == f"Bearer {SECRET2}"
    finally:
        write_private(px.secret, SECRET + "\n")
        px.proc.signal(signal.SIGHUP)
        time.sleep(0.3)


CLIENTS = r"""
import json, os, sys, urllib.request
out = {}
with urllib.request.urlopen("https://api.example.test/allowed/urllib", timeout=8) as r:
    out["urllib"] = [r.status, r.read().decode()]
try:
    import requests
    r = requests.get("https://api.example.test/allowed/requests", timeout=8)
    out["requests"] = [r.status_code, r.text]
    r = requests.post("https://api.example.test/allowed/requests", data=b"x", timeout=8)
    out["requests_post"] = [r.status_code, r.headers.get("X-Sluice-Reason")]
except ImportError:
    pass
print(json.dumps(out))
"""


def test_python_clients_trust_the_ca_by_environment(env):
    world, sb, px = env
    r = world.run(sb.name, ["env", f"SSL_CERT_FILE={px.ca}", f"REQUESTS_CA_BUNDLE={px.ca}",
                            PYTHON, "-c", CLIENTS], timeout=30)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["urllib"] == [200, "hello from api.example.test\n"]
    assert out["requests"] == [200, "hello from api.example.test\n"]
    assert out["requests_post"] == [403, "method_not_allowed"]


def test_metrics_count_requests_and_leaves(env):
    world, sb, px = env
    curl(world, sb, px, "https://api.example.test/allowed/m")
    m = scrape(world, px)
    assert m[("sluice_requests_total", ("reason", "none"), ("verdict", "allow"))] >= 1
    assert m[("sluice_requests_total", ("reason", "method_not_allowed"), ("verdict", "deny"))] >= 1
    assert m[("sluice_inspect_leaf_certs_total", ("result", "minted"))] >= 1
    assert m[("sluice_inspect_leaf_certs_total", ("result", "cached"))] >= 1


# ---- no CA: refused, never SNI-only ----

def test_a_policy_with_inspect_rules_and_no_ca_is_refused_at_start(world, sluice_bin, tmp_path):
    open_path_to(tmp_path)
    secret = tmp_path / "s"
    write_private(secret, "x\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(secret=secret))
    r = world.run(world.host, [sluice_bin("sluice-proxy"), "--policy", str(policy), "--listen",
                               "127.0.0.1:15999", "--upstream-dns", ADDR.DNS4, "--log",
                               str(tmp_path / "log")], timeout=10, nsenter=True)
    assert r.returncode == 2, r.stderr
    assert re.search(r"policy\.yaml:3:5: inspect rule for 'api\.example\.test' needs the "
                     r"inspect-mode CA: start sluice-proxy with --ca-cert and --ca-key", r.stderr)


def test_a_reload_that_brings_an_inspect_rule_without_a_ca_is_refused(env, sluice_bin,
                                                                       tmp_path):
    world, _, main_px = env
    sb = main_px.ns.up()            # the module's netsetup: a subnet of its own
    try:
        allow = "destinations:\n  allow_ranges: [203.0.113.0/24, 2001:db8::/32]\n"
        px = Proxy(world, sluice_bin, sb, tmp_path / "px",
                   policy="version: 1\negress:\n  - domain: www.example.test\n" + allow)
        px.policy.write_text("version: 1\negress:\n  - domain: www.example.test\n"
                             "    inspect: true\n    http:\n      - methods: [HEAD]\n" + allow)
        px.proc.signal(signal.SIGHUP)
        rec = px.wait_record(event="reload", verdict="deny")
        assert "needs the inspect-mode CA" in rec["error"] and ":3:5:" in rec["error"]
        # the old policy still decides: www passes by SNI, GET works; other is denied
        for host, ok in (("www.example.test", True), ("other.example.test", False)):
            r = world.run(sb.name, ["curl", "-sS", "--max-time", "5", "--cacert",
                                    str(world.ca_cert), "--resolve", f"{host}:443:{ADDR.CAPTURE4}",
                                    f"https://{host}/"], timeout=10, nsenter=True)
            assert (r.returncode == 0 and r.stdout == f"hello from {host}\n") == ok, r.stderr
        px.proc.stop()
    finally:
        main_px.ns.down(sb.name)


def test_a_spliced_flow_an_inspect_rule_now_covers_is_revoked(env, world):
    """A flow passed by SNI cannot have its requests checked: a reload that
    makes its rule an inspect rule ends it."""
    _, sb, px = env
    script = (r"import socket, ssl, sys, time" "\n"
              r"ctx = ssl.create_default_context(cafile=sys.argv[1])" "\n"
              r"s = ctx.wrap_socket(socket.create_connection((sys.argv[2], 443), timeout=8),"
              r" server_hostname='other.example.test')" "\n"
              r"s.sendall(b'GET / HTTP/1.1\r\nHost: other.example.test\r\n\r\n')" "\n"
              r"print(s.recv(4096).split(b'\r\n')[0].decode(), flush=True)" "\n"
              r"time.sleep(3)" "\n"
              r"try:" "\n"
              r"    print('after', s.recv(4096))" "\n"
              r"except Exception as e:" "\n"
              r"    print('after', type(e).__name__)" "\n")
    p = world.spawn(sb.name, [PYTHON, "-u", "-c", script, str(world.ca_cert), ADDR.CAPTURE4],
                    nsenter=True)
    try:
        wait_for(lambda: "HTTP/1.1 200" in p.log(), 8, what="spliced flow up")
        text = px.policy.read_text()
        px.policy.write_text(text.replace("  - domain: other.example.test\n",
                                          "  - domain: other.example.test\n    inspect: true\n"))
        px.proc.signal(signal.SIGHUP)
        rec = px.wait_record(event="deny", host="other.example.test", reason="revoked")
        assert rec["verdict"] == "deny"
        p.popen.wait(timeout=10)
        assert "after b''" in p.log() or "after SSL" in p.log(), p.log()
    finally:
        p.stop()
        px.policy.write_text(POLICY.format(secret=px.secret))
        px.proc.signal(signal.SIGHUP)
        time.sleep(0.3)


def test_an_inspected_upload_keeps_to_the_bandwidth_limit(env, tmp_path):
    """limits.upload_bytes_per_second (1 MiB/s by default) holds inside TLS too."""
    world, sb, px = env
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(2 << 20))
    os.chmod(tmp_path, 0o755)
    t0 = time.monotonic()
    r = curl(world, sb, px, "https://www.example.test/uploads/inspected.bin", "-T", str(blob),
             max_time=20)
    took = time.monotonic() - t0
    # curl asks Expect: 100-continue: the interim answer passes, then the final one
    assert r.stdout.startswith("HTTP/1.1 100 Continue") and "HTTP/1.1 201 Created" in r.stdout, \
        r.stdout + r.stderr
    assert (world.tmp / "www" / "uploads" / "inspected.bin").read_bytes() == blob.read_bytes()
    assert took > 1.3, took         # 2 MiB at 1 MiB/s, a tenth of a second of burst
    rec = px.wait_record(event="limit", host="www.example.test", limit="upload_bytes_per_second")
    assert rec["reason"] == "rate_limited"


def reload_policy(px, text):
    n = len(px.records(event="reload"))
    px.policy.write_text(text)
    px.proc.signal(signal.SIGHUP)
    wait_for(lambda: len(px.records(event="reload")) > n, 5, what="reload record")
    return px.records(event="reload")[-1]


def test_audit_mode_lets_a_refused_request_through_and_says_so(env):
    world, sb, px = env
    text = POLICY.format(secret=px.secret)
    try:
        assert reload_policy(px, text.replace("version: 1\n", "version: 1\nmode: audit\n"))[
            "verdict"] == "allow"
        world.nginx_reset()
        r = curl(world, sb, px, "https://api.example.test/allowed/audited", "-X", "DELETE")
        assert status_of(r.stdout) == 200, r.stdout     # nginx answers what it was sent
        assert [q["request"] for q in requests_of(world, "/allowed/audited")] == \
            ["DELETE /allowed/audited HTTP/1.1"]
        rec = px.wait_record(event="request", path="/allowed/audited")
        assert rec["verdict"] == "audit" and rec["reason"] == "method_not_allowed"
        assert rec["status"] == 200
    finally:
        reload_policy(px, text)


def test_an_inspected_name_that_does_not_resolve_is_a_502(env):
    """The name is allowed and inspected, but DNS has no address for it: the
    sandbox gets a 502 inside its TLS, not a hang or a bare close."""
    world, sb, px = env
    r = world.run(sb.name, ["curl", "-sS", "-i", "--max-time", "8", "--cacert", px.ca,
                            "--resolve", f"nodns.example.test:443:{ADDR.CAPTURE4}",
                            "https://nodns.example.test/x"], timeout=15)
    assert status_of(r.stdout) == 502, r.stdout + r.stderr
    assert reason_of(r.stdout) == "resolve_failed"
    rec = px.wait_record(event="request", host="nodns.example.test")
    assert rec["status"] == 502 and rec["reason"] == "resolve_failed" and rec["path"] == "/x"
    assert px.wait_record(event="deny", host="nodns.example.test")["reason"] == "resolve_failed"


def test_a_sandbox_that_refuses_the_leaf_leaves_a_flow_record(env):
    """A client that does not trust the CA ends the handshake; the attempt is
    still a flow_start and a flow_end (with nothing relayed), never silence."""
    world, sb, px = env
    before = {r["flow"] for r in px.records(event="flow_start", host="www.example.test")}
    r = world.run(sb.name, ["curl", "-sS", "--max-time", "5", "--cacert", str(world.ca_cert),
                            "https://www.example.test/"], timeout=10)
    assert r.returncode == 60, r.stderr             # the leaf does not verify
    new = [s for s in px.records(event="flow_start", host="www.example.test")
           if s["flow"] not in before]
    assert len(new) == 1
    end = px.wait_record(event="flow_end", flow=new[0]["flow"])
    assert end["bytes_up"] == 0 and end["bytes_down"] == 0


PIPELINED = r"""
import re, socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
s = ctx.wrap_socket(socket.create_connection(("api.example.test", 443), timeout=8),
                    server_hostname="api.example.test")
req = lambda m, p, extra="": (f"{m} {p} HTTP/1.1\r\nHost: api.example.test\r\n{extra}\r\n").encode()
s.sendall(req("GET", "/allowed/p1") + req("POST", "/allowed/p2", "Content-Length: 0\r\n") +
          req("GET", "/allowed/p3") + req("GET", "/allowed/p4", "Connection: close\r\n"))
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
print(" ".join(re.findall(r"HTTP/1\.1 (\d{3}) ", data.decode())))
"""


def test_pipelined_requests_are_each_checked_and_answered_in_order(env):
    world, sb, px = env
    world.nginx_reset()
    r = world.run(sb.name, [PYTHON, "-c", PIPELINED, str(px.ca)], timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["200", "403", "200", "200"], r.stdout
    assert [q["request"].split()[1] for q in requests_of(world, "/allowed/p")] == \
        ["/allowed/p1", "/allowed/p3", "/allowed/p4"]
