"""goaudit/cheap: the C heap served as a pprof profile by the service itself.
The fixture server links the handler; real go tool pprof reads it over HTTP
while the server, under the real shim, answers real requests."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Iterator, Mapping

import pytest

from cgo_audit.driver import build_go_command
from cgo_audit.measure.runner import ShimSession
from cgo_audit.toolchain.gotool import go_executable
from cgo_audit.toolchain.layout import read_layout

from helpers import FIXTURES, GO_HELPERS, SERVER_CWD, source_line
from loopback_server import WAIT_S, Server

LEAK_PER_REQUEST = 26        # C.CString("testdata/app.conf") + C.CString("timeout"): 18 + 8 bytes
GETVALUE_GO = SERVER_CWD / "getvalue.go"
HANDLER_PATH = "/debug/cgo-audit/heap"


@pytest.fixture
def shim_session(shim_path: Path) -> Iterator[ShimSession]:
    with ShimSession(shim_path) as session:
        yield session


def start(binary: Path, env: Mapping[str, str], mode: str = "leaky") -> Server:
    """The fixture server on a free loopback port."""
    return Server(binary, env, lambda addr: ["-addr", addr, "-mode", mode], cwd=SERVER_CWD)


def stacks_env(leakyserver: Path, shim_session: ShimSession) -> dict[str, str]:
    layout = read_layout(leakyserver).environment_value()
    return shim_session.environment(extra={"CGO_AUDIT_STACKS": "all", "CGO_AUDIT_GO_LAYOUT": layout})


@pytest.fixture
def server_under_shim(leakyserver: Path, shim_session: ShimSession) -> Iterator[Server]:
    server = start(leakyserver, stacks_env(leakyserver, shim_session))
    yield server
    server.close()


def pprof(*args: str, tmp_path: Path) -> str:
    """go tool pprof ARGS; its output (it saves fetched profiles in tmp_path)."""
    proc = subprocess.run([go_executable(), "tool", "pprof", *args], capture_output=True, text=True,
                          timeout=WAIT_S, env={**os.environ, "PPROF_TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def flat_bytes(top: str, name: str) -> int:
    """The flat bytes of the -top row named name (with -unit=B)."""
    rows = [line for line in top.splitlines() if line.rstrip().endswith(name)]
    assert len(rows) == 1, top
    return int(re.match(r"\s*(\d+)B\s", rows[0]).group(1))


def window_open(server: Server) -> bool:
    """A delta scrape is waiting out its window (its goroutine shows it)."""
    status, dump = server.get("/debug/pprof/goroutine?debug=2")
    assert status == 200
    return "goaudit/cheap.waitWindow" in dump


def delta_scrape(server: Server, tmp_path: Path, requests: int) -> tuple[str, int] | None:
    """go tool pprof -top on ?seconds=5 while the test makes requests inside
    the window: its output and the number of requests, or None if the window
    closed before they were all answered (they cannot then be counted)."""
    scrape = subprocess.Popen([go_executable(), "tool", "pprof", "-top", "-unit=B",
                               f"{server.base}{HANDLER_PATH}?seconds=5"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PPROF_TMPDIR": str(tmp_path)})
    deadline = time.monotonic() + WAIT_S
    while not window_open(server):
        assert scrape.poll() is None and time.monotonic() < deadline, "the delta scrape never started"
        time.sleep(0.02)
    before = server.requests
    server.request(requests)
    in_window = server.requests - before
    still_open = window_open(server)   # every one was answered while the window was open
    top, _ = scrape.communicate(timeout=WAIT_S)
    assert scrape.returncode == 0, top
    return (top, in_window) if still_open else None


def test_delta_profile_names_the_cstring_call_with_26_bytes_per_request(server_under_shim, tmp_path):
    server = server_under_shim
    server.request(30)   # steady state before the window: not growth within it
    for _ in range(5):   # a machine so loaded that 20 requests outlast 5 s: another window
        scraped = delta_scrape(server, tmp_path, 20)
        if scraped is not None:
            break
    assert scraped is not None, "5 windows of 5 s each closed before 20 loopback requests were answered"
    top, in_window = scraped
    assert "C heap growth over" in top
    assert flat_bytes(top, "C.CString") == LEAK_PER_REQUEST * in_window, top
    assert "cstring.GetValueLeaky" in top

    # The saved profile, by line: the call is at the source line that makes it.
    saved = re.search(r"Saved profile in (\S+)", top).group(1)
    line = source_line(GETVALUE_GO, "C.get_value(C.CString(file), C.CString(key)")
    lines = pprof("-top", "-lines", "-unit=B", saved, tmp_path=tmp_path)
    assert flat_bytes(lines, f"C.CString {GETVALUE_GO}:{line}") == LEAK_PER_REQUEST * in_window, lines
    assert line == 35


def test_full_profile_holds_every_request_since_start(server_under_shim, tmp_path):
    server = server_under_shim
    server.request(17)
    url = server.base + HANDLER_PATH
    inuse = pprof("-top", "-unit=B", url, tmp_path=tmp_path)
    assert "Type: inuse_space" in inuse
    assert flat_bytes(inuse, "C.CString") == LEAK_PER_REQUEST * server.requests, inuse
    # Never freed: allocated in all is what is still live, block for block.
    alloc = pprof("-top", "-unit=B", "-sample_index=alloc_space", url, tmp_path=tmp_path)
    assert flat_bytes(alloc, "C.CString") == LEAK_PER_REQUEST * server.requests, alloc
    objects = pprof("-top", "-sample_index=inuse_objects", url, tmp_path=tmp_path)
    rows = [line for line in objects.splitlines() if line.rstrip().endswith("C.CString")]
    assert len(rows) == 1 and int(rows[0].split()[0]) == 2 * server.requests, objects


def test_the_fix_allocates_26_bytes_per_request_and_keeps_none(leakyserver, shim_session, tmp_path):
    server = start(leakyserver, stacks_env(leakyserver, shim_session), mode="fixed")
    try:
        server.request(23)
        url = server.base + HANDLER_PATH
        alloc = pprof("-top", "-unit=B", "-sample_index=alloc_space", url, tmp_path=tmp_path)
        assert flat_bytes(alloc, "C.CString") == LEAK_PER_REQUEST * server.requests, alloc
        assert "cstring.GetValueFixed" in alloc
        inuse = pprof("-top", "-unit=B", "-sample_index=inuse_space", url, tmp_path=tmp_path)
        rows = [line for line in inuse.splitlines() if line.rstrip().endswith("C.CString")]
        assert rows == [] or flat_bytes(inuse, "C.CString") == 0, inuse
    finally:
        server.close()


def test_without_the_shim_the_handler_says_why(leakyserver):
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    server = start(leakyserver, env)
    try:
        status, body = server.get(HANDLER_PATH)
        assert status == 503
        assert "does not run under the cgo-audit shim" in body and "LD_PRELOAD" in body, body
        status, body = server.get(HANDLER_PATH + "?seconds=nope")
        assert status == 400 and "bad seconds" in body, body
    finally:
        server.close()


def test_under_the_shim_without_stacks_the_handler_says_why(leakyserver, shim_session):
    env = {k: v for k, v in shim_session.environment().items() if k != "CGO_AUDIT_STACKS"}
    server = start(leakyserver, env)
    try:
        status, body = server.get(HANDLER_PATH)
        assert status == 503
        assert "records no allocation stacks" in body and "CGO_AUDIT_STACKS=all" in body, body
    finally:
        server.close()


def test_a_shim_loaded_later_with_rtld_local_is_found(build_dir, shim_path):
    # As cgo-audit attach loads it: dlopen(RTLD_NOW), so dlsym(RTLD_DEFAULT)
    # cannot see it; the handler finds it among the mapped files.
    binary = build_go_command(FIXTURES, "./cmd/lateshim", build_dir / "lateshim")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["CGO_AUDIT_STACKS"] = "all"    # read by the shim when it loads
    server = Server(binary, env, lambda addr: ["-addr", addr, "-shim", str(shim_path)])
    try:
        status, body = server.get(HANDLER_PATH)
        assert status == 503 and "does not run under the cgo-audit shim" in body, body
        assert server.get("/load") == (200, "loaded\n")
        status, body = server.get(HANDLER_PATH)
        assert status == 200, body
    finally:
        server.close()


def test_the_handlers_go_unit_tests_pass():
    # Folding and scaling on synthetic stacks; no shim needed.
    proc = subprocess.run([go_executable(), "test", "-count=1", "./cheap"], cwd=GO_HELPERS,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
