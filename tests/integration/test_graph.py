"""sluicectl graph (issue 19, part 4): the DOT of config/example.yaml is the
golden one; the SVG Graphviz lays out parses as XML and names every rule;
traffic from a log is laid over it, denied destinations in their own cluster,
hostile names escaped; and the picture, rendered by headless Chromium with no
network, shows what it should.
"""

import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from test_report import CHROMIUM, DATA, LOG

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "example.yaml"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def ctl(sluice_bin):
    env = dict(os.environ, LSAN_OPTIONS="print_suppressions=0:suppressions=" +
               str(Path(__file__).resolve().parent / "lsan-graphviz.supp"))

    def run(*args, timeout=60):
        return subprocess.run([sluice_bin("sluicectl"), *map(str, args)], capture_output=True,
                              text=True, timeout=timeout, env=env)
    return run


def svg_texts(path):
    root = ET.parse(path).getroot()             # well-formed XML, or this raises
    assert root.tag == SVG + "svg"
    return [t.text or "" for t in root.iter(SVG + "text")]


def test_dot_of_the_example_is_the_golden_one(ctl):
    r = ctl("graph", EXAMPLE, "--format", "dot")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (DATA / "example.dot").read_text()


def test_svg_names_every_rule(ctl, tmp_path):
    out = tmp_path / "policy.svg"
    r = ctl("graph", EXAMPLE, "-o", out)
    assert r.returncode == 0, r.stderr
    texts = svg_texts(out)
    rules = yaml.safe_load(EXAMPLE.read_text())["egress"]
    for rule in rules:
        kind = "domain" if "domain" in rule else "cidr"
        assert f"{kind} {rule[kind]}" in texts, (rule, texts)
    assert "sandbox" in texts and "everything else" in texts and "(default deny)" in texts
    assert "inspect" in texts and "http: GET,HEAD /repos/*" in texts
    assert "ports 80, 443" in texts


def test_traffic_from_a_log_and_hostile_names(ctl, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(LOG.read_text() + "".join(
        '{"ts":"2026-12-05T12:00:0%d.000Z","sandbox":"x","event":"deny","proto":"tls",'
        '"host":%s,"port":443,"verdict":"deny","reason":"not_allowlisted"}\n' % (i, h)
        for i, h in enumerate(('"a\\"b<c>&d\\\\N.example"', '"\\\\l<script>"'))) + "".join(
        '{"ts":"2026-12-05T12:01:00.000Z","sandbox":"x","event":"deny","proto":"tcp",'
        '"orig_dst":"198.51.100.7:%d","port":%d,"verdict":"deny","reason":"sniff_timeout"}\n'
        % (p, p) for p in range(1, 11)))
    out = tmp_path / "traffic.svg"
    r = ctl("graph", EXAMPLE, "--log", log, "-o", out)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    texts = svg_texts(out)
    assert "denied destinations (from the logs)" in texts
    assert "telemetry.example.com" in texts and "203.0.113.99" in texts
    assert "port 22, sniff_timeout" in texts
    # a scan is one destination: the address, some of its ports, how many more
    assert "198.51.100.7" in texts
    assert "ports 1, 2, 3, 4, 5, 6, 7, 8 and 2 more, sniff_timeout" in texts
    # a name from a log is text: escaped for XML, its backslashes not Graphviz escapes
    assert 'a"b<c>&d\\N.example' in texts and "\\l<script>" in texts
    assert "<script" not in text
    # edges carry what flowed over each rule, wider with more bytes
    assert "2 flows, 1.0 MiB" in texts and "1 flow, 50.0 MiB" in texts
    widths = {float(w) for w in re.findall(r'stroke-width="([\d.]+)"', text)}
    assert max(widths) == 6.0 and min(widths) < 5, widths    # 50 MiB, 1 MiB (1: the rest)
    dot = ctl("graph", EXAMPLE, "--log", log, "--format", "dot").stdout
    assert "subgraph cluster_denied" in dot


def test_usage_and_errors(ctl, tmp_path):
    assert ctl("graph").returncode == 2
    assert ctl("graph", EXAMPLE, "--format", "png").returncode == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\negress:\n  - domain: '*.com'\n")
    assert ctl("graph", bad).returncode == 2
    assert ctl("graph", EXAMPLE, "--log", "/nonexistent").returncode == 1


def test_the_picture_as_a_person_sees_it(ctl, tmp_path):
    from PIL import Image

    out, png = tmp_path / "policy.svg", tmp_path / "policy.png"
    assert ctl("graph", EXAMPLE, "--log", LOG, "-o", out).returncode == 0
    r = subprocess.run([*CHROMIUM, "--window-size=900,700", f"--screenshot={png}",
                        f"file://{out}"], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    img = Image.open(png).convert("RGB")
    colours = {c for _, c in img.getcolors(maxcolors=1 << 20)}
    for name, rgb in (("allowed edges", (0x3b, 0x8f, 0x4f)), ("deny edge", (0xc0, 0x39, 0x2b)),
                      ("inspect rule", (0xfd, 0xf2, 0xe0)), ("sandbox", (0xdd, 0xe6, 0xf3))):
        assert rgb in colours, name
