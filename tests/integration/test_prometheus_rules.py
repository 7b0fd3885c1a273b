"""The shipped alert rules (deploy/prometheus/cgo-audit-rules.yml), tested two
ways: promtool's unit tests on synthetic series, and a real Prometheus server
scraping real `cgo-audit run --metrics-addr` processes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet_helpers import scrape, start_run, stop, value
from helpers import REPO, free_port, wait_for

pytestmark = pytest.mark.slow

RULES = REPO / "deploy" / "prometheus" / "cgo-audit-rules.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "cgo-audit-rules.test.yml"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
needs_prometheus = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (Debian package prometheus)")

DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def scale_duration(text: str, factor: float) -> str:
    """'30m' scaled by 1/60 -> '30s' (never below 1s, a scrape interval)."""
    match = DURATION.fullmatch(text.strip())
    assert match, text
    seconds = int(match.group(1)) * SECONDS[match.group(2)]
    return f"{max(1, round(seconds * factor))}s"


def scaled_rules(rules: dict[str, Any], factor: float) -> dict[str, Any]:
    """The same rules with every range window and `for` duration scaled: a
    test can wait seconds for what takes minutes in production, and still test
    the shipped expressions (nothing else in them changes)."""
    groups = []
    for group in rules["groups"]:
        scaled = []
        for rule in group["rules"]:
            rule = dict(rule)
            rule["expr"] = re.sub(r"\[(\w+)\]", lambda m: f"[{scale_duration(m.group(1), factor)}]", rule["expr"])
            if "for" in rule:
                rule["for"] = scale_duration(rule["for"], factor)
            scaled.append(rule)
        groups.append({**group, "rules": scaled})
    return {"groups": groups}


@needs_promtool
def test_promtool_checks_and_unit_tests_the_rules():
    check = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 5 rules found" in check.stdout
    unit = subprocess.run([PROMTOOL, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent,
                          capture_output=True, text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert "SUCCESS" in unit.stdout


def test_scaled_rules_change_only_durations():
    shipped = yaml.safe_load(RULES.read_text())
    fast = scaled_rules(shipped, 1 / 60)
    leak = {r["alert"]: r for r in fast["groups"][0]["rules"]}["CgoAuditNativeLeak"]
    assert leak["expr"] == "deriv(cgo_audit_c_heap_live_bytes[10s]) > 0" and leak["for"] == "30s"
    for before, after in zip(shipped["groups"][0]["rules"], fast["groups"][0]["rules"]):
        assert DURATION.sub("D", before["expr"]) == DURATION.sub("D", after["expr"])
        assert before["labels"] == after["labels"] and before["annotations"] == after["annotations"]


def prometheus_api(base: str, path: str, **params: str) -> Any:
    url = f"{base}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.loads(answer.read())
    except OSError:
        return None
    return body["data"] if body.get("status") == "success" else None


def firing(base: str, alert: str) -> set[str]:
    data = prometheus_api(base, "query", query=f'ALERTS{{alertname="{alert}", alertstate="firing"}}')
    return {series["metric"]["instance"] for series in data["result"]} if data else set()


@needs_prometheus
def test_prometheus_alerts_on_exactly_the_two_leaky_replicas(tmp_path: Path, leakyserver):
    # Three replicas of the fixture server, each under `cgo-audit run` with
    # loopback load: two leak 26 B of C heap per request, one is fixed.
    runs = {mode_name: start_run(leakyserver, mode, "--load", "http://127.0.0.1:{port}/value?key=timeout",
                                 "--concurrency", "1", seconds=600, interval=0.5)
            for mode_name, mode in (("leaky-a", "leaky"), ("leaky-b", "leaky"), ("fixed", "fixed"))}
    instances = {name: urllib.parse.urlsplit(url).netloc for name, (_proc, url, _port) in runs.items()}
    # The shipped rules with a minute scaled to a second.
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(scaled_rules(yaml.safe_load(RULES.read_text()), 1 / 60)))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [{"job_name": "cgo-audit", "static_configs": [{"targets": sorted(instances.values())}]}],
    }))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "prometheus.log").open("w")
    server = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                               f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        # Every replica is up and measured before anything is concluded.
        for name, (_proc, url, _port) in runs.items():
            wait_for(lambda: (s := scrape(url)) and value(s, "cgo_audit_c_heap_live_bytes") is not None,
                     120, interval=0.2)
        wait_for(lambda: (data := prometheus_api(base, "targets")) and
             sum(t["health"] == "up" for t in data["activeTargets"]) == 3, 120, interval=0.2)
        leaky = {instances["leaky-a"], instances["leaky-b"]}
        wait_for(lambda: firing(base, "CgoAuditNativeLeak") >= leaky, 240, interval=1)
        assert firing(base, "CgoAuditNativeLeak") == leaky
        # The fixed replica was scraped all along (a whole `for` period and window):
        # its silence is a measurement, not a missing target.
        data = prometheus_api(base, "query", query=f'count_over_time(cgo_audit_c_heap_live_bytes'
                              f'{{instance="{instances["fixed"]}"}}[40s])')
        assert data and float(data["result"][0]["value"][1]) >= 30, data
        alerts = prometheus_api(base, "alerts")
        native = {a["labels"]["instance"] for a in alerts["alerts"] if a["labels"]["alertname"] == "CgoAuditNativeLeak"
                  and a["state"] == "firing"}
        assert native == leaky
        assert all(a["labels"]["program"] == "leakyserver" and a["labels"]["pid"] for a in alerts["alerts"])
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
        for proc, _url, _port in runs.values():
            out = stop(proc)
            assert "Traceback" not in out, out
