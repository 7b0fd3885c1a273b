"""Every generated file is what `make generate` writes from its one source
(scripts/generate.py --check, which CI runs too), and the check does fail on
a drifted copy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GENERATE = REPO / "scripts" / "generate.py"


def run_generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GENERATE), *args], capture_output=True, text=True, cwd=REPO)


def test_committed_generated_files_are_up_to_date():
    proc = run_generate("--check")
    assert proc.returncode == 0, proc.stderr + "\nrun `make generate` and commit what it writes"


def test_the_check_names_a_drifted_copy(monkeypatch):
    sys.path.insert(0, str(GENERATE.parent))
    import generate

    monkeypatch.setitem(generate.OUTPUTS, "goaudit/leakcheck/settle_gen.go", lambda: "// drifted\n")
    assert generate.main(["--check"]) == 1
