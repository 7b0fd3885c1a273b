"""A feature whose extra is not installed is refused before anything runs, in
one line naming the extra (tests/integration/test_packaging.py checks the same on a real
install without the extra; this one needs no network)."""

from __future__ import annotations

import subprocess
import sys

from helpers import assert_one_line_error, copy_cstring_module

# matplotlib made unimportable, as in an install without the html extra.
WITHOUT_MATPLOTLIB = ("import sys; sys.modules['matplotlib'] = None; from cgo_audit.cli import main; "
                      "sys.exit(main(sys.argv[1:]))")


def cli_without_matplotlib(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_MATPLOTLIB, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_html_without_its_extra_is_refused_before_the_audit_runs(tmp_path):
    module = copy_cstring_module(tmp_path / "cstring")
    report = tmp_path / "report.json"
    proc = cli_without_matplotlib("bench", "--dir", str(module), "--json", str(report), "--html",
                                  str(tmp_path / "r.html"), cwd=tmp_path)
    assert_one_line_error(proc, "the HTML report (--html) needs the 'html' extra (matplotlib)",
                          "pip install 'cgo-audit[html]'")
    assert not report.exists()   # refused up front, not after a whole audit


def test_the_demo_needs_the_html_extra_too(tmp_path):
    proc = cli_without_matplotlib("demo", "--max-seconds", "1", cwd=tmp_path)
    assert_one_line_error(proc, "the HTML report (--html) needs the 'html' extra")
