"""sluicectl suggest: a policy learnt from flow logs (issue 18, part 1).

Tables over synthetic logs (runs counted across files and sandbox ids,
--min-runs, --merge with public-suffix edges, names only resolved, bare
addresses, --policy and --diff with their exit codes, gzip and standard
input, a million records in bounded memory), and end to end: three audit runs
of a scripted workload through a real proxy, a suggested policy, and that
policy enforced on the same workload.
"""

import gzip
import json
import re
import subprocess
import time

import pytest

from test_netsetup import DNS_PORT, PROXY_PORT, Netsetup
from test_deploy import is_sanitized
from test_proxy import Proxy, check_log


@pytest.fixture(scope="module")
def ctl(sluice_bin):
    def run(*args, input=None, timeout=60):
        return subprocess.run([sluice_bin("sluicectl"), *map(str, args)], capture_output=True,
                              text=True, timeout=timeout, input=input)
    return run


def rec(event, host=None, port=443, sandbox="s1", ts="2026-12-05T10:00:00.000Z",
        verdict="audit", **kw):
    r = {"ts": ts, "sandbox": sandbox, "event": event, "proto": "tls", "verdict": verdict,
         "policy": "84c7041f8ff5"}
    if host is not None:
        r["host"] = host
    if port:
        r["port"] = port
    r.update(kw)
    return json.dumps(r, separators=(",", ":"))


def flows(*names, sandbox="s1", port=443):
    out = []
    for n in names:
        out.append(rec("flow_start", n, port, sandbox))
        out.append(rec("flow_end", n, port, sandbox, bytes_up=100, bytes_down=2048))
    return out


def write(path, lines):
    path.write_text("".join(l + "\n" for l in lines))
    return path


def rules(text):
    """[(pattern, [ports])] of the egress rules in a suggested policy."""
    return [(m.group(1), [int(p) for p in m.group(2).split(",")])
            for m in re.finditer(r'^  - domain: "([^"]+)"\n    ports: \[([\d, ]+)\]$', text,
                                 re.M)]


def test_runs_are_files_and_sandboxes_and_min_runs_filters(ctl, tmp_path):
    a = write(tmp_path / "a.jsonl", flows("a.example.org", "b.example.org", "c.example.org") +
              flows("a.example.org", sandbox="s2") +
              [rec("flow_start", "a.example.org", 8443, "s2")])
    b = write(tmp_path / "b.jsonl", flows("a.example.org", "b.example.org"))
    r = ctl("suggest", a, b, "--min-runs", "2")
    assert r.returncode == 0, r.stderr
    assert rules(r.stdout) == [("a.example.org", [443, 8443]), ("b.example.org", [443])]
    assert "# seen in 3 of 3 runs, 4 connections, 300 B up, 6.0 KiB down" in r.stdout
    assert "# seen in 2 of 3 runs" in r.stdout
    left = r.stdout.split("# left out: seen in fewer than 2 runs")[1]
    assert '#   - domain: "c.example.org"  # seen in 1 of 3 runs' in left
    # the suggestion is a policy: it round-trips through check
    p = tmp_path / "suggested.yaml"
    p.write_text(r.stdout)
    chk = ctl("check", p)
    assert chk.returncode == 0 and "error" not in chk.stderr, chk.stderr
    # (its one warning is check's own: port 8443 needs dns.answers: virtual unless TLS)
    assert chk.stderr.count("warning: port 8443 of 'a.example.org'") == 1


