"""The CI gate's policy: known leaks a team has accepted (a baseline file) and
a threshold below which a leak is tolerated. A result they cover does not
fail CI, as long as it leaks no more than they say, at no other site."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from cgo_audit.errors import AuditError
from cgo_audit.model import Findings
from cgo_audit.verdicts.analysis import C_BYTES, CGO_LEAK, CLEAN, GO_HEAP, GO_HEAP_LEAK, RSS, RSS_UNEXPLAINED

FORMAT_VERSION = 1
# A fitted slope can differ from the accepted figure by float rounding.
TOLERANCE_RATIO = 0.01
TOLERANCE_BYTES = 0.5
# Verdicts measured in bytes per op, which --max-leak-bytes-per-op can tolerate.
BYTE_VERDICTS = {CGO_LEAK: C_BYTES.key, GO_HEAP_LEAK: GO_HEAP.key, RSS_UNEXPLAINED: RSS.key}


def glob_match(pattern: str, value: str) -> bool:
    """A glob when it has * or ?, else exact: Go names can hold [brackets]."""
    return fnmatch.fnmatchcase(value, pattern) if any(c in pattern for c in "*?") else value == pattern


@dataclass(frozen=True)
class AcceptedSite:
    """A leak site a baseline accepts. Matched by function and C call, not by
    line: lines move as code is edited around them."""

    function: str
    c_function: str
    c_stack: tuple[str, ...] = ()

    def matches(self, site: Any) -> bool:
        return (glob_match(self.function, site.key.function)
                and glob_match(self.c_function, site.key.c_function)
                and (not self.c_stack or tuple(site.key.c_stack) == self.c_stack))


@dataclass(frozen=True)
class AcceptedLeak:
    package: str                      # import path, or a glob of them
    benchmark: str                    # name, or a glob of names
    verdicts: tuple[str, ...]
    max_c_leak_bytes_per_op: float | None
    reason: str
    sites: tuple[AcceptedSite, ...] = ()   # empty: any site

    def covers(self, result: Any) -> bool:
        if not (glob_match(self.package, result.package) and glob_match(self.benchmark, result.name)):
            return False
        if any(v not in self.verdicts for v in result.verdicts.all if v != CLEAN):
            return False
        if CGO_LEAK in result.verdicts.all and self.max_c_leak_bytes_per_op is not None:
            allowed = self.max_c_leak_bytes_per_op
            if result.per_op(C_BYTES.key) > allowed + max(TOLERANCE_BYTES, allowed * TOLERANCE_RATIO):
                return False
        if self.sites:
            return all(any(accepted.matches(site) for accepted in self.sites) for site in result.sites)
        return True


def _entry(index: int, entry: Mapping[str, Any], path: Path) -> AcceptedLeak:
    try:
        verdicts = entry.get("verdicts") or [entry["verdict"]]
        limit = entry.get("max_c_leak_bytes_per_op")
        sites = tuple(AcceptedSite(str(s["function"]), str(s["c_function"]), tuple(s.get("c_stack") or ()))
                      for s in entry.get("sites") or ())
        return AcceptedLeak(package=str(entry["package"]), benchmark=str(entry["benchmark"]),
                            verdicts=tuple(str(v) for v in verdicts),
                            max_c_leak_bytes_per_op=float(limit) if limit is not None else None,
                            reason=str(entry.get("reason", "")), sites=sites)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise AuditError(f"baseline file {path}: entry {index} needs package, benchmark and verdict "
                         "(or verdicts); sites need function and c_function") from None


def load_baseline(path: Path) -> list[AcceptedLeak]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise AuditError(f"baseline file not found: {path}") from None
    except ValueError as exc:
        raise AuditError(f"baseline file {path} is not valid JSON: {exc}") from None
    entries = data.get("accepted") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise AuditError(f"baseline file {path} has no \"accepted\" list")
    return [_entry(i, entry, Path(path)) for i, entry in enumerate(entries)]


def within_threshold(result: Findings, max_bytes_per_op: float) -> bool:
    """Every verdict is a byte growth, each at most max_bytes_per_op."""
    verdicts = [v for v in result.verdicts.all if v != CLEAN]
    return bool(verdicts) and all(v in BYTE_VERDICTS and result.per_op(BYTE_VERDICTS[v]) <= max_bytes_per_op
                                  for v in verdicts)


def apply_policy(results: Iterable[Any], accepted: list[AcceptedLeak],
                 max_bytes_per_op: float | None = None) -> None:
    """Marks the leaks the baseline accepts, or the threshold tolerates."""
    for result in results:
        result.accepted_by_baseline = result.is_leak and any(a.covers(result) for a in accepted)
        result.within_threshold = (result.is_leak and max_bytes_per_op is not None
                                   and within_threshold(result, max_bytes_per_op))


def baseline_from_report(report: Mapping[str, Any], reason: str) -> dict[str, Any]:
    """A baseline accepting exactly the leaks of a JSON report (cgo-audit bench
    --json): each benchmark's verdicts, its C bytes/op, and its sites."""
    entries = []
    for result in report.get("results", []):
        verdicts = [v for v in result.get("verdicts", []) if v not in (CLEAN, "error")]
        if not verdicts:
            continue
        entry: dict[str, Any] = {"package": result["package"], "benchmark": result["name"],
                                 "verdicts": verdicts, "reason": reason}
        if CGO_LEAK in verdicts:
            entry["max_c_leak_bytes_per_op"] = round(float(result["c_leak_bytes_per_op"]), 3)
        sites = []
        for site in result.get("sites") or ():
            accepted = {"function": site["function"], "c_function": site["c_function"],
                        "c_stack": site.get("c_stack", [])}
            if accepted not in sites:  # two calls on one line are one accepted site
                sites.append(accepted)
        if sites:
            entry["sites"] = sites
        entries.append(entry)
    return {"version": FORMAT_VERSION, "accepted": entries}
