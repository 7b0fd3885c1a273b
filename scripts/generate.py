"""Writes every generated file of the repository from its one source, or with
--check says which committed file differs from what would be written (exit 1).

  python scripts/generate.py           write them
  python scripts/generate.py --check   CI: fail if a committed copy drifted

What it writes (offline, in milliseconds):
  goaudit/auditdriver/settle_gen.go  from cgo_audit/toolchain/go/settle.go.tmpl
  goaudit/leakcheck/settle_gen.go    the same template, leakcheck's prefix
  goaudit/leakcheck/cgo_audit_region.h  an exact copy of csrc/cgo_audit_region.h
                                        (the Go module cannot reach csrc/)
The Go layout table (cgo_audit/toolchain/go/layouts.json) needs a toolchain per
Go release from the module proxy, so it is written by `make generate-layouts`
(scripts/go_layout_table.py); --check verifies offline what it can: that the
table is in the form that script writes, with every field for every release.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cgo_audit.toolchain.layout import LAYOUT_TABLE, STRUCT_FIELDS  # noqa: E402
from cgo_audit.toolchain.probe import render_settle  # noqa: E402

# Each generated file and how its text is made.
OUTPUTS: dict[str, Callable[[], str]] = {
    "goaudit/auditdriver/settle_gen.go": lambda: render_settle("auditdriver", "driver"),
    "goaudit/leakcheck/settle_gen.go": lambda: render_settle("leakcheck", "leakCheck"),
    "goaudit/leakcheck/cgo_audit_region.h": lambda: (REPO / "csrc" / "cgo_audit_region.h").read_text(),
}


def layout_table_problems() -> list[str]:
    """What is wrong with the committed layout table, checked offline."""
    path = LAYOUT_TABLE.relative_to(REPO)
    try:
        table = json.loads(LAYOUT_TABLE.read_text())
    except (OSError, ValueError) as exc:
        return [f"{path}: {exc}"]
    problems = []
    for goarch, releases in table.items():     # {goarch: {release: {field: offset}}}
        problems += [f"{path}: {goarch} {release} lacks {sorted(set(STRUCT_FIELDS) - set(fields))}"
                     for release, fields in releases.items() if set(fields) != set(STRUCT_FIELDS)]
        names = list(releases)
        if names != sorted(names, key=lambda r: [int(p) for p in r[2:].split(".")]):
            problems.append(f"{path}: {goarch} releases out of order (rewrite it with scripts/go_layout_table.py)")
    return problems


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, render in OUTPUTS.items():
        path = REPO / name
        text = render()
        if path.exists() and path.read_text() == text:
            continue
        if check:
            stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {name}")
    if check:
        problems = [f"{name} differs from what `make generate` writes" for name in stale] + layout_table_problems()
        for problem in problems:
            print(f"generate-check: {problem}", file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
