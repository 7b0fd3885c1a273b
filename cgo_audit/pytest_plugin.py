"""pytest plugin: the `cgo_audit` fixture calls your Cgo functions in a Go
driver under the shim, and `@pytest.mark.limit_c_leaks("0 B")` fails the call
that leaves more C heap behind, so Hypothesis shrinks to the smallest leak.

Configuration (pytest ini): `cgo_audit_driver` (the Go main package to
build), `cgo_audit_go_dir` (the Go module it is built in) and
`cgo_audit_driver_cwd` (where it runs), both relative to the rootdir; or
override the session fixture `cgo_audit_driver_command` to return
(argv, cwd) yourself."""

from __future__ import annotations

import os
import reprlib
from pathlib import Path
from typing import Any, Iterator, NoReturn, Sequence

import pytest

from cgo_audit import units
from cgo_audit.driver import CallDelta, Driver, DriverError, build_go_command
from cgo_audit.errors import AuditError
from cgo_audit.measure.runner import ShimSession
from cgo_audit.shim.build import build_shim

LIMIT_MARKER = "limit_c_leaks"
FIXTURE_NAME = "cgo_audit"
# The limit of the test running now (set in its setup, cleared in its
# teardown): the fixture is session-scoped so Hypothesis accepts it.
_RUNNING_LIMIT = pytest.StashKey["int | None"]()

_ARGS_REPR = reprlib.Repr()
_ARGS_REPR.maxstring = 80
_ARGS_REPR.maxother = 80
_ARGS_REPR.maxdict = _ARGS_REPR.maxlist = 8


class CLeakError(AssertionError):
    """A cgo_audit.call left more C heap behind than the test's limit_c_leaks."""

    def __init__(self, func: str, args: Any, delta: CallDelta, limit_bytes: int) -> None:
        self.func = func
        self.args = args
        self.delta = delta
        self.limit_bytes = limit_bytes
        super().__init__(describe_leak(func, args, delta, limit_bytes))


# Sizes in limit_c_leaks read as everywhere else in cgo-audit (cgo_audit.units):
# KB and KiB both mean 1024 bytes, like pytest-memray's limit_memory.
parse_size = units.parse_size
format_size = units.format_exact


def describe_leak(func: str, args: Any, delta: CallDelta, limit_bytes: int) -> str:
    """One line in goleak's manner: what leaked, how much, from which call, and the limit."""
    calls = f", called {delta.calls} times," if delta.calls != 1 else ""
    return (f"{func}({_ARGS_REPR.repr(args)}){calls} left {format_size(delta.c_bytes)} of C heap in "
            f"{delta.c_allocs} allocation(s); the limit is {format_size(limit_bytes)}")


def exceeds(delta: CallDelta, limit_bytes: int) -> bool:
    # A limit of 0 B means nothing may be left, so a leaked malloc(0) counts too.
    return delta.c_bytes > limit_bytes or (limit_bytes == 0 and delta.c_allocs > 0)


class CgoAudit:
    """The `cgo_audit` fixture: one driver under the shim for the session,
    each function warmed up once, each call checked against the running
    test's limit."""

    def __init__(self, session: ShimSession, argv: Sequence[str], cwd: str | os.PathLike[str] | None,
                 config: pytest.Config) -> None:
        self._session = session
        self._argv = list(argv)
        self._cwd = cwd
        self._config = config
        self._driver: Driver | None = None
        self._warm: set[str] = set()
        self.functions: tuple[str, ...] = ()

    def start(self) -> None:
        """Starts the driver and checks it answers under the shim (AuditError if not)."""
        self.close()
        try:
            driver = Driver(self._argv, self._session, cwd=self._cwd)
        except FileNotFoundError:
            raise AuditError(f"cannot start the driver: {self._argv[0]} does not exist") from None
        except PermissionError:
            raise AuditError(f"cannot start the driver: {self._argv[0]} is not executable") from None
        self._driver, self._warm = driver, set()
        try:
            self.functions = tuple(driver.request("list").get("funcs") or ())
        except ValueError:
            driver.kill()
            raise AuditError(f"{self._argv[0]} does not speak the auditdriver protocol "
                             "(does its main call auditdriver.Main?)") from None
        if self._session.main_cheap(driver.pid) is None:
            driver.kill()
            raise AuditError(f"{self._argv[0]} is not running under the shim: LD_PRELOAD cannot reach a "
                             "statically linked program (build it with cgo)")

    def call(self, func: str, args: Any = None, count: int = 1) -> CallDelta:
        """Calls func(args) count times in the driver; the C heap (and Go side)
        they left behind once settled. Raises CLeakError when that exceeds
        the running test's @pytest.mark.limit_c_leaks."""
        __tracebackhide__ = True
        if self._driver is None or self._driver.proc.poll() is not None:
            self.start()  # a call before crashed it: each example gets a live driver
        assert self._driver is not None
        if func not in self.functions:
            raise AuditError(f"the driver has no function named {func!r} "
                             f"(it registers: {', '.join(self.functions) or 'nothing'})")
        try:
            if func not in self._warm:
                # First calls allocate one-time things (stdio buffers, caches): not leaks.
                self._driver.call(func, args, 1)
                self._warm.add(func)
            delta = self._driver.measure(func, args, count)
        except DriverError as exc:
            # A crash is a finding too: name the call, so Hypothesis shrinks it.
            raise DriverError(f"{func}({_ARGS_REPR.repr(args)}): {exc}") from None
        limit_bytes = self._config.stash.get(_RUNNING_LIMIT, None)
        if limit_bytes is not None and exceeds(delta, limit_bytes):
            raise CLeakError(func, args, delta, limit_bytes)
        return delta

    def close(self) -> None:
        if self._driver is not None:
            self._driver.close()
            self._driver = None


