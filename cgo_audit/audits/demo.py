"""`cgo-audit demo`: the field guide's story end to end, on the bundled
service. The leaky get_value service runs under a memory limit until it is
killed and restarted, again and again (the sawtooth of the guide's monitor),
while `go tool pprof` on its heap shows nothing; then the fixed service runs
under the same load and stays flat. Both go into one report, with the line
that leaks and the fix."""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cgo_audit.audits.run import RunSettings, audit_program
from cgo_audit.driver import build_go_command
from cgo_audit.errors import AuditError
from cgo_audit.model import ProgramResult
from cgo_audit.sources import PACKAGE_DIR
from cgo_audit.toolchain.gotool import go_executable
from cgo_audit.units import format_bytes

# Long keys make each request leak 8 KB instead of 26 bytes, so the memory
# limit is reached in seconds rather than the hours it takes in production.
DEMO_KEY = "k" * 8000
FIX = """cfile := C.CString(file)
ckey := C.CString(key)
ret := C.get_value(cfile, ckey, &content[0], 40960, &errmsg[0], 1024)
C.free(unsafe.Pointer(cfile))
C.free(unsafe.Pointer(ckey))"""


@dataclass
class DemoResult:
    leaky: ProgramResult
    fixed: ProgramResult
    pprof_top: str           # what `go tool pprof -top` said about the leaky service's heap
    key_bytes: int


def fixtures_dir() -> Path:
    # The checkout's fixtures, else the copy an installed package carries (setup.py).
    for candidate in (PACKAGE_DIR.parent / "go_fixtures", PACKAGE_DIR / "_demo", Path.cwd() / "go_fixtures"):
        if (candidate / "cmd" / "leakyserver").is_dir():
            return candidate
    raise AuditError("the demo's Go service is not installed (cgo_audit/_demo): reinstall cgo-audit, "
                     "or run the demo from a checkout")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pprof_top_later(url: str, after_s: float, out: list[str]) -> threading.Thread:
    """`go tool pprof -top` on the service's heap, as the guide does, a
    little into the run: the Go heap it shows is all pprof can see."""
    def fetch() -> None:
        time.sleep(after_s)
        proc = subprocess.run([go_executable(), "tool", "pprof", "-top", "-sample_index=inuse_space",
                               f"{url}/debug/pprof/heap?gc=1"], capture_output=True, text=True, timeout=60)
        out.append((proc.stdout or proc.stderr).strip())

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    return thread


def run_demo(kills: int = 3, memory_limit_bytes: int = 128 << 20, max_seconds: float = 300.0,
             interval_s: float = 0.25, progress=lambda _sample: None) -> DemoResult:
    """The leaky service runs until the memory limit has killed it `kills`
    times; the fixed one then takes as many requests. Both are states, not
    seconds, so a busy machine makes the demo slower, never different;
    max_seconds bounds each service in case the state never comes."""
    fixtures = fixtures_dir()
    with tempfile.TemporaryDirectory(prefix="cgo-audit-demo-") as work:
        server = build_go_command(fixtures, "./cmd/leakyserver", Path(work) / "leakyserver")
        results: dict[str, ProgramResult] = {}
        pprof_top: list[str] = []
        for mode in ("leaky", "fixed"):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            fetch = pprof_top_later(base, 3.0, pprof_top) if mode == "leaky" else None
            settings = RunSettings(
                argv=[str(server), "-addr", f"127.0.0.1:{port}", "-mode", mode], cwd=fixtures / "cstring",
                duration_s=max_seconds, interval_s=interval_s, pprof_url=base,
                load_urls=[f"{base}/value?key={DEMO_KEY}"], memory_limit_bytes=memory_limit_bytes)
            if mode == "leaky":
                settings.restarts = settings.stop_after_kills = kills
            else:
                settings.stop_after_ops = max((s.ops or 0 for s in results["leaky"].samples), default=0) or None
            results[mode] = audit_program(settings, progress)
            if fetch is not None:
                fetch.join(timeout=60)
    return DemoResult(results["leaky"], results["fixed"], pprof_top[0] if pprof_top else "", len(DEMO_KEY))


def demo_intro(demo: DemoResult, memory_limit_bytes: int) -> str:
    starts = len(demo.leaky.ends)
    return (
        "The field guide's service looks a key up through cgo on every request, with "
        "C.get_value(C.CString(file), C.CString(key), ...): the two C.CString copies are never freed. "
        f"Both services below take the same loopback load, with keys of {demo.key_bytes:,} bytes so that each "
        f"request leaks {demo.key_bytes + 19:,} bytes and the {format_bytes(memory_limit_bytes)} memory limit is "
        f"reached in seconds. The leaky one was killed by the limit and restarted {starts - 1} time(s): "
        "the sawtooth of the guide's monitor. Its Go heap stays flat the whole time, so go tool pprof shows "
        "nothing; the C heap, which only the shim counts, is the leak. The fixed one frees both copies, took "
        "as many requests, and stays flat.")


def terminal_lines(demo: DemoResult) -> list[str]:
    lines = [f"leaky: {demo.leaky.verdict}, started {len(demo.leaky.ends)} time(s): " + "; ".join(demo.leaky.ends)]
    lines.append(f"fixed: {demo.fixed.verdict}, started {len(demo.fixed.ends)} time(s)")
    for site in demo.leaky.sites[:2]:
        lines.append(f"  leak site: {site.label()}")
    return lines
