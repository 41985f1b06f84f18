"""sluicectl as an operator runs it: exit codes, FILE:LINE:COL errors, explain."""

import subprocess
from pathlib import Path

import pytest

EXAMPLE = str(Path(__file__).resolve().parents[2] / "config" / "example.yaml")


@pytest.fixture
def ctl(sluice_bin):
    def run(*args):
        return subprocess.run([sluice_bin("sluicectl"), *args], capture_output=True,
                              text=True, timeout=10)
    return run


def test_check_example_is_valid(ctl):
    r = ctl("check", EXAMPLE)
    assert r.returncode == 0, r.stderr
    assert "ok, 5 rules" in r.stdout
    assert r.stderr == ""          # the shipped example has no warnings either


def test_check_port_out_of_range_on_line_4(ctl, tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text("version: 1\negress:\n  - domain: pypi.org\n    ports: [70000]\n")
    r = ctl("check", str(p))
    assert r.returncode == 1
    assert f"{p}:4:13: port 70000 out of range (1-65535)" in r.stderr.splitlines()


def test_check_reports_every_error_and_warnings_keep_exit_0(ctl, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\negress:\n  - domain: \"*\"\n  - cidr: 10.0.0.1/8\negres: []\n")
    r = ctl("check", str(bad))
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if l.startswith(f"{bad}:")]
    assert [l.split(":")[1] for l in lines[:3]] == ["3", "4", "5"]
    warn = tmp_path / "warn.yaml"
    warn.write_text("version: 1\nmode: audit\negress: []\n")
    r = ctl("check", str(warn))
    assert r.returncode == 0
    assert f"{warn}:2:7: warning: mode: audit" in r.stderr


@pytest.mark.parametrize("args", [[], ["check"], ["check", "a", "b"], ["frobnicate"],
                                  ["explain", EXAMPLE], ["explain", EXAMPLE, "a.test:0"],
                                  ["explain", EXAMPLE, "a.test:99999"],
                                  ["explain", EXAMPLE, "a.test", "--method", "GET"]])
def test_usage_errors_exit_2(ctl, args):
    r = ctl(*args)
    assert r.returncode == 2
    assert r.stdout == ""


def test_check_missing_file(ctl, tmp_path):
    r = ctl("check", str(tmp_path / "nope.yaml"))
    assert r.returncode == 1
    assert "nope.yaml: cannot open: No such file or directory" in r.stderr


def test_help_lists_every_command(ctl):
    r = ctl("--help")
    assert r.returncode == 0
    for cmd in ("check POLICY", "explain POLICY HOST[:PORT]"):
        assert cmd in r.stdout


@pytest.mark.parametrize("target,code,expect", [
    ("pypi.org", 0, "allow: pypi.org:443"),
    ("files.pythonhosted.org:443", 0, "domain *.pythonhosted.org"),
    ("192.0.2.10:5432", 0, "cidr 192.0.2.0/24"),
    ("pythonhosted.org", 1, "(not_allowlisted)"),
    ("unknown.example", 1, "(not_allowlisted)"),
    ("pypi.org:80", 1, "(port_not_allowed)"),
    ("127.0.0.1:443", 1, "(not_allowlisted)"),
    ("0x7f.1", 1, "(invalid_hostname)"),
    ("[2001:db8::1]:5432", 1, "deny: [2001:db8::1]:5432 (not_allowlisted)"),
])
def test_explain(ctl, target, code, expect):
    r = ctl("explain", EXAMPLE, target)
    assert r.returncode == code, r.stdout + r.stderr
    assert expect in r.stdout


def test_explain_names_the_deciding_rule_position(ctl):
    r = ctl("explain", EXAMPLE, "example.org:80")
    assert r.returncode == 0
    assert f"rule: {EXAMPLE}:17:5 domain example.org ports [80, 443]" in r.stdout


def test_explain_http_rules(ctl):
    ok = ctl("explain", EXAMPLE, "api.github.com", "--method", "GET", "--path", "/repos/a/b")
    assert ok.returncode == 0
    bad = ctl("explain", EXAMPLE, "api.github.com", "--method", "GET", "--path", "/user")
    assert bad.returncode == 1 and "(path_not_allowed)" in bad.stdout


def test_explain_invalid_policy_exits_2(ctl, tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("version: 3\n")
    r = ctl("explain", str(p), "pypi.org")
    assert r.returncode == 2
    assert f"{p}:1:10: unknown policy version '3'" in r.stderr


def test_explain_audit_mode_says_it_would_pass(ctl, tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("version: 1\nmode: audit\negress: []\n")
    r = ctl("explain", str(p), "pypi.org")
    assert r.returncode == 1
    assert "mode is audit: the flow would pass" in r.stdout


RAW_BY_NAME = "version: 1\negress:\n  - domain: db.example\n    ports: [443, 5432]\n"


def test_check_warns_of_a_raw_port_under_real_answers(ctl, tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(RAW_BY_NAME)
    r = ctl("check", str(p))
    assert r.returncode == 0
    assert r.stderr.splitlines() == [
        f"{p}:3:5: warning: port 5432 of 'db.example' needs dns.answers: virtual unless it "
        "carries TLS or HTTP; otherwise such flows are denied unknown_protocol"]
    p.write_text(RAW_BY_NAME + "dns:\n  answers: virtual\n")
    r = ctl("check", str(p))
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_explain_says_how_a_name_is_reached(ctl, tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(RAW_BY_NAME)
    real = ctl("explain", str(p), "db.example:5432")
    assert real.returncode == 0
    assert "dns.answers is real: only TLS or HTTP naming db.example" in real.stdout
    assert "virtual address" not in ctl("explain", str(p), "db.example:443").stdout
    p.write_text(RAW_BY_NAME + "dns:\n  answers: virtual\n")
    raw = ctl("explain", str(p), "db.example:5432")
    assert "reached through a virtual address" in raw.stdout
    assert "any TCP protocol on it is relayed by that name" in raw.stdout
    tls = ctl("explain", str(p), "db.example:443")
    assert "TLS or HTTP on it must name it too (SNI, Host)" in tls.stdout


@pytest.mark.parametrize("suffix", ["co.uk", "github.io", "s3.amazonaws.com", "com"])
def test_check_knows_public_suffixes(ctl, tmp_path, suffix):
    """A wildcard over a public suffix (libpsl, Debian's publicsuffix list, its
    private section included) needs allow_broad; one a label below does not."""
    p = tmp_path / "p.yaml"
    p.write_text(f"version: 1\negress:\n  - domain: \"*.{suffix}\"\n")
    r = ctl("check", str(p))
    assert r.returncode == 1
    assert (f"{p}:3:13: domain '*.{suffix}' allows every name under the public suffix "
            f"'{suffix}'; add 'allow_broad: true'") in r.stderr
    p.write_text(f"version: 1\negress:\n  - domain: \"*.example.{suffix}\"\n")
    r = ctl("check", str(p))
    assert r.returncode == 0 and r.stderr == "", r.stderr
