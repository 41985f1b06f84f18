"""tests/bench/report, the side-by-side performance report, drawn from a fixture
(data/bench/raw: one quick run of every benchmark on a 2-CPU VM) without
running any benchmark: the page's tables say what the figures say, and the
plots, as a person sees them in a browser, show every program in its colour."""

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from test_report import chromium

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "tests" / "bench" / "report"
RAW = Path(__file__).resolve().parent / "data" / "bench" / "raw"
COLOURS = {"sluice": (0x2c, 0x6f, 0xbb), "nginx": (0x3b, 0x8f, 0x4f),
           "haproxy": (0xd9, 0xa4, 0x00), "squid": (0xc0, 0x39, 0x2b),
           "unbound": (0x8e, 0x44, 0xad), "dnsmasq": (0x16, 0xa0, 0x85)}
PLOTS = {"proxy-cpu.png": ("sluice", "nginx", "haproxy", "squid"),
         "proxy-rates-ttfb.png": ("sluice", "nginx", "haproxy", "squid"),
         "proxy-memory.png": ("sluice", "nginx", "haproxy", "squid"),
         "dns.png": ("sluice", "unbound", "dnsmasq"),
         "netsetup.png": ("sluice",)}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("bench")
    r = subprocess.run([sys.executable, REPORT, "--from", RAW.parent, "--out", out],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


def fig(v, fmt):
    return f"{format(statistics.median(v), fmt)} ({format(min(v), fmt)}-{format(max(v), fmt)})"


def test_the_tables_say_what_the_figures_say(page):
    text = (page / "README.md").read_text()
    proxy = json.loads((RAW / "proxy.json").read_text())
    run = json.loads((RAW / "run.json").read_text())
    # the machine and the versions the run recorded
    assert f"| kernel | {run['machine']['kernel']} |" in text
    assert f"Squid {run['versions']['Squid']}" in text
    # medians with their range, per program, and sluice / peer as the median of the
    # per-round ratios
    cpu = proxy["cpu_us_per_conn"]
    row = next(l for l in text.splitlines() if l.startswith("| CPU per TLS connection, µs"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:6] == ["-", fig(cpu["sluice"], ".0f"), fig(cpu["nginx"], ".0f"),
                          fig(cpu["haproxy"], ".0f"), fig(cpu["squid"], ".0f")]
    want = statistics.median(s / n for s, n in zip(cpu["sluice"], cpu["nginx"]))
    assert cells[6] == f"{want:.2f}"
    assert f"CPU per TLS connection {want:.2f} × nginx stream's" in text
    # every benchmark has its section and its goals, a missed goal stands out
    for title in ("The proxy against nginx stream, HAProxy and Squid",
                  "DNS against unbound and dnsmasq", "Sandbox lifecycle against the shell",
                  "Policy lookups", "What limits cost"):
        assert f"## {title}" in text, title
    for g in proxy["goals"]:
        assert g["text"] in text
    assert "| CPU per TLS connection <= 0.75 x nginx stream | " in text
    assert "**missed**" in text
    # every plot the page shows is there, and nothing else
    shown = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert sorted(shown) == sorted(PLOTS)
    assert sorted(p.name for p in page.glob("*.png")) == sorted(PLOTS)


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_each_plot_as_a_person_sees_it(page, name, tmp_path):
    from PIL import Image

    html = tmp_path / "plot.html"
    html.write_text(f'<!doctype html><body style="margin:0;background:#fff">'
                    f'<img src="file://{page / name}"></body>')
    png = tmp_path / "shot.png"
    chromium("--window-size=1000,400", "--allow-file-access-from-files",
             f"--screenshot={png}", f"file://{html}")
    img = Image.open(png).convert("RGB")
    assert img.size == (1000, 400)
    counts = {c: n for n, c in img.getcolors(maxcolors=1 << 20)}
    # every program's colour fills a mark (a bar, a line) of some size
    for prog in PLOTS[name]:
        assert counts.get(COLOURS[prog], 0) > 150, (name, prog, counts.get(COLOURS[prog], 0))
    # axes and labels: dark text on a white page, not an empty or broken image
    dark = sum(n for c, n in counts.items() if sum(c) < 200)
    white = counts.get((255, 255, 255), 0)
    assert dark > 2000 and white > 1000 * 400 * 0.4, (dark, white)
