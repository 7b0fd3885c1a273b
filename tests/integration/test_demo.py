"""`cgo-audit demo`: the field guide's story as one HTML report, the
sawtooth of the leaky service beside the flat line of the fixed one, checked
in a real browser."""

from __future__ import annotations

import pytest

from browser import PageOutline, run_chromium
from helpers import run_cli

# The demo runs a service until it has been killed three times.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    page = tmp_path_factory.mktemp("demo") / "demo.html"
    # Until three kills (the default), however busy the machine: a state, not seconds.
    proc = run_cli("demo", "--memory-limit", "64MiB", "--html", str(page), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, page


def test_the_leaky_service_is_killed_and_restarted_and_the_fixed_one_is_not(demo):
    proc, _ = demo
    text = " ".join(proc.stdout.split())
    leaky = next(line for line in proc.stdout.splitlines() if line.startswith("leaky:"))
    assert "cgo-leak" in leaky and leaky.count("exceeded its memory limit") == 3
    assert "fixed: clean, started 1 time(s)" in text
    assert "cstring.GetValueLeaky getvalue.go:" in text and "C.CString" in text


def test_the_report_shows_the_sawtooth_beside_the_flat_line(demo):
    _, page = demo
    outline = PageOutline(page.read_text())
    cards = [attrs for tag, attrs in outline.elements if "data-verdict" in attrs and attrs.get("id")]
    assert [card["data-verdict"] for card in cards] == ["cgo-leak", "clean"]
    c_heap = [chart["attrs"] for chart in outline.charts if chart["attrs"].get("data-metric") == "c_bytes"]
    assert len(c_heap) == 2 and all(chart["svgs"] for chart in outline.charts)
    assert int(c_heap[0].get("data-restarts", "0")) >= 2 and int(c_heap[1].get("data-restarts", "0")) == 0
    assert "What go tool pprof -top says about the leaky service's heap" in outline.text
    assert "C.free(unsafe.Pointer(ckey))" in outline.text


@pytest.mark.browser
def test_a_person_sees_it_in_a_browser(demo):
    _, page = demo
    shot = page.with_suffix(".png")
    proc = run_chromium("--hide-scrollbars", "--window-size=1280,3000", f"--screenshot={shot}", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    dom = run_chromium("--dump-dom", page.as_uri()).stdout
    assert dom.count('data-metric="c_bytes"') == 2 and "cgo-leak" in dom
