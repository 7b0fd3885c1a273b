"""Fixtures shared by the tests: the real shim, real Go binaries, real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# tests/unit and tests/integration both import the shared helpers
# (`from helpers import ...`, `from browser import ...`) from this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cgo_audit.driver import build_go_command
from cgo_audit.shim.build import build_shim

from helpers import FIXTURES, REPO


@pytest.fixture(scope="session")
def shim_path() -> Path:
    return build_shim()


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("build")


@pytest.fixture(scope="session")
def cstring_driver(build_dir: Path) -> Path:
    return build_go_command(FIXTURES, "./cmd/cstring-driver", build_dir / "cstring-driver")


def build_c_test(build_dir: Path, name: str) -> Path:
    output = build_dir / name
    subprocess.run(["cc", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-I", str(REPO / "csrc"),
                    "-o", str(output), str(REPO / "csrc" / "tests" / f"{name}.c"), "-lpthread", "-ldl"],
                   check=True)
    return output


@pytest.fixture(scope="session")
def workload_driver(build_dir: Path) -> Path:
    return build_go_command(FIXTURES, "./cmd/workload-driver", build_dir / "workload-driver")


@pytest.fixture(scope="session")
def leakyserver(build_dir: Path) -> Path:
    return build_go_command(FIXTURES, "./cmd/leakyserver", build_dir / "leakyserver")


@pytest.fixture(scope="session")
def stress_binary(build_dir: Path) -> Path:
    return build_c_test(build_dir, "stress")


@pytest.fixture(scope="session")
def forker_binary(build_dir: Path) -> Path:
    return build_c_test(build_dir, "forker")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (make test: --dist loadgroup), the tests that share
    a module-scoped fixture (one expensive audit, a demo run, a module build)
    go to one worker, so that fixture runs once instead of once per worker;
    the other tests spread freely. Applies to test files added later too."""
    for item in items:
        infos = getattr(item, "_fixtureinfo", None)
        if infos is None:
            continue
        shared = any(d.scope == "module" for defs in infos.name2fixturedefs.values() for d in defs)
        if shared and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
