"""`bench --shard I/N` and `merge`: four shards of the fixtures, merged, give
exactly what one unsharded audit gives."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cgo_audit.measure.shards import durations_from_report, split

from helpers import FIXTURES, REPO, assert_one_line_error, audit_json, run_cli

PACKAGES = ["./causes", "./cstring", "./lookalikes", "./cmd/..."]   # leaks, look-alikes, and packages without tests
SIZES = ["--sizes", "50,100,200"]


def test_split_covers_every_package_once_and_is_deterministic():
    packages = [f"example.com/p{i:02}" for i in range(11)]
    shards = split(list(reversed(packages)), 4)
    assert sorted(p for shard in shards for p in shard) == packages
    assert [len(shard) for shard in shards] == [3, 3, 3, 2]
    assert shards == split(packages, 4)                       # the order go list gives does not matter
    assert split(packages[:2], 4) == [[packages[0]], [packages[1]], [], []]   # more shards than packages


def test_split_balances_by_duration_longest_first():
    durations = {"a": 100.0, "b": 60.0, "c": 50.0, "d": 10.0, "e": 5.0}
    # LPT: a | b | c, then d and e to the lightest shard (c's, then c+d vs b...).
    assert split(list(durations), 3, durations) == [["a"], ["b", "e"], ["c", "d"]]
    # A package the earlier run never saw weighs the mean of those it did.
    assert split(["a", "new", "d"], 2, {"a": 10.0, "d": 2.0}) == [["a"], ["d", "new"]]


def test_durations_from_a_report(tmp_path):
    report = {"tool": "cgo-audit", "results": [
        {"package": "x", "duration_s": 1.5, "samples": []},
        {"package": "x", "duration_s": 2.0, "samples": []},
        {"package": "y", "samples": [{"elapsed_s": 0.25}, {"elapsed_s": 0.5}]}],
        "packages": [{"package": "z", "duration_s": 7.0}]}
    (tmp_path / "r.json").write_text(json.dumps(report))
    assert durations_from_report(tmp_path / "r.json") == {"x": 3.5, "y": 0.75, "z": 7.0}


def test_bad_shard_arguments(tmp_path):
    assert_one_line_error(run_cli("bench", "--dir", str(FIXTURES), "--shard", "5/4", "./cstring"),
                          "between 1 and N")
    assert_one_line_error(run_cli("bench", "--dir", str(FIXTURES), "--shard", "half", "./cstring"), "I/N")
    (tmp_path / "junk.json").write_text("[1, 2]")
    assert_one_line_error(run_cli("bench", "--dir", str(FIXTURES), "--shard", "1/2", "--shard-durations",
                                  str(tmp_path / "junk.json"), "./cstring"), "not a cgo-audit bench report")
    assert_one_line_error(run_cli("merge", str(tmp_path / "junk.json")), "not a cgo-audit bench report")
    assert_one_line_error(run_cli("merge", str(tmp_path / "missing.json")), "cannot read the report")


def by_key(report: dict) -> dict[tuple[str, str], dict]:
    return {(r["package"], r["name"]): r for r in report["results"]}


@pytest.mark.slow
def test_four_shards_merged_equal_the_unsharded_audit(tmp_path: Path):
    whole_proc, whole = audit_json(tmp_path, "--dir", str(FIXTURES), *SIZES, "-j", "2", *PACKAGES)
    assert whole_proc.returncode == 1, whole_proc.stdout + whole_proc.stderr
    assert all(p["duration_s"] > 0 for p in whole["packages"] if p["status"] == "audited")
    # The four shards side by side, as four CI machines would run them, balanced
    # by the durations the unsharded report recorded.
    shards = [subprocess.Popen([sys.executable, "-m", "cgo_audit", "bench", "--dir", str(FIXTURES), *SIZES,
                                "-j", "1", "--quiet", "--shard", f"{i}/4", "--shard-durations",
                                str(tmp_path / "report.json"), "--json", str(tmp_path / f"shard{i}.json"), *PACKAGES],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(1, 5)]
    outputs = [proc.communicate(timeout=900)[0] for proc in shards]
    assert all(proc.returncode in (0, 1) for proc in shards), outputs
    reports = [json.loads((tmp_path / f"shard{i}.json").read_text()) for i in range(1, 5)]
    shard_packages = [set(r["settings"]["shard_packages"]) for r in reports]
    audited = {p["package"] for p in whole["packages"]}
    assert set().union(*shard_packages) == audited and sum(map(len, shard_packages)) == len(audited)
    assert all(r["settings"]["shard_balanced_by"] == "durations" for r in reports)
    # The longest package has a shard to itself.
    longest = max(whole["packages"], key=lambda p: p["duration_s"])["package"]
    assert {longest} in shard_packages

    out = tmp_path / "merged"
    merged_proc = run_cli("merge", *[str(tmp_path / f"shard{i}.json") for i in range(1, 5)],
                          "--json", f"{out}.json", "--junit", f"{out}.xml", "--html", f"{out}.html")
    assert merged_proc.returncode == whole_proc.returncode, merged_proc.stdout + merged_proc.stderr
    merged = json.loads(Path(f"{out}.json").read_text())
    assert merged["exit_status"] == whole["exit_status"] == 1
    expected, got = by_key(whole), by_key(merged)
    assert set(got) == set(expected) and len(merged["results"]) == len(whole["results"])
    for key, result in expected.items():
        for field in ("verdict", "verdicts", "new_leak", "c_leak_bytes_per_op", "c_leak_allocs_per_op", "error",
                      "skipped"):
            assert got[key][field] == result[field], (key, field)
        assert [s["function"] for s in got[key]["sites"]] == [s["function"] for s in result["sites"]], key
    cstring = got[("github.com/cgo-audit/cgo-audit/go_fixtures/cstring", "BenchmarkGetValueLeaky")]
    assert cstring["c_leak_bytes_per_op"] == 26.0 and cstring["verdict"] == "cgo-leak"
    assert sorted(p["package"] for p in merged["packages"]) == sorted(audited)
    cases = ET.parse(f"{out}.xml").getroot().iter("testcase")
    assert len(list(cases)) == len(whole["results"])
    assert "BenchmarkGetValueLeaky" in Path(f"{out}.html").read_text()
    summary = [line for line in merged_proc.stdout.splitlines() if "benchmark(s)" in line][-1]
    assert f"{len(whole['results'])} benchmark(s)" in summary

    # A shard that never reported is an error of the merged report, not a smaller clean one.
    partial = run_cli("merge", *[str(tmp_path / f"shard{i}.json") for i in (1, 2, 4)], "--json", f"{out}-3.json")
    missing = json.loads(Path(f"{out}-3.json").read_text())
    errors = [r["error"] for r in missing["results"] if r["error"]]
    assert any("no report for shard 3/4" in e for e in errors), errors
    assert partial.returncode == 1   # a leak in the others still comes first, as in bench
    # The shard that got only the packages without tests, alone: no leak, three
    # shards missing, so the audit could not run (2), as bench says of an error.
    empty = next(i for i, r in enumerate(reports, 1) if not r["results"])
    alone = run_cli("merge", str(tmp_path / f"shard{empty}.json"))
    assert alone.returncode == 2 and alone.stdout.count("no report for shard") == 3, alone.stdout
    assert_one_line_error(run_cli("merge", str(tmp_path / "shard1.json"), str(tmp_path / "shard1.json")),
                          "given twice")
    assert_one_line_error(run_cli("merge", str(tmp_path / "shard1.json"), str(tmp_path / "report.json")),
                          "not a shard's report")
    other = dict(reports[1], settings={**reports[1]["settings"], "sizes": [100, 200, 400]})
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert_one_line_error(run_cli("merge", str(tmp_path / "shard1.json"), str(tmp_path / "other.json")),
                          "other settings", "(sizes)")
