"""sluicectl ca: the inspect-mode CA (certs/), and check --ca (issue 16, item 1).

The CA's name constraints are proved the way a client meets them: leaves the
test signs with the CA key itself, then `openssl verify` against the CA. A name
outside the policy's inspect rules, or an IP address, must fail to verify
whoever holds the key.
"""

import os
import stat
import subprocess

import pytest

POLICY = """\
version: 1
egress:
  - domain: api.example.test
    inspect: true
    http:
      - methods: [GET]
  - domain: "*.inspect.test"
    inspect: true
  - domain: plain.example.test
"""


@pytest.fixture
def ctl(sluice_bin):
    def run(*args):
        return subprocess.run([sluice_bin("sluicectl"), *map(str, args)], capture_output=True,
                              text=True, timeout=20)
    return run


@pytest.fixture
def ca(ctl, tmp_path):
    """A CA made by `sluicectl ca init` for POLICY: (dir, policy path, result)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    d = tmp_path / "ca"
    r = ctl("ca", "init", d, "--policy", policy, "--days", "30")
    assert r.returncode == 0, r.stderr
    return d, policy, r


def openssl(*args, input=None):
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True,
                          timeout=20, input=input)


def leaf(tmp_path, ca_dir, san, tag):
    """A leaf for SAN (e.g. DNS:x.test, IP:192.0.2.1) signed with the CA's own key."""
    key, csr, crt = (tmp_path / f"{tag}.{ext}" for ext in ("key", "csr", "pem"))
    r = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", key, "-subj", f"/CN={tag}", "-out", csr)
    assert r.returncode == 0, r.stderr
    ext = tmp_path / f"{tag}.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    r = openssl("x509", "-req", "-in", csr, "-CA", ca_dir / "ca.pem", "-CAkey",
                ca_dir / "ca.key", "-CAcreateserial", "-days", "1", "-extfile", ext,
                "-out", crt)
    assert r.returncode == 0, r.stderr
    return crt


def verify(ca_dir, crt):
    return openssl("verify", "-CAfile", ca_dir / "ca.pem", crt)


def test_ca_init_writes_a_private_key_and_a_constrained_certificate(ca):
    d, _, r = ca
    key = d / "ca.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    # the key is never printed
    secret = key.read_text()
    assert "PRIVATE KEY" in secret
    body = "".join(secret.splitlines()[1:-1])
    assert body[:40] not in r.stdout + r.stderr and "PRIVATE" not in r.stdout + r.stderr
    text = openssl("x509", "-in", d / "ca.pem", "-noout", "-text").stdout
    assert "X509v3 Name Constraints: critical" in text
    assert "CA:TRUE, pathlen:0" in text and "Certificate Sign" in text
    assert "ASN1 OID: prime256v1" in text
    permitted = text.split("Permitted:")[1].split("Excluded:")[0].split()
    assert permitted == ["DNS:api.example.test", "DNS:.inspect.test"]
    excluded = text.split("Excluded:")[1].split("Signature Algorithm")[0].split()
    assert excluded == ["IP:0.0.0.0/0.0.0.0", "IP:0:0:0:0:0:0:0:0/0:0:0:0:0:0:0:0"]


def test_ca_show_prints_subject_validity_constraints_and_fingerprint(ctl, ca):
    d, _, _ = ca
    r = ctl("ca", "show", d)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"{d}/ca.pem"
    assert "subject      /O=sluice/CN=sluice inspect-mode CA" in lines
    assert "constraints  critical" in lines
    assert "  permitted  DNS:api.example.test" in lines
    assert "  permitted  DNS:.inspect.test" in lines
    assert "  excluded   IP:0.0.0.0/0" in lines and "  excluded   IP:::/0" in lines
    fp = openssl("x509", "-in", d / "ca.pem", "-noout", "-fingerprint", "-sha256").stdout
    assert f"sha256       {fp.strip().split('=', 1)[1]}" in lines
    valid = [l for l in lines if l.startswith("valid ")][0]
    assert valid.count("UTC") == 2


@pytest.mark.parametrize("san,ok,why", [
    ("DNS:api.example.test", True, "the exact inspect rule"),
    ("DNS:a.inspect.test", True, "under the wildcard rule"),
    ("DNS:a.b.inspect.test", True, "deeper under the wildcard"),
    ("DNS:inspect.test", False, "a wildcard rule permits the names under it, not the apex"),
    ("DNS:plain.example.test", False, "allowed, but not an inspect rule"),
    ("DNS:evil.test", False, "no rule at all"),
    ("DNS:api.example.test.evil.test", False, "a suffix trick"),
    ("IP:203.0.113.10", False, "no IP address, ever"),
    ("IP:2001:db8::1", False, "no IPv6 address either"),
])
def test_a_stolen_key_mints_for_nothing_outside_the_constraints(ca, tmp_path, san, ok, why):
    d, _, _ = ca
    crt = leaf(tmp_path, d, san, "leaf")
    r = verify(d, crt)
    if ok:
        assert r.returncode == 0 and ": OK" in r.stdout, (why, r.stdout, r.stderr)
    else:
        assert r.returncode != 0, (why, r.stdout)
        assert "subtree violation" in r.stdout + r.stderr, (why, r.stdout, r.stderr)


def test_check_ca_names_the_rules_the_ca_does_not_cover(ctl, ca, tmp_path):
    d, policy, _ = ca
    r = ctl("check", policy, "--ca", d / "ca.pem")
    assert r.returncode == 0, r.stderr
    assert "inspect rules inside the constraints" in r.stdout
    grown = tmp_path / "grown.yaml"
    grown.write_text(POLICY + "  - domain: new.example.test\n    inspect: true\n"
                     "  - domain: \"*.example.test\"\n    inspect: true\n")
    r = ctl("check", grown, "--ca", d / "ca.pem")
    assert r.returncode == 1
    errs = [l for l in r.stderr.splitlines() if "outside the name constraints" in l]
    assert [e.split(":")[1:3] for e in errs] == [["10", "5"], ["12", "5"]], r.stderr
    assert f"'sluicectl ca init DIR --policy {grown}'" in errs[0]
    # a certificate without name constraints could mint for anything: refused
    plain = tmp_path / "plain"
    plain.mkdir()
    r = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", plain / "k", "-subj", "/CN=any", "-out",
                plain / "ca.pem", "-days", "1")
    assert r.returncode == 0, r.stderr
    r = ctl("check", policy, "--ca", plain / "ca.pem")
    assert r.returncode == 1 and "has no name constraints" in r.stderr


def test_ca_init_refusals(ctl, ca, tmp_path):
    d, policy, _ = ca
    before = (d / "ca.key").read_bytes()
    r = ctl("ca", "init", d, "--policy", policy)
    assert r.returncode == 1 and "ca.key exists" in r.stderr
    assert (d / "ca.key").read_bytes() == before             # never replaced
    none = tmp_path / "none.yaml"
    none.write_text("version: 1\negress:\n  - domain: plain.example.test\n")
    r = ctl("ca", "init", tmp_path / "ca2", "--policy", none)
    assert r.returncode == 1 and "has no inspect rule" in r.stderr
    assert not (tmp_path / "ca2" / "ca.key").exists()
    for bad in (["ca", "init", tmp_path / "ca3", "--policy", policy, "--days", "0"],
                ["ca", "init", tmp_path / "ca3", "--policy", policy, "--days", "3651"],
                ["ca", "init", tmp_path / "ca3"], ["ca"], ["ca", "show"]):
        r = ctl(*bad)
        assert r.returncode == 2 and "see 'sluicectl --help'" in r.stderr, (bad, r.stderr)