@pytest.mark.parametrize("names,merge,want", [
    (("x.pkg.example.org", "y.pkg.example.org", "z.pkg.example.org"), 3, ["*.pkg.example.org"]),
    (("x.pkg.example.org", "y.pkg.example.org", "z.pkg.example.org"), 4,
     ["x.pkg.example.org", "y.pkg.example.org", "z.pkg.example.org"]),
    # public suffixes are never a wildcard's parent, private section included
    (("a.github.io", "b.github.io", "c.github.io"), 2, ["a.github.io", "b.github.io",
                                                        "c.github.io"]),
    (("a.co.uk", "b.co.uk", "c.co.uk"), 2, ["a.co.uk", "b.co.uk", "c.co.uk"]),
    (("x.s3.amazonaws.com", "y.s3.amazonaws.com"), 2, ["x.s3.amazonaws.com",
                                                      "y.s3.amazonaws.com"]),
    (("a.example.com", "b.example.com"), 2, ["*.example.com"]),
    # the apex is its own rule: *.example.net never matches example.net
    (("example.net", "a.example.net", "b.example.net"), 2, ["*.example.net", "example.net"]),
])
def test_merge_respects_public_suffixes(ctl, tmp_path, names, merge, want):
    log = write(tmp_path / "l.jsonl", flows(*names))
    r = ctl("suggest", log, "--merge", merge)
    assert r.returncode == 0, r.stderr
    assert [n for n, _ in rules(r.stdout)] == want
    p = tmp_path / "p.yaml"
    p.write_text(r.stdout)
    assert ctl("check", p).returncode == 0


def test_resolved_names_addresses_and_fixable_denials(ctl, tmp_path):
    log = write(tmp_path / "l.jsonl", flows("used.example.org") + [
        rec("dns", qname="only-resolved.example.org", proto="dns", verdict="allow"),
        rec("dns", qname="refused.example.org", proto="dns", verdict="deny",
            reason="not_allowlisted"),
        rec("flow_start", None, 5432, orig_dst="192.0.2.7:5432"),
        rec("deny", "needed.example.org", 443, verdict="deny", reason="not_allowlisted"),
        rec("deny", "fronted.example.org", 443, verdict="deny", reason="host_mismatch"),
        "this is not a record",
        '{"ts": 1, "nested": {"no": 1}}',
    ])
    r = ctl("suggest", log)
    assert r.returncode == 0
    assert rules(r.stdout) == [("needed.example.org", [443]), ("used.example.org", [443])]
    assert "# denied in enforce mode: this rule would have allowed it\n" \
           '  - domain: "needed.example.org"' in r.stdout
    assert "# resolved but never connected to (not allowed):\n" \
           "#   only-resolved.example.org\n#   refused.example.org  (refused at DNS)\n" \
           in r.stdout
    assert "#   - cidr: 192.0.2.7/32\n#     ports: [5432]  # 1 connections" in r.stdout
    assert "fronted" not in r.stdout            # a rule would not fix a fronted Host
    assert "2 lines were not flow records" in r.stderr
    j = json.loads(ctl("suggest", log, "--json").stdout)
    by = {n["name"]: n for n in j["names"]}
    assert by["needed.example.org"]["denied"] and by["used.example.org"]["rule"]
    assert by["only-resolved.example.org"]["resolved_only"]
    assert j["addresses"] == [{"address": "192.0.2.7", "ports": [5432], "connections": 1}]


CURRENT = """\
# the team's policy
version: 1
mode: audit
egress:
  - domain: a.example.org
  - domain: unused.example.org   # nobody needs this any more
dns:
  max_ttl: 30
"""


def test_policy_keeps_settings_and_diff_says_what_changes(ctl, tmp_path):
    cur = tmp_path / "current.yaml"
    cur.write_text(CURRENT)
    log = write(tmp_path / "l.jsonl", flows("a.example.org", "b.example.org"))
    r = ctl("suggest", log, "--policy", cur)
    assert r.returncode == 0, r.stderr
    assert "# the team's policy\nversion: 1\nmode: audit\negress:\n" in r.stdout
    assert r.stdout.rstrip().endswith("dns:\n  max_ttl: 30")
    assert rules(r.stdout) == [("a.example.org", [443]), ("b.example.org", [443])]
    d = ctl("suggest", log, "--policy", cur, "--diff")
    assert d.returncode == 1, d.stdout
    assert "+ domain: b.example.org ports [443]\n    seen in 1 of 1 runs" in d.stdout
    assert f"- domain: unused.example.org ({cur}:6): no observed flow used it" in d.stdout
    assert "a.example.org" not in d.stdout
    # the suggestion, taken: nothing changes any more
    taken = tmp_path / "taken.yaml"
    taken.write_text(r.stdout)
    same = ctl("suggest", log, "--policy", taken, "--diff")
    assert same.returncode == 0 and same.stdout.startswith("no change"), same.stdout
    assert ctl("suggest", log, "--diff").returncode == 2         # --diff needs --policy


