"""`bench --shard I/N`: which packages one of N CI machines audits.

Every shard lists the same packages (go list is deterministic) and computes
the same split, so the N shards cover every package exactly once without
talking to each other. With the durations of an earlier run (a JSON report
gives each package's), packages are dealt longest first to the shard with the
least work so far (LPT scheduling), so the shards finish at about the same
time; a package the earlier run did not see counts as the mean. Without
durations every package weighs the same, and the same rule deals the sorted
packages round-robin."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from cgo_audit.errors import AuditError


@dataclass(frozen=True)
class Shard:
    index: int      # 1-based, as CI matrices count
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """'2/4' -> the second of four shards."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise AuditError(f"--shard takes I/N, e.g. 1/4, not {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise AuditError(f"--shard {text}: I must be between 1 and N")
    return Shard(index, count)


def split(packages: Sequence[str], count: int, durations: Mapping[str, float] | None = None) -> list[list[str]]:
    """packages dealt into count shards, each list sorted; the same input
    always gives the same split."""
    known = [durations[p] for p in packages if durations and p in durations]
    default = sum(known) / len(known) if known else 1.0
    weight = {p: (durations or {}).get(p, default) for p in packages}
    shards: list[list[str]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for package in sorted(set(packages), key=lambda p: (-weight[p], p)):
        lightest = min(range(count), key=lambda i: (loads[i], i))
        shards[lightest].append(package)
        loads[lightest] += weight[package]
    return [sorted(shard) for shard in shards]


def durations_from_report(path: Path) -> dict[str, float]:
    """Seconds each package took in an earlier JSON report (bench or merge):
    its own figure, else the sum of its benchmarks' runs."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot read the durations report {path}: {exc}") from None
    if not isinstance(report, dict) or "results" not in report:
        raise AuditError(f"{path} is not a cgo-audit bench report (no \"results\")")
    from_results: dict[str, float] = {}
    for result in report["results"]:
        spent = result.get("duration_s")
        if spent is None:
            spent = sum(float(s.get("elapsed_s") or 0) for s in result.get("samples", []))
        from_results[result["package"]] = from_results.get(result["package"], 0.0) + float(spent)
    own = {package["package"]: float(package["duration_s"]) for package in report.get("packages", [])
           if isinstance(package.get("duration_s"), (int, float))}
    return {**from_results, **own}
