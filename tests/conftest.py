"""Fixtures shared by the tests: the real shim, real Go binaries, real processes."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# tests/unit and tests/integration both import the shared helpers
# (`from helpers import ...`, `from browser import ...`) from this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import durations

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


@functools.lru_cache(maxsize=None)
def shares_module_fixture(test_file: str) -> bool:
    """Does this test file define a module-scoped fixture (an expensive audit,
    a demo run, a build its tests share)?"""
    path = Path(__file__).resolve().parent.parent / test_file
    return path.is_file() and re.search(r"scope\s*=\s*[\"']module[\"']", path.read_text()) is not None


def scope_of(nodeid: str) -> str:
    """What one worker runs together: a file with a module-scoped fixture,
    else the single test."""
    test_file = nodeid.split("::", 1)[0]
    return test_file if shares_module_fixture(test_file) else nodeid


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--record-durations", action="store_true",
                     help="write each test's duration to tests/durations.json (make test-durations)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest first (tests/durations.py says why); every worker sorts the
    same collection the same way, so xdist sees identical collections."""
    items[:] = durations.longest_first(items, lambda item: item.nodeid, scope_of, durations.load())


_measured: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _measured[report.nodeid] = _measured.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    # On the xdist controller (or a plain run): it sees every worker's reports.
    if session.config.getoption("record_durations") and not hasattr(session.config, "workerinput"):
        durations.save(_measured)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist (make test), the tests of a file with a
    module-scoped fixture go to one worker, so that fixture runs once rather
    than once per worker; every other test is scheduled on its own, spread
    over the workers. Applies to test files added later too; an explicit
    --dist other than the default is left alone."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    # Hand the scopes out in the collection's order (longest first), not by
    # their number of tests.
    config.option.loadscopereorder = False

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return SharedFixtureScheduling(config, log)
