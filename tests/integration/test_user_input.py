"""User-input errors found past the parser are AuditErrors: one line, exit
status 2, never "internal error"."""

from __future__ import annotations

from helpers import assert_one_line_error, run_cli


def test_a_load_url_that_is_not_http_is_refused_in_one_line():
    proc = run_cli("run", "--duration", "5", "--load", "https://127.0.0.1:1/value", "--", "true")
    assert_one_line_error(proc, "--load takes http:// URLs, not 'https://127.0.0.1:1/value'")
    assert "internal error" not in proc.stderr


def test_a_missing_working_directory_is_named(tmp_path):
    proc = run_cli("run", "--cwd", str(tmp_path / "nope"), "--", "true")
    assert_one_line_error(proc, "--cwd: no such directory")


def test_a_baseline_that_is_not_json_is_named(tmp_path):
    baseline = tmp_path / "baseline.json"
    baseline.write_text("{not json")
    proc = run_cli("bench", "--baseline", str(baseline), "--dir", "go_fixtures", "./cstring")
    assert_one_line_error(proc, f"baseline file {baseline} is not valid JSON")


def test_watching_a_process_that_does_not_exist():
    assert_one_line_error(run_cli("watch", "--duration", "1", "999999999"), "no process with pid 999999999")


def test_requests_without_a_load_is_refused_before_anything_starts():
    # attach would otherwise have seized the process: refused before that.
    for command in (("run", "--requests", "10", "--", "true"), ("attach", "--requests", "10", "999999999")):
        assert_one_line_error(run_cli(*command), "--requests N needs --load URL")
