"""The shipped presets (config/presets): per ecosystem, the names its real clients
contact are allowed, on their ports, by that preset and by no other; every rule
says why it is there; and they load together with `include:` without a duplicate.

The table is the reviewed knowledge (each preset's comments say where a name
comes from); where a client on this machine states its own defaults (pip's
index and file host, apt's sources), the test reads them from the client too.
"""

import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from testworld import ADDR, open_path_to, wait_for
from test_netsetup import DNS_PORT, PROXY_PORT, Netsetup
from test_proxy import Proxy, check_log

PRESETS = Path(__file__).resolve().parents[2] / "config" / "presets"

# preset -> (name, port) its clients contact with their default settings
CONTACTS = {
    "pypi": [("pypi.org", 443), ("files.pythonhosted.org", 443)],
    "npm": [("registry.npmjs.org", 443), ("registry.yarnpkg.com", 443)],
    "crates": [("index.crates.io", 443), ("static.crates.io", 443), ("crates.io", 443)],
    "go": [("proxy.golang.org", 443), ("sum.golang.org", 443)],
    "debian": [("deb.debian.org", 80), ("deb.debian.org", 443), ("security.debian.org", 80),
               ("security.debian.org", 443)],
    "ubuntu": [("archive.ubuntu.com", 80), ("us.archive.ubuntu.com", 80),
               ("de.archive.ubuntu.com", 443), ("security.ubuntu.com", 80),
               ("ports.ubuntu.com", 80)],
    "github": [("github.com", 443), ("api.github.com", 443), ("codeload.github.com", 443),
               ("raw.githubusercontent.com", 443), ("objects.githubusercontent.com", 443),
               ("release-assets.githubusercontent.com", 443),
               ("media.githubusercontent.com", 443)],
}

# names no preset may allow: publishing endpoints, shared storage anyone can write
# to, forges that take pushes, and neighbours under a shared suffix
NEVER = [("upload.pypi.org", 443), ("test.pypi.org", 443), ("storage.googleapis.com", 443),
         ("salsa.debian.org", 443), ("uploads.github.com", 443), ("gist.github.com", 443),
         ("attacker.githubusercontent.com", 443), ("ghcr.io", 443),
         ("evil.pythonhosted.org", 443), ("esm.ubuntu.com", 443),
         ("pypi.org", 80), ("registry.npmjs.org", 80), ("github.com", 22)]


@pytest.fixture(scope="module")
def ctl(sluice_bin):
    def run(*args):
        return subprocess.run([sluice_bin("sluicectl"), *map(str, args)],
                              capture_output=True, text=True, timeout=10)
    return run


def explain(ctl, policy, name, port):
    """The pattern of the rule that allows NAME:PORT under POLICY, or None."""
    r = ctl("explain", policy, f"{name}:{port}")
    if r.returncode == 1:
        assert r.stdout.startswith("deny:"), r
        return None
    assert r.returncode == 0 and r.stdout.startswith("allow:"), r
    return re.search(r"^  rule: \S+ domain (\S+) ports", r.stdout, re.M).group(1)


def test_the_table_covers_every_shipped_preset():
    assert sorted(p.stem for p in PRESETS.glob("*.yaml")) == sorted(CONTACTS)


@pytest.mark.parametrize("preset", sorted(CONTACTS))
def test_a_preset_checks_clean_and_every_rule_has_its_reason(ctl, preset):
    path = PRESETS / f"{preset}.yaml"
    r = ctl("check", path)
    assert r.returncode == 0 and r.stderr == "", r      # no warning either
    lines = path.read_text().splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("  - domain:")]
    assert rules
    for i in rules:
        assert lines[i - 1].startswith("  #"), f"{preset}.yaml:{i + 1}: no comment says why"
    assert all(line.startswith("    ports: [") for line in (lines[i + 1] for i in rules)), \
        "every rule lists its ports"


@pytest.mark.parametrize("preset", sorted(CONTACTS))
def test_a_preset_allows_what_its_clients_contact_and_only_that(ctl, preset):
    path = PRESETS / f"{preset}.yaml"
    used = {explain(ctl, path, name, port) for name, port in CONTACTS[preset]}
    assert None not in used, [c for c in CONTACTS[preset]
                              if explain(ctl, path, *c) is None]
    # no rule the table does not justify
    patterns = {r["domain"] for r in yaml.safe_load(path.read_text())["egress"]}
    assert used == patterns
    for other, contacts in CONTACTS.items():
        if other == preset:
            continue
        allowed = [c for c in contacts if explain(ctl, path, *c)]
        assert allowed == [], f"{preset} allows {other}'s {allowed}"
    allowed = [c for c in NEVER if explain(ctl, path, *c)]
    assert allowed == [], f"{preset} allows {allowed}"


def test_all_presets_include_together_without_a_duplicate(ctl, tmp_path):
    policy = tmp_path / "policy.yaml"
    names = sorted(CONTACTS)
    # relative to the including file's directory, one of them through another file
    (tmp_path / "more.yaml").write_text(
        "include:\n  - " + str(PRESETS / f"{names[0]}.yaml") + "\n")
    policy.write_text("version: 1\ninclude:\n  - more.yaml\n" +
                      "".join(f"  - {PRESETS / n}.yaml\n" for n in names[1:]) +
                      "egress:\n  - domain: internal.example.test\n")
    r = ctl("check", policy)
    total = sum(len(yaml.safe_load((PRESETS / f"{n}.yaml").read_text())["egress"])
                for n in names)
    assert r.returncode == 0 and r.stderr == "", r
    assert f"ok, {total + 1} rules ({total} from {len(names) + 1} included files)" in r.stdout
    for preset, contacts in CONTACTS.items():
        for name, port in contacts:
            out = ctl("explain", policy, f"{name}:{port}").stdout
            assert f"rule: {PRESETS / preset}.yaml:" in out, (name, port, out)
    for name, port in NEVER:
        assert explain(ctl, policy, name, port) is None, (name, port)


