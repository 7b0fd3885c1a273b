"""A bench JSON report read back into the model (cgo_audit/model.py), so that
what was written on one machine (a CI shard) can be joined and rendered by
the same reporters on another. The inverse of json_report.report_dict, for
what a report keeps: figures, verdicts, growth, sites as shown; not the raw
stacks or process records, which never leave the machine that measured them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cgo_audit.errors import AuditError
from cgo_audit.model import AuditReport, BenchResult, PackageOutcome, RunPoint
from cgo_audit.report.json_report import SCHEMA_VERSION
from cgo_audit.verdicts import analysis
from cgo_audit.verdicts.sites import ShownFrame, Site, SiteKey

FRAME = re.compile(r"^(?P<function>\S+) (?P<file>\S+):(?P<line>\d+)(?P<inlined> \(inlined\))?$")


def growth_from(data: dict[str, Any]) -> analysis.Growth:
    return analysis.Growth(metric=data["metric"], shape=data["shape"], per_op=data["per_op"],
                           fitted_per_op=data["fitted_per_op"], total=data["total"], r2=data["r2"],
                           segment_per_op=tuple(data["segment_per_op"]))


def point_from(data: dict[str, Any]) -> RunPoint:
    return RunPoint(
        n=data["n"], ops=data["ops"], source=data["source"], c_bytes=data["c_live_bytes"],
        c_allocs=data["c_live_allocs"], go_heap_bytes=data["go_heap_live_bytes"], goroutines=data["goroutines"],
        fds=data["fds"], sockets=data["sockets"], threads=data["threads"], rss_bytes=data["rss_bytes"],
        c_peak_bytes=data["c_peak_bytes"], go_mapped_bytes=data["go_mapped_bytes"], cgo_calls=data["cgo_calls"],
        finalizers_run=data["finalizers_run"], elapsed_s=data["elapsed_s"], ns_per_op=data["ns_per_op"],
        status=data["status"], ok=data.get("ok", True))


def frame_from(text: str) -> ShownFrame:
    """A frame as the report printed it ('pkg.Func file.go:12'): printing it
    again gives the same text."""
    match = FRAME.match(text)
    if match is None:
        return ShownFrame(function=text, file="", line=0, inlined=False, address=0, module="")
    return ShownFrame(function=match["function"], file=match["file"], line=int(match["line"]),
                      inlined=bool(match["inlined"]), address=0, module="")


def site_from(data: dict[str, Any]) -> Site:
    key = SiteKey(function=data["function"], file=data["file"], line=data["line"], c_function=data["c_function"],
                  c_stack=tuple(data["c_stack"]), call_pc=int(data["call_pc"], 16), via=data.get("via") or "")
    return Site(key=key, bytes_per_op=data["bytes_per_op"], allocs_per_op=data["allocs_per_op"],
                shape=data["shape"], stack=[frame_from(text) for text in data["stack"]],
                created_by=data.get("created_by"), call=data.get("call", 0),
                error_bytes_per_op=data.get("error_bytes_per_op"))


def result_from(data: dict[str, Any]) -> BenchResult:
    growth = {key: growth_from(value) for key, value in data["growth"].items()}
    decided = analysis.decide(growth)
    verdicts = decided
    if data["verdict"] not in ("error", "skipped"):
        # What the report said, with the undecided metrics its growth shows.
        verdicts = analysis.Verdicts(main=data["verdict"], all=tuple(data["verdicts"]), undecided=decided.undecided)
    return BenchResult(
        package=data["package"], name=data["name"], points=[point_from(s) for s in data["samples"]],
        verdicts=verdicts, growth=growth, notes=list(data["notes"]),
        accepted_by_baseline=data["accepted_by_baseline"], within_threshold=data["within_threshold"],
        error=data["error"], skipped=data["skipped"], sites=[site_from(s) for s in data["sites"]],
        runtime_c_bytes_per_op=data["runtime_c_bytes_per_op"],
        sample_period_bytes=data.get("sites_sampled_every_bytes") or 0)


def report_from(data: dict[str, Any]) -> tuple[AuditReport, int]:
    """The report and the exit status it was written with."""
    results = [result_from(r) for r in data["results"]]
    packages = [PackageOutcome(p["package"], p["status"], p.get("detail", ""), p.get("duration_s", 0.0))
                for p in data.get("packages", [])]
    return AuditReport(results=results, packages=packages, settings=dict(data.get("settings") or {})), \
        int(data["exit_status"])


def load_report(path: Path) -> tuple[AuditReport, int]:
    """A `bench --json` report from a file; a one-line error if it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot read the report {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("tool") != "cgo-audit" or "results" not in data:
        raise AuditError(f"{path} is not a cgo-audit bench report (no \"results\")")
    if data.get("schema") != SCHEMA_VERSION:
        raise AuditError(f"{path} has report schema {data.get('schema')}, this cgo-audit reads {SCHEMA_VERSION}")
    try:
        return report_from(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditError(f"{path} is not a complete cgo-audit bench report ({type(exc).__name__}: {exc})") from None