def test_a_policy_with_includes_keeps_them_and_suggests_only_the_rest(ctl, tmp_path):
    """What an included preset allows is not suggested again (that would be a
    duplicate rule), and its unused rules are not drift: the include stays whole."""
    (tmp_path / "preset.yaml").write_text(
        "egress:\n  - domain: pypi.org\n  - domain: files.pythonhosted.org\n"
        "  - domain: test.pypi.org\n")
    cur = tmp_path / "current.yaml"
    cur.write_text("version: 1\ninclude: [preset.yaml]\negress:\n  - domain: old.example.org\n")
    log = write(tmp_path / "l.jsonl", flows("pypi.org", "files.pythonhosted.org",
                                            "new.example.org"))
    r = ctl("suggest", log, "--policy", cur)
    assert r.returncode == 0, r.stderr
    assert rules(r.stdout) == [("new.example.org", [443])]
    assert f"  # pypi.org: allowed by the included {tmp_path}/preset.yaml:2\n" in r.stdout
    assert "include: [preset.yaml]\n" in r.stdout
    taken = tmp_path / "taken.yaml"
    taken.write_text(r.stdout)
    check = ctl("check", taken)
    assert check.returncode == 0 and "(3 from 1 included file)" in check.stdout, check
    d = ctl("suggest", log, "--policy", cur, "--diff")
    assert d.returncode == 1
    assert "+ domain: new.example.org" in d.stdout
    assert "- domain: old.example.org" in d.stdout and "test.pypi.org" not in d.stdout
    assert ctl("suggest", log, "--policy", taken, "--diff").returncode == 0


def test_gzip_and_standard_input(ctl, tmp_path):
    lines = flows("a.example.org", "b.example.org")
    plain = write(tmp_path / "l.jsonl", lines)
    gz = tmp_path / "l.jsonl.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    want = ctl("suggest", plain).stdout
    assert rules(want) == [("a.example.org", [443]), ("b.example.org", [443])]
    assert ctl("suggest", gz).stdout == want
    assert ctl("suggest", "-", input=plain.read_text()).stdout == want
    missing = ctl("suggest", tmp_path / "nope.jsonl")
    assert missing.returncode == 1 and "nope.jsonl" in missing.stderr