def test_a_wildcard_over_githubusercontent_is_refused(ctl, tmp_path):
    """Why github.yaml lists each content host: the suffix is a public one."""
    p = tmp_path / "p.yaml"
    p.write_text("version: 1\negress:\n  - domain: '*.githubusercontent.com'\n")
    r = ctl("check", p)
    assert r.returncode == 1 and "under the public suffix 'githubusercontent.com'" in r.stderr


@pytest.mark.parametrize("preset", ["github", "go"])
def test_the_inspect_rules_a_preset_suggests_are_valid(ctl, preset, tmp_path):
    """The commented-out read-only rules, uncommented, are a valid policy."""
    text = (PRESETS / f"{preset}.yaml").read_text()
    block = re.search(r"^#   (- domain: .*\n(?:#     .*\n)+)", text, re.M).group(1)
    assert block.count("\n") >= 3, block
    rule = re.sub(r"^#   ", "  ", block.replace("\n#     ", "\n    ").rstrip("\n"), flags=re.M)
    p = tmp_path / "p.yaml"
    p.write_text("version: 1\negress:\n  " + rule + "\n")
    r = ctl("check", p)
    assert r.returncode == 0, (p.read_text(), r)
    assert explain(ctl, p, yaml.safe_load(p.read_text())["egress"][0]["domain"], 443)


def test_pip_itself_contacts_what_the_pypi_preset_allows(ctl):
    index = pytest.importorskip("pip._internal.models.index")
    path = PRESETS / "pypi.yaml"
    assert explain(ctl, path, urlsplit(index.PyPI.simple_url).hostname, 443)
    assert explain(ctl, path, index.PyPI.file_storage_domain, 443)


def test_apt_on_this_debian_contacts_what_the_debian_preset_allows(ctl):
    """The machine's own apt sources (a Debian image's defaults, on CI too)."""
    sources = [p for p in [Path("/etc/apt/sources.list"),
                           *Path("/etc/apt/sources.list.d").glob("*")]
               if p.is_file() and p.suffix in (".list", ".sources")]
    urls = set()
    for p in sources:       # "URIs: ..." (deb822) and "deb URL ..." lines, not comments
        for line in p.read_text().splitlines():
            if re.match(r"\s*(URIs:|deb(-src)?\s)", line):
                urls.update(re.findall(r"\b(https?)://([^/\s]+)", line))
    debian = sorted(u for u in urls if u[1].endswith(".debian.org"))
    if not debian:
        pytest.skip("this machine's apt sources name no debian.org host")
    for scheme, host in debian:
        assert explain(ctl, PRESETS / "debian.yaml", host, 443 if scheme == "https" else 80), \
            (scheme, host)


# ------------------------------------------------------------------ in the proxy

INCLUDING = """\
version: 1
include: [../rules/extra.yaml]
destinations:
  allow_ranges: [203.0.113.0/24, 2001:db8::/32]
"""


def test_the_proxy_reloads_when_an_included_file_changes(world, sluice_bin, tmp_path):
    """An included file in another directory: its rules decide flows, the records
    and the sandbox's hints name it, and editing it reloads like editing the policy
    (its directory is watched too, after the privilege drop)."""
    rules = tmp_path / "rules"
    rules.mkdir()
    extra = rules / "extra.yaml"
    extra.write_text("egress:\n  - domain: www.example.test\n    ports: [443]\n")
    open_path_to(extra)
    ns = Netsetup(world, sluice_bin("sluice-netsetup"), tmp_path / "run")
    px = None
    try:
        sb = ns.up()
        px = Proxy(world, sluice_bin, sb, tmp_path / "px", policy=INCLUDING,
                   listen=[f"{sb.gw}:{PROXY_PORT}"], args=("--dns-listen", f"{sb.gw}:{DNS_PORT}"))
        get = ["curl", "-sS", "--max-time", "5", "-i", "http://www.example.test/"]
        r = world.run(sb.name, get, timeout=15)
        assert r.stdout.startswith("HTTP/1.1 403"), r.stdout
        assert "the rule at line 2 of extra.yaml allows www.example.test on port 443" in r.stdout
        extra.write_text("egress:\n  - domain: www.example.test\n    ports: [80, 443]\n")
        px.wait_record(event="reload", verdict="allow")
        r = world.run(sb.name, get, timeout=15)
        assert r.stdout.startswith("HTTP/1.1 200"), r.stdout
        start = px.wait_record(event="flow_start", host="www.example.test", port=80)
        assert start["rule"] == f"{tmp_path}/px/../rules/extra.yaml:2", start
        # a broken include keeps the policy in force, the error at the included file's line
        extra.write_text("egress:\n  - domain: www.example.test\n    ports: [0]\n")
        bad = px.wait_record(event="reload", verdict="deny")
        assert f"{tmp_path}/px/../rules/extra.yaml:3:13: port 0 out of range" in bad["error"]
        assert world.run(sb.name, get, timeout=15).stdout.startswith("HTTP/1.1 200")
    finally:
        if px and px.proc.alive():
            px.proc.stop()
        if px:
            check_log(px)
        ns.cleanup()
