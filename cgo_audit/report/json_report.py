"""The JSON report. Field names are a contract: CI jobs and later tools read them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cgo_audit import __version__
from cgo_audit.model import AuditReport, BenchResult, Findings, ProgramResult
from cgo_audit.verdicts.analysis import C_ALLOCS, C_BYTES, FDS, GO_HEAP, GOROUTINES, RSS

SCHEMA_VERSION = 1


def findings_dict(result: Findings) -> dict[str, Any]:
    """The fields every result has, bench or run."""
    return {
        "verdict": result.verdict,
        "verdicts": [result.verdict] if result.verdict in ("error", "skipped") else list(result.verdicts.all),
        "accepted_by_baseline": result.accepted_by_baseline,
        "within_threshold": result.within_threshold,
        "new_leak": result.is_new_leak,
        # null: the metric applies but was not measured (never a 0 that reads as flat)
        "c_leak_bytes_per_op": result.measured_per_op(C_BYTES.key),
        "c_leak_allocs_per_op": result.measured_per_op(C_ALLOCS.key),
        "rss_growth_bytes_per_op": result.measured_per_op(RSS.key),
        "go_heap_growth_bytes_per_op": result.measured_per_op(GO_HEAP.key),
        "goroutines_per_op": result.measured_per_op(GOROUTINES.key),
        "fds_per_op": result.measured_per_op(FDS.key),
        "incomplete": result.is_incomplete,
        "why_incomplete": list(result.verdicts.why_incomplete),
        "not_measured_metrics": list(result.unmeasured),
        "sites": [site.as_dict() for site in result.sites],
        "runtime_c_bytes_per_op": result.runtime_c_bytes_per_op,
        "sites_sampled_every_bytes": result.sample_period_bytes or None,
        "growth": {key: growth.as_dict() for key, growth in result.growth.items()},
        "notes": list(result.notes),
        "error": result.error,
        "skipped": result.skipped,
    }


def result_dict(result: BenchResult) -> dict[str, Any]:
    return {"package": result.package, "name": result.name, **findings_dict(result),
            "duration_s": round(result.duration_s, 4), "samples": [point.as_sample() for point in result.points]}


def program_dict(result: ProgramResult, exit_status: int) -> dict[str, Any]:
    """The JSON report of `cgo-audit run`; an op is result.per (a request or a second)."""
    record = result.record
    return {
        "tool": "cgo-audit", "version": __version__, "schema": SCHEMA_VERSION, "exit_status": exit_status,
        "program": {"argv": result.argv, "per": result.per, **findings_dict(result),
                    "ended": record.exit_description() if record else None,
                    "not_measured": list(result.missing),
                    "samples_seen": result.samples_seen or len(result.samples),
                    "samples": [sample.as_dict() for sample in result.samples]},
    }


def write_program_json(result: ProgramResult, exit_status: int, path: Path) -> None:
    Path(path).write_text(json.dumps(program_dict(result, exit_status), indent=2) + "\n")


def report_dict(report: AuditReport, exit_status: int) -> dict[str, Any]:
    return {
        "tool": "cgo-audit",
        "version": __version__,
        "schema": SCHEMA_VERSION,
        "exit_status": exit_status,
        "settings": report.settings,
        "packages": [{"package": o.import_path, "status": o.status, "detail": o.detail,
                      "duration_s": round(o.duration_s, 4)} for o in report.packages],
        "results": [result_dict(result) for result in report.results],
    }


def write_json(report: AuditReport, exit_status: int, path: Path) -> None:
    Path(path).write_text(json.dumps(report_dict(report, exit_status), indent=2) + "\n")