def _fail_setup(message: str) -> NoReturn:
    """Fails the test in one line: no traceback, not even of the error it replaces."""
    raise pytest.fail.Exception(f"cgo-audit: {message}", pytrace=False) from None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("cgo_audit_driver", "cgo-audit: the Go main package to build as the driver "
                  "(e.g. ./cmd/my-driver); it calls auditdriver.Main()")
    parser.addini("cgo_audit_go_dir", "cgo-audit: the Go module directory the driver is built in "
                  "(relative to the rootdir; default: the rootdir)")
    parser.addini("cgo_audit_driver_cwd", "cgo-audit: the directory the driver runs in "
                  "(relative to the rootdir; default: the rootdir)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{LIMIT_MARKER}(size): fail a cgo_audit.call(...) that leaves more than size "
        "(e.g. '0 B', '64 B', '1 KiB') of C heap behind")


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker(LIMIT_MARKER)
    if marker is None:
        return
    if FIXTURE_NAME not in getattr(item, "fixturenames", ()):
        _fail_setup(f"{item.name} uses @pytest.mark.{LIMIT_MARKER} but not the {FIXTURE_NAME} fixture: "
                    f"the limit applies to {FIXTURE_NAME}.call(...); add {FIXTURE_NAME} to its arguments")
    if len(marker.args) != 1 or marker.kwargs:
        _fail_setup(f"{item.name}: @pytest.mark.{LIMIT_MARKER} takes one size, like "
                    f"@pytest.mark.{LIMIT_MARKER}(\"0 B\")")
    try:
        item.config.stash[_RUNNING_LIMIT] = parse_size(marker.args[0])
    except ValueError as exc:
        _fail_setup(f"{item.name}: @pytest.mark.{LIMIT_MARKER}: {exc}")


def pytest_runtest_teardown(item: pytest.Item) -> None:
    item.config.stash[_RUNNING_LIMIT] = None


def _ini_path(config: pytest.Config, name: str) -> Path:
    value = str(config.getini(name) or "").strip()
    return config.rootpath / value if value else config.rootpath


@pytest.fixture(scope="session")
def cgo_audit_driver_command(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                             ) -> tuple[list[str], Path]:
    """(argv, cwd) of the driver: built from the ini options once per session.
    Override this session fixture in a conftest to run a driver of your own."""
    config = request.config
    package = str(config.getini("cgo_audit_driver") or "").strip()
    if not package:
        _fail_setup("no driver: set cgo_audit_driver (the Go main package that calls auditdriver.Main) "
                    "in the pytest ini, or override the cgo_audit_driver_command fixture")
    go_dir = _ini_path(config, "cgo_audit_go_dir")
    cwd = _ini_path(config, "cgo_audit_driver_cwd")
    for name, directory in (("cgo_audit_go_dir", go_dir), ("cgo_audit_driver_cwd", cwd)):
        if not directory.is_dir():
            _fail_setup(f"{name} names no directory: {directory}")
    try:
        binary = build_go_command(go_dir, package, tmp_path_factory.mktemp("cgo-audit-driver") / "driver")
    except AuditError as exc:
        _fail_setup(str(exc))
    return [str(binary)], cwd


@pytest.fixture(scope="session")
def cgo_audit(cgo_audit_driver_command: tuple[Sequence[str], str | os.PathLike[str] | None],
              request: pytest.FixtureRequest) -> Iterator[CgoAudit]:
    """Calls functions of the driver under the shim: cgo_audit.call(func, args, count)."""
    argv, cwd = cgo_audit_driver_command
    try:
        shim = build_shim()
    except AuditError as exc:
        _fail_setup(str(exc))
    with ShimSession(shim) as session:
        audit = CgoAudit(session, argv, cwd, request.config)
        try:
            audit.start()
        except AuditError as exc:
            audit.close()
            _fail_setup(str(exc))
        try:
            yield audit
        finally:
            audit.close()
