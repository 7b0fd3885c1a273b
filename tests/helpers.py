"""Helpers the test files share (imported, never copied)."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Mapping

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "go_fixtures"
GO_HELPERS = REPO / "goaudit"   # the Go module users import: auditdriver, leakcheck
CSTRING_PACKAGE = "github.com/cgo-audit/cgo-audit/go_fixtures/cstring"


def run_cli(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None,
            timeout: float = 600, fd_limit: int | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m cgo_audit ARGS` as a user would run it (with fd_limit: as
    if after `ulimit -n fd_limit`, which the targets inherit)."""
    full_env = dict(os.environ)
    full_env.update(env or {})

    def limit() -> None:
        if fd_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    return subprocess.run([sys.executable, "-m", "cgo_audit", *args], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit status 2, one line on stderr naming the problem, and no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def write_module(root: Path, files: Mapping[str, str], module: str = "example.com/m",
                 go_version: str = "1.22") -> Path:
    """A throwaway Go module: {relative path: source}, its go.mod declaring go_version."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "go.mod").write_text(f"module {module}\n\ngo {go_version}\n")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


def audit_json(tmp_path: Path, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None,
               fd_limit: int | None = None, command: str = "bench"
               ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Runs `cgo-audit COMMAND --json` and returns the process and its report."""
    out = tmp_path / "report.json"
    if out.exists():
        out.unlink()
    proc = run_cli(command, "--json", str(out), *args, cwd=cwd, env=env, fd_limit=fd_limit)
    report = json.loads(out.read_text()) if out.exists() else NoReport(proc)
    return proc, report


class NoReport(dict):
    """The report of a command that wrote none: empty, and a failed lookup
    says what the command printed instead of a bare KeyError."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        super().__init__()
        self.proc = proc

    def __missing__(self, key: str) -> Any:
        raise AssertionError(f"no JSON report to read {key!r} from (exit {self.proc.returncode}):\n"
                             f"{self.proc.stdout}{self.proc.stderr}")


SERVER_CWD = FIXTURES / "cstring"   # where the fixture server finds its config


def free_port() -> int:
    """A loopback port nobody listens on (for a fixture server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def source_line(path: Path, needle: str) -> int:
    """The 1-based number of the one line of path that contains needle."""
    hits = [i for i, line in enumerate(path.read_text().splitlines(), start=1) if needle in line]
    assert len(hits) == 1, (path, needle, hits)
    return hits[0]


def result_named(report: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [r for r in report["results"] if r["name"] == name]
    assert len(matches) == 1, [r["name"] for r in report["results"]]
    return matches[0]


def copy_cstring_module(dest: Path) -> Path:
    """The cstring fixture as a module of its own outside the checkout (it
    imports nothing of cgo-audit's), as a user's module would be."""
    import shutil

    shutil.copytree(FIXTURES / "cstring", dest)
    (dest / "go.mod").write_text("module example.com/cstring\n\ngo 1.22\n")
    return dest


PROXY_TIMEOUT_S = 300


def require_published(module_dir: Path, module: str, version: str) -> None:
    """`go get module@version` in module_dir, as a user would, through the Go
    module proxy; skips the test with Go's one-line reason when that fails."""
    import pytest

    from cgo_audit.toolchain.gotool import go_executable

    try:
        proc = subprocess.run([go_executable(), "get", f"{module}@{version}"], cwd=module_dir,
                              capture_output=True, text=True, timeout=PROXY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.skip(f"{module} cannot be fetched through the Go module proxy: no answer in {PROXY_TIMEOUT_S}s")
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        pytest.skip(f"{module} cannot be fetched through the Go module proxy: "
                    f"{lines[-1] if lines else f'go get exited with {proc.returncode}'}")


class PacedLoad:
    """GET url per_second times a second on average, from a thread: each
    request is due at a fixed time, and a late one is sent at once."""

    def __init__(self, url: str, per_second: float) -> None:
        self.url, self.period = url, 1.0 / per_second
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            due = start + self.sent * self.period
            if due > time.monotonic():
                self._stop.wait(due - time.monotonic())
                continue
            with urllib.request.urlopen(self.url, timeout=10) as answer:
                answer.read()
            self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


FETCH_TIMEOUT_S = 180


def downloaded_module(module: str, version: str, what: str, cwd: Path | str = "/",
                      env: Mapping[str, str] | None = None) -> Path:
    """`go mod download` of module@version through the Go module proxy (or
    its cache): the directory of its source, or the test skips in one line
    saying why `what` cannot be fetched."""
    import pytest

    from cgo_audit.toolchain.gotool import go_executable

    try:
        proc = subprocess.run([go_executable(), "mod", "download", "-json", f"{module}@{version}"],
                              cwd=cwd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S,
                              env=dict(env) if env is not None else None)
    except subprocess.TimeoutExpired:
        pytest.skip(f"{what} cannot be fetched through the Go module proxy: no answer in {FETCH_TIMEOUT_S}s")
    try:
        info = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except ValueError:
        info = {}
    if proc.returncode != 0 or not info.get("Dir"):
        detail = info.get("Error") or proc.stderr.strip() or f"go mod download exited with {proc.returncode}"
        pytest.skip(f"{what} cannot be fetched through the Go module proxy: {detail.strip().splitlines()[-1]}")
    return Path(info["Dir"])


def wait_for(predicate: Callable[[], Any], timeout_s: float = 60.0, what: str = "",
             interval: float = 0.02) -> Any:
    """predicate()'s value once it is truthy, polled within a generous bound:
    tests wait for the state they need, never for a number of seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what or predicate}")