def peak_rss(argv, tmp_path):
    """ARGV's (output, seconds, peak RSS in KiB). GNU time forks it from a small
    process: a child of pytest would report pytest's own size."""
    out = tmp_path / f"peak-{time.monotonic_ns()}.out"
    t0 = time.monotonic()
    with open(out, "w") as f:
        r = subprocess.run(["/usr/bin/time", "-f", "%M", *map(str, argv)], stdout=f,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out.read_text(), time.monotonic() - t0, int(r.stderr.split()[-1])


def million_and_tenth(what, make, argv, tmp_path):
    """ARGV + [log] over a log of 1,000,000 records and one of 100,000, both written
    by MAKE(path, n): (output, seconds, peak RSS) of the big one, and the small
    one's peak RSS, printed as WHAT's figures."""
    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    make(big, 1_000_000)
    make(small, 100_000)
    _, _, rss_small = peak_rss([*argv, small], tmp_path)
    out, secs, rss_big = peak_rss([*argv, big], tmp_path)
    print(f"{what} over 1,000,000 records: {secs:.2f} s, peak RSS {rss_big} KiB "
          f"(100,000 records: {rss_small} KiB)")
    return out, secs, rss_big, rss_small


def test_a_million_records_in_memory_bounded_by_names(ctl, tmp_path, sluice_bin):
    """1,000,000 flow records over 1,000 names in 10 sandboxes: the RSS is that
    of the names, not of the records (a tenth of the log gives about the same)."""
    def make(path, n):
        with open(path, "w") as f:
            for i in range(n):
                f.write('{"ts":"2026-12-05T10:00:00.000Z","sandbox":"s%d","event":"flow_start",'
                        '"host":"n%d.example.org","port":443,"verdict":"audit"}\n'
                        % ((i // 1000) % 10, i % 1000))

    out, _, rss_big, rss_small = million_and_tenth(
        "suggest", make, [sluice_bin("sluicectl"), "suggest"], tmp_path)
    assert len(rules(out)) == 1000
    assert "# seen in 10 of 10 runs, 1000 connections" in out
    # KiB; a sanitizer build carries its shadow memory and quarantine besides
    assert rss_big < (64 if is_sanitized(sluice_bin("sluicectl")) else 16) * 1024, rss_big
    assert rss_big <= rss_small * 1.1 + 1024, (rss_big, rss_small)


# ---------------------------------------------------------------- end to end

POLICY_AUDIT = """\
version: 1
mode: audit
egress: []
destinations:
  allow_ranges: [203.0.113.0/24, 2001:db8::/32]
timeouts:
  sniff: 1s
"""
RUNS = (("www.example.test", "api.example.test"),
        ("www.example.test", "api.example.test", "other.example.test"),
        ("www.example.test",))


def workload(world, sb, names):
    """The scripted sandbox: HTTPS to each name, resolved through the proxy."""
    return {n: world.run(sb.name, ["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w",
                                   "%{http_code}", "--cacert", str(world.ca_cert),
                                   f"https://{n}/"], timeout=15).stdout for n in names}


def test_three_audit_runs_then_enforce(world, sluice_bin, ctl, tmp_path):
    ns = Netsetup(world, sluice_bin("sluice-netsetup"), tmp_path / "run")
    try:
        sb = ns.up()
        logs = []
        for i, names in enumerate(RUNS):
            px = Proxy(world, sluice_bin, sb, tmp_path / f"audit{i}", policy=POLICY_AUDIT,
                       listen=[f"{sb.gw}:{PROXY_PORT}"], ident=f"run{i}",
                       args=("--dns-listen", f"{sb.gw}:{DNS_PORT}"))
            try:
                assert set(workload(world, sb, names).values()) == {"200"}
            finally:
                px.proc.stop()
            check_log(px)
            logs.append(px.log)
        cur = tmp_path / "audit.yaml"
        cur.write_text(POLICY_AUDIT)
        r = ctl("suggest", *logs, "--policy", cur, "--min-runs", "2")
        assert r.returncode == 0, r.stderr
        assert rules(r.stdout) == [("api.example.test", [443]), ("www.example.test", [443])]
        assert '#   - domain: "other.example.test"  # seen in 1 of 3 runs' in r.stdout
        enforce = tmp_path / "enforce.yaml"
        enforce.write_text(r.stdout.replace("mode: audit", "mode: enforce"))
        assert ctl("check", enforce).returncode == 0
        px = Proxy(world, sluice_bin, sb, tmp_path / "enforce", policy=enforce.read_text(),
                   listen=[f"{sb.gw}:{PROXY_PORT}"], ident="enforce",
                   args=("--dns-listen", f"{sb.gw}:{DNS_PORT}"))
        try:
            got = workload(world, sb, RUNS[1])
        finally:
            px.proc.stop()
        check_log(px)
        assert got["www.example.test"] == "200" and got["api.example.test"] == "200"
        assert got["other.example.test"] != "200"          # seen once: denied
        assert px.records(event="dns", qname="other.example.test")[0]["reason"] == \
            "not_allowlisted"
        d = ctl("suggest", *logs, "--policy", enforce, "--min-runs", "2", "--diff")
        assert d.returncode == 0, d.stdout                  # CI: the set has not drifted
    finally:
        ns.cleanup()
