"""Known leaks a team has accepted: a result they cover does not fail CI, as
long as it leaks no more than the baseline says."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cgo_audit.analysis import C_BYTES, CGO_LEAK, CLEAN
from cgo_audit.errors import AuditError
from cgo_audit.model import BenchResult

FORMAT_VERSION = 1
# A fitted slope can differ from the accepted figure by float rounding.
TOLERANCE_RATIO = 0.01
TOLERANCE_BYTES = 0.5


@dataclass(frozen=True)
class AcceptedLeak:
    package: str                      # import path, or a glob of them
    benchmark: str                    # name, or a glob of names
    verdicts: tuple[str, ...]
    max_c_leak_bytes_per_op: float | None
    reason: str

    def covers(self, result: BenchResult) -> bool:
        if not (fnmatch.fnmatchcase(result.package, self.package)
                and fnmatch.fnmatchcase(result.name, self.benchmark)):
            return False
        if any(v not in self.verdicts for v in result.verdicts.all if v != CLEAN):
            return False
        if CGO_LEAK in result.verdicts.all and self.max_c_leak_bytes_per_op is not None:
            allowed = self.max_c_leak_bytes_per_op
            if result.per_op(C_BYTES.key) > allowed + max(TOLERANCE_BYTES, allowed * TOLERANCE_RATIO):
                return False
        return True


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
    accepted = []
    for index, entry in enumerate(entries):
        try:
            verdicts = entry.get("verdicts") or [entry["verdict"]]
            limit = entry.get("max_c_leak_bytes_per_op")
            accepted.append(AcceptedLeak(
                package=str(entry["package"]), benchmark=str(entry["benchmark"]),
                verdicts=tuple(str(v) for v in verdicts),
                max_c_leak_bytes_per_op=float(limit) if limit is not None else None,
                reason=str(entry.get("reason", ""))))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise AuditError(f"baseline file {path}: entry {index} needs package, benchmark and "
                             "verdict (or verdicts)") from None
    return accepted


def apply_baseline(results: Iterable[BenchResult], accepted: list[AcceptedLeak]) -> None:
    for result in results:
        result.accepted_by_baseline = result.is_leak and any(a.covers(result) for a in accepted)


def baseline_from(results: Iterable[BenchResult], reason: str) -> dict[str, object]:
    """A baseline that accepts exactly the leaks of these results."""
    entries = []
    for result in results:
        if not result.is_leak:
            continue
        entry: dict[str, object] = {"package": result.package, "benchmark": result.name,
                                    "verdicts": list(result.verdicts.all), "reason": reason}
        if CGO_LEAK in result.verdicts.all:
            entry["max_c_leak_bytes_per_op"] = round(result.per_op(C_BYTES.key), 3)
        entries.append(entry)
    return {"version": FORMAT_VERSION, "accepted": entries}
