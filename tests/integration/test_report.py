"""sluicectl report (issue 19, part 3): golden text and JSON from a fixed log
(data/report.jsonl: two policies, three sandboxes, every verdict, an alert,
hostile strings, a malformed and a cut line); the HTML as a person sees it,
rendered by headless Chromium in a namespace with no network, screenshot and
DOM checked, no request made by the page; and a million records in seconds
with memory that does not grow with them.
"""

import gzip
import json
import re
import subprocess
from pathlib import Path

import pytest

from test_deploy import is_sanitized
from test_suggest import million_and_tenth

DATA = Path(__file__).resolve().parent / "data"
LOG = DATA / "report.jsonl"
SECTIONS = ("summary", "timeline", "top-connections", "top-bytes-up", "top-bytes-down",
            "denials-reason", "denials-sandbox", "sandboxes", "alerts", "policies")
# Chromium's own background traffic (updates, sync, dictionaries) off: the page's
# requests are then the only ones there could be
CHROMIUM = ["unshare", "-n", "chromium", "--headless", "--no-sandbox", "--disable-gpu",
            "--hide-scrollbars", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-default-apps", "--disable-extensions"]


@pytest.fixture(scope="module")
def ctl(sluice_bin):
    def run(*args, input=None, timeout=60):
        return subprocess.run([sluice_bin("sluicectl"), *map(str, args)], capture_output=True,
                              text=True, timeout=timeout, input=input)
    return run


def test_text_is_the_golden_one(ctl):
    r = ctl("report", LOG)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (DATA / "report.txt").read_text()
    # the malformed and the cut line: counted, said, never fatal
    assert r.stderr == "sluicectl report: 2 lines were not flow records and were skipped\n"


def test_json_is_the_golden_one_and_gzip_and_stdin_read_the_same(ctl, tmp_path):
    want = json.loads((DATA / "report.json").read_text())
    r = ctl("report", "--format", "json", LOG)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got == want
    # what the golden file says, said here too: the tables a reader relies on
    assert [t["name"] for t in got["top_by_connections"]] == [
        "pypi.org", "<script>alert(1)</script>", "api.github.com", "files.pythonhosted.org"]
    assert got["denials_by_reason"] == {"not_allowlisted": 2, "sniff_timeout": 1,
                                        "method_not_allowed": 1}
    assert [p["hash"] for p in got["policies"]] == ["84c7041f8ff5", "9a1b2c3d4e5f"]
    assert got["alerts"][0]["samples"][2] == '"quoted" & <b>bold</b>'
    gz = tmp_path / "log.jsonl.gz"
    gz.write_bytes(gzip.compress(LOG.read_bytes()))
    assert json.loads(ctl("report", "--format", "json", gz).stdout) == want
    assert json.loads(ctl("report", "--format", "json", "-",
                          input=LOG.read_text()).stdout) == want


def test_since_and_until_keep_a_window(ctl):
    r = ctl("report", "--format", "json", "--since", "2026-12-05T10:05",
            "--until", "2026-12-05T11", LOG)
    got = json.loads(r.stdout)
    assert got["records"] == 7 and got["first"] == "2026-12-05T10:05:00.000Z"
    assert [s["name"] for s in got["sandboxes"]] == ["agent-7"]
    assert ctl("report", "--format", "svg", LOG).returncode == 2
    assert ctl("report").returncode == 2
    assert ctl("report", "/nonexistent.jsonl").returncode == 1


def chromium(*args, timeout=90):
    r = subprocess.run([*CHROMIUM, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def page_requests(netlog):
    """The URLs the page asked for (Chromium's own requests have no origin)."""
    d = json.loads(netlog.read_text())
    types = {v: k for k, v in d["constants"]["logEventTypes"].items()}
    return sorted({e["params"]["url"] for e in d["events"]
                   if types.get(e["type"]) == "URL_REQUEST_START_JOB"
                   and "url" in e.get("params", {})
                   and e["params"].get("initiator") != "not an origin"})


def test_the_html_as_a_person_sees_it(ctl, tmp_path):
    from PIL import Image

    html = tmp_path / "report.html"
    r = ctl("report", LOG, "-o", html)
    assert r.returncode == 0, r.stderr
    text = html.read_text()
    # one file: no script, nothing fetched, a policy that forbids fetching anyway
    assert "<script" not in text.lower().replace("&lt;script", "")
    assert not re.search(r'<[a-z][^>]*\s(src|href)\s*=', text)
    assert "default-src 'none'" in text
    # hostile strings from the log are text in HTML and SVG alike
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "ci-2&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in text
    assert "&quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt;" in text
    # the DOM Chromium builds: every section, no element a log string could have made
    dom = chromium("--dump-dom", f"file://{html}").stdout
    for s in SECTIONS:
        assert f'<section id="{s}">' in dom, s
    assert "<script" not in dom and "<img" not in dom and "<b>" not in dom
    assert dom.count("<svg") == 4               # the timeline and three bar charts
    for heading in ("Decisions over time", "Top destinations by connections",
                    "Denials by reason", "Denials by sandbox", "Sandboxes", "Alerts (1)",
                    "Policies"):
        assert f"<h2>{heading}</h2>" in dom, heading
    # the screenshot: the picture is there, in its colours
    png, netlog = tmp_path / "report.png", tmp_path / "netlog.json"
    chromium("--window-size=1000,1600", f"--log-net-log={netlog}",
             "--net-log-capture-mode=Everything", f"--screenshot={png}", f"file://{html}")
    assert page_requests(netlog) == []
    img = Image.open(png).convert("RGB")
    assert img.size == (1000, 1600)
    colours = {c for _, c in img.getcolors(maxcolors=1 << 20)}
    for name, rgb in (("allow bars", (0x3b, 0x8f, 0x4f)), ("deny bars", (0xc0, 0x39, 0x2b)),
                      ("audit bars", (0xd9, 0xa4, 0x00)), ("top bars", (0x2c, 0x6f, 0xbb))):
        assert rgb in colours, name
    # the top of the page is text on white: mostly white, with dark pixels
    head = img.crop((0, 0, 1000, 120))
    dark = sum(n for n, c in head.getcolors(maxcolors=1 << 20) if sum(c) < 200)
    assert dark > 500, dark


def test_a_million_records_in_seconds_and_bounded_memory(ctl, tmp_path, sluice_bin):
    def make(path, n):
        with open(path, "w") as f:
            for i in range(n):
                f.write('{"ts":"2026-12-05T%02d:%02d:%02d.000Z","sandbox":"s%d",'
                        '"event":"flow_start","host":"n%d.example.org","port":443,'
                        '"verdict":"%s","policy":"84c7041f8ff5"}\n'
                        % (i // 360000 % 24, i // 6000 % 60, i // 100 % 60, i % 10,
                           i % 1000, "allow" if i % 7 else "deny"))

    out, secs, rss_big, rss_small = million_and_tenth(
        "report", make, [sluice_bin("sluicectl"), "report", "--format", "json"], tmp_path)
    got = json.loads(out)
    assert got["records"] == 1_000_000
    assert sum(t["allow"] + t["deny"] for t in got["timeline"]) == 1_000_000
    assert len(got["sandboxes"]) == 10 and got["top_by_connections"][0]["conns"] == 1000
    sanitized = is_sanitized(sluice_bin("sluicectl"))
    assert secs < (60 if sanitized else 10), secs
    assert rss_big < (64 if sanitized else 16) * 1024, rss_big
    assert rss_big <= rss_small * 1.1 + 1024, (rss_big, rss_small)
