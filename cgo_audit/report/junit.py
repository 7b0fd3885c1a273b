"""The JUnit XML report: one test case per benchmark, so CI systems show a
new leak as a failed test, with its figures and sites in the failure."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from cgo_audit.model import AuditReport, BenchResult
from cgo_audit.report.terminal import columns, evidence, site_lines


def _details(result: BenchResult) -> str:
    lines = ["  ".join(columns(result)), *site_lines(result), *evidence(result)]
    return "\n".join(lines)


def testcase(result: BenchResult) -> ET.Element:
    seconds = sum(point.elapsed_s for point in result.points)
    case = ET.Element("testcase", classname=result.package, name=result.name, time=f"{seconds:.3f}")
    summary = ",".join(result.verdicts.all)
    if result.error:
        ET.SubElement(case, "error", message=result.error, type="audit-error").text = _details(result)
    elif result.skipped is not None:
        ET.SubElement(case, "skipped", message=result.skipped or "skipped itself")
    elif result.is_incomplete:
        ET.SubElement(case, "error", message=f"{summary}: " + "; ".join(result.verdicts.why_incomplete),
                      type="audit-incomplete").text = _details(result)
    elif result.is_new_leak:
        ET.SubElement(case, "failure", message=f"{summary}: {'  '.join(columns(result))}",
                      type=result.verdict).text = _details(result)
    elif result.is_leak:
        why = "accepted by the baseline" if result.accepted_by_baseline else "under --max-leak-bytes-per-op"
        ET.SubElement(case, "system-out").text = f"{summary} ({why})\n{_details(result)}"
    return case


def junit_tree(report: AuditReport) -> ET.ElementTree:
    root = ET.Element("testsuites", name="cgo-audit")
    by_package: dict[str, list[BenchResult]] = {}
    for result in report.results:
        by_package.setdefault(result.package, []).append(result)
    for package, results in by_package.items():
        suite = ET.SubElement(root, "testsuite", name=package, tests=str(len(results)),
                              failures=str(sum(r.is_new_leak for r in results)),
                              errors=str(sum(bool(r.error) or r.is_incomplete for r in results)),
                              skipped=str(sum(r.skipped is not None for r in results)))
        suite.extend(testcase(result) for result in results)
    root.set("tests", str(len(report.results)))
    root.set("failures", str(sum(r.is_new_leak for r in report.results)))
    root.set("errors", str(sum(bool(r.error) or r.is_incomplete for r in report.results)))
    return ET.ElementTree(root)


def write_junit(report: AuditReport, path: Path) -> None:
    tree = junit_tree(report)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
