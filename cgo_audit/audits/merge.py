"""`cgo-audit merge`'s joining: the JSON reports of `bench --shard I/N` (one per CI
machine) joined into one report, one verdict and one exit status, with the
same rules as bench: 1 for a new leak, else 2 when anything could not be
audited, else 0. A shard whose report is missing, or shards that split the
packages differently, are errors in the merged report (its packages were not
audited), never silently a smaller clean report."""

from __future__ import annotations

from pathlib import Path

from cgo_audit.errors import AuditError
from cgo_audit.model import AuditReport, BenchResult
from cgo_audit.verdicts import analysis

SHARD_KEYS = ("shard", "shard_packages", "packages_in_all_shards", "shard_balanced_by")
# What must be the same in every shard for their verdicts to be one audit's
# (the checkout's path and -j may differ from machine to machine).
SAME_IN_EVERY_SHARD = ("patterns", "bench", "sizes", "run_seconds", "tags", "probe", "stacks")


def problem(name: str, text: str) -> BenchResult:
    """An audit that did not happen, as a result every reporter shows as an error."""
    return BenchResult(package="(cgo-audit merge)", name=name, points=[], verdicts=analysis.decide({}),
                       growth={}, error=text)


def shard_problems(reports: list[tuple[Path, AuditReport]]) -> list[BenchResult]:
    """Missing shards, and packages the shards did not cover exactly once."""
    shards = [(path, report.settings.get("shard")) for path, report in reports]
    if not any(label for _, label in shards):
        return []
    if not all(label for _, label in shards):
        plain = next(path for path, label in shards if not label)
        raise AuditError(f"{plain} is not a shard's report (no --shard): merge shards of one audit")
    counts = {str(label).split("/")[1] for _, label in shards}
    if len(counts) > 1:
        raise AuditError(f"the reports are shards of different splits ({', '.join(sorted(counts))} shards)")
    count = int(counts.pop())
    seen: dict[int, Path] = {}
    for path, label in shards:
        index = int(str(label).split("/")[0])
        if index in seen:
            raise AuditError(f"shard {label} is given twice: {seen[index]} and {path}")
        seen[index] = path
    found = [problem(f"shard {i}/{count}", f"no report for shard {i}/{count}: its packages were not audited")
             for i in range(1, count + 1) if i not in seen]
    covered: dict[str, int] = {}
    for _, report in reports:
        for package in report.settings.get("shard_packages", []):
            covered[package] = covered.get(package, 0) + 1
    twice = sorted(p for p, n in covered.items() if n > 1)
    totals = {report.settings.get("packages_in_all_shards") for _, report in reports}
    if twice or (not found and (len(totals) != 1 or len(covered) != totals.pop())):
        found.append(problem("shard split", "the shards split the packages differently (run every shard on the "
                             "same tree with the same --shard-durations)"
                             + (f": audited twice: {', '.join(twice)}" if twice else "")))
    return found


def check_settings(reports: list[tuple[Path, AuditReport]]) -> None:
    first_path, first = reports[0]
    for path, report in reports[1:]:
        differ = [key for key in SAME_IN_EVERY_SHARD if report.settings.get(key) != first.settings.get(key)]
        if differ:
            raise AuditError(f"{path} was audited with other settings than {first_path} ({', '.join(differ)}): "
                             "merge shards of one audit")


def merge_reports(reports: list[tuple[Path, AuditReport]]) -> AuditReport:
    check_settings(reports)
    problems = shard_problems(reports)
    results: list[BenchResult] = []
    seen: dict[tuple[str, str], Path] = {}
    for path, report in reports:
        for result in report.results:
            key = (result.package, result.name)
            if key in seen and not problems:
                raise AuditError(f"{result.package} {result.name} is in both {seen[key]} and {path}")
            seen[key] = path
            results.append(result)
    results.sort(key=lambda r: r.package)   # stable: each package's benchmarks keep their order
    packages = sorted((o for _, report in reports for o in report.packages), key=lambda o: o.import_path)
    settings = {key: value for key, value in reports[0][1].settings.items() if key not in SHARD_KEYS}
    settings["merged_from"] = [str(path) for path, _ in reports]
    return AuditReport(results=results + problems, packages=packages, settings=settings)
