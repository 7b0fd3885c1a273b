"""`cgo-audit attach PID` on real processes started WITHOUT the shim: the
fixture server under loopback load, 16 threads allocating without pause,
bad input, and a cgo-audit killed mid-watch."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import build_c_test

from cgo_audit.audits.attach import attached
from cgo_audit.measure.load import HttpLoad
from cgo_audit.shim.region import Region

from helpers import REPO, SERVER_CWD, PacedLoad, assert_one_line_error, audit_json, free_port, run_cli, wait_for

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="attach is implemented for x86-64 only")


class Server:
    """The fixture server, started plainly (no LD_PRELOAD, no region dir)."""

    def __init__(self, binary: Path, mode: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "CGO_AUDIT_DIR")}
        self.proc = subprocess.Popen([str(binary), "-addr", f"127.0.0.1:{self.port}", "-mode", mode],
                                     cwd=SERVER_CWD, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert HttpLoad([self.url()]).wait_ready(60), "the server never answered"

    def url(self) -> str:
        return f"{self.base}/value?key=timeout"

    def answers(self) -> bool:
        with urllib.request.urlopen(self.url(), timeout=10) as response:
            return response.status == 200 and response.read().strip() == b"30s"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def leaky(leakyserver):  # type: ignore[no-untyped-def]
    server = Server(leakyserver, "leaky")
    yield server
    server.stop()


def attach_json(tmp_path: Path, server: Server, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    # Until the load has had 20,000 answers (about 5 s idle: one request's C
    # blocks in flight at a sample then move the slope by well under 1%);
    # 300 s is only the bound.
    return audit_json(tmp_path, str(server.proc.pid), "--duration", "300", "--requests", "20000",
                      "--interval", "0.25", "--load", server.url(), "--pprof-url", server.base, *extra,
                      command="attach")


def cstring_sites(program: dict) -> dict[int, dict]:
    return {site["call"]: site for site in program["sites"]
            if site["function"].endswith("cstring.GetValueLeaky") and site["file"].endswith("getvalue.go")}


def test_attach_counts_the_cstring_leak_exactly_then_detaches_and_attaches_again(tmp_path, leaky):
    assert "libcgoaudit" not in Path(f"/proc/{leaky.proc.pid}/maps").read_text()
    for attempt in (1, 2):   # the second attach, after a detach, of the same process
        proc, report = attach_json(tmp_path, leaky, "--stacks", "all")
        program = report["program"]
        assert proc.returncode == 1, (attempt, proc.stdout, proc.stderr)
        assert program["verdict"] == "cgo-leak" and program["per"] == "request"
        assert program["c_leak_bytes_per_op"] == pytest.approx(26.0, rel=0.01)
        assert program["c_leak_allocs_per_op"] == pytest.approx(2.0, rel=0.01)
        sites = cstring_sites(program)
        assert set(sites) == {1, 2}, program["sites"]
        assert all(site["line"] == 35 for site in sites.values())
        # Every allocation's stack is kept (--stacks all): each call's own share.
        assert sites[1]["bytes_per_op"] == pytest.approx(18.0, rel=0.02)
        assert sites[2]["bytes_per_op"] == pytest.approx(8.0, rel=0.02)
        assert "detached" in proc.stdout
        # Detached: the process still serves, with its original slots back.
        assert leaky.proc.poll() is None and leaky.answers()
    assert "libcgoaudit" in Path(f"/proc/{leaky.proc.pid}/maps").read_text()   # loaded once, left idle


def test_attach_calls_the_fixed_server_clean(tmp_path, leakyserver):
    server = Server(leakyserver, "fixed")
    try:
        proc, report = attach_json(tmp_path, server)
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["program"]["verdict"] == "clean"
    assert abs(report["program"]["c_leak_bytes_per_op"] or 0) < 0.5


def test_watch_attaches_when_the_process_was_not_started_under_the_shim(tmp_path, leaky):
    # Per second: a fixed pace a busy machine still keeps (catching up when
    # late), so the C heap's slope is steady however busy the machine is.
    load = PacedLoad(leaky.url(), per_second=100)
    try:
        wait_for(lambda: load.sent > 100, what="the load to run")
        proc, report = audit_json(tmp_path, str(leaky.proc.pid), "--duration", "6", "--interval", "0.25",
                                  command="watch")
    finally:
        load.stop()
    program = report["program"]
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    assert not any(line.startswith("C heap") for line in program["not_measured"])
    # Per second of someone else's load: the C heap is measured and grows,
    # at least by 26 B for each of the 200 requests the pace sends in 2 s.
    c_heap = program["growth"]["c_bytes"]
    assert c_heap["shape"] in ("linear", "growing") and c_heap["total"] >= 26 * 200, c_heap
    assert "attached:" in proc.stdout
    assert leaky.answers()


def test_watch_with_no_attach_says_the_c_heap_was_not_measured(tmp_path, leaky):
    proc, report = audit_json(tmp_path, str(leaky.proc.pid), "--duration", "2", "--interval", "0.25",
                              "--no-attach", command="watch")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert any("refused (--no-attach)" in line for line in report["program"]["not_measured"])
    assert "libcgoaudit" not in Path(f"/proc/{leaky.proc.pid}/maps").read_text()


@pytest.fixture(scope="session")
def attach_stress(build_dir: Path) -> Path:
    return build_c_test(build_dir, "attach_stress")


def test_attach_during_heavy_allocation_in_16_threads_is_exact_after_the_attach(tmp_path, attach_stress):
    proc = subprocess.Popen([str(attach_stress), "16"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None

    def command(letter: str) -> str:
        proc.stdin.write(f"{letter}\n".encode())   # type: ignore[union-attr]
        proc.stdin.flush()                          # type: ignore[union-attr]
        return proc.stdout.readline().decode().strip()   # type: ignore[union-attr]

    try:
        assert proc.stdout.readline().strip() == b"ready"
        with attached(proc.pid, "off", 0) as (_attachment, path, _session):
            with Region(path) as region:
                wait_for(lambda: region.cheap().total_allocs > 200_000, what="allocations through the shim")
                assert command("p") == "paused"          # holds nothing now
                start = region.cheap()
                assert start.ignored_frees > 0           # blocks from before the attach, freed since
                assert command("r") == "resumed"
                wait_for(lambda: region.cheap().total_allocs > start.total_allocs + 300_000, what="more allocations")
                held = json.loads(command("s"))
                end = region.cheap()
                assert held["held_blocks"] > 1000
                assert end.user_live_bytes - start.user_live_bytes == held["held_bytes"]
                assert end.user_live_allocs - start.user_live_allocs == held["held_blocks"]
                assert end.failed_allocs == 0 and end.untracked_allocs == 0
            assert command("r") == "resumed"
        # Detached while 16 threads allocate: they go on, and stop cleanly.
        time.sleep(0.2)
        assert command("q") == "done"
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_killed_cgo_audit_leaves_the_target_serving(tmp_path, leaky):
    load = HttpLoad([leaky.url()])
    load.start()
    try:
        report = tmp_path / "report.json"
        watcher = subprocess.Popen([sys.executable, "-m", "cgo_audit", "attach", str(leaky.proc.pid),
                                    "--duration", "600", "--interval", "0.2", "--json", str(report)],
                                   cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(lambda: "libcgoaudit" in " ".join(allocator_slot_owners(leaky.proc.pid))
                 and _tracer(leaky.proc.pid) == 0 and _region_growing(leaky.proc.pid), what="the attach")
        watcher.send_signal(signal.SIGKILL)
        watcher.wait()
        before = load.completed
        wait_for(lambda: load.completed > before + 500, what="requests after the kill")
        assert leaky.proc.poll() is None and leaky.answers()
        assert not report.exists()
        # As docs/attach.md says: the shim stays in, still counting.
        assert "libcgoaudit" in " ".join(allocator_slot_owners(leaky.proc.pid))
        # A new attach takes over the slots the dead one left pointing at the
        # shim (per request of its own load only: ours stops first).
        load.stop()
        proc, again = attach_json(tmp_path, leaky)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert again["program"]["c_leak_bytes_per_op"] == pytest.approx(26.0, rel=0.01), proc.stdout + proc.stderr
    finally:
        load.stop()
        for directory in Path("/dev/shm").glob("cgo-audit-*"):   # the one the killed cgo-audit left
            if any(directory.glob(f"cgo-audit.{leaky.proc.pid}.*.region")):
                shutil.rmtree(directory, ignore_errors=True)


def test_ctrl_c_detaches_and_reports(tmp_path, leaky):
    report = tmp_path / "report.json"
    watcher = subprocess.Popen([sys.executable, "-m", "cgo_audit", "attach", str(leaky.proc.pid), "--duration", "0",
                                "--interval", "0.2", "--load", leaky.url(), "--json", str(report)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Until the shim has seen some 10,000 requests: evidence enough for a verdict.
    wait_for(lambda: "libcgoaudit" in " ".join(allocator_slot_owners(leaky.proc.pid))
             and _region_growing(leaky.proc.pid, 20_000), timeout_s=120, what="the attach and its evidence")
    watcher.send_signal(signal.SIGINT)
    out, err = watcher.communicate(timeout=120)
    assert watcher.returncode == 1, out + err
    program = json.loads(report.read_text())["program"]
    assert program["verdict"] == "cgo-leak"
    assert program["c_leak_bytes_per_op"] == pytest.approx(26.0, rel=0.01)
    # The executable's malloc and free slots point where they did before.
    owners = allocator_slot_owners(leaky.proc.pid)
    assert owners and not any("libcgoaudit" in owner for owner in owners), owners
    assert _tracer(leaky.proc.pid) == 0 and leaky.answers()


def allocator_slot_owners(pid: int) -> set[str]:
    """The files the executable's malloc/free GOT slots point into, now."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection

    exe = os.readlink(f"/proc/{pid}/exe")
    maps = [line.split() for line in Path(f"/proc/{pid}/maps").read_text().splitlines()]
    ranges = [(*(int(x, 16) for x in m[0].split("-")), m[5] if len(m) > 5 else "") for m in maps]
    base = min(lo for lo, _, path in ranges if path == exe)
    owners = set()
    with open(exe, "rb") as stream, open(f"/proc/{pid}/mem", "rb") as mem:
        elf = ELFFile(stream)
        bias = 0 if elf["e_type"] == "ET_EXEC" else base
        symbols = elf.get_section_by_name(".dynsym")
        for section in elf.iter_sections():
            if not isinstance(section, RelocationSection):
                continue
            for reloc in section.iter_relocations():
                if symbols.get_symbol(reloc["r_info_sym"]).name in ("malloc", "free"):
                    mem.seek(bias + reloc["r_offset"])
                    value = int.from_bytes(mem.read(8), "little")
                    owners.update(path for lo, hi, path in ranges if lo <= value < hi)
    return owners


def _tracer(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    return -1


def _region_growing(pid: int, allocs: int = 100) -> bool:
    """A region of pid's, in any cgo-audit directory, that has counted."""
    for directory in Path("/dev/shm").glob("cgo-audit-*"):
        for path in directory.glob(f"cgo-audit.{pid}.*.region"):
            try:
                with Region(path) as region:
                    if region.ready() and region.cheap().total_allocs > allocs:
                        return True
            except (OSError, ValueError):
                continue
    return False


# ---- bad input: one line, exit 2, target untouched -------------------------


def test_attach_to_a_pid_that_does_not_exist():
    assert_one_line_error(run_cli("attach", "999999999", "--duration", "1"), "no process with pid")


def test_attach_to_a_statically_linked_binary(tmp_path):
    source = tmp_path / "static.c"
    source.write_text("#include <unistd.h>\nint main(void) { for (;;) pause(); }\n")
    binary = tmp_path / "static"
    subprocess.run(["cc", "-static", "-O2", "-o", str(binary), str(source)], check=True)
    target = subprocess.Popen([str(binary)])
    try:
        wait_for(lambda: Path(f"/proc/{target.pid}/exe").resolve() == binary.resolve(), what="the exec")
        assert_one_line_error(run_cli("attach", str(target.pid), "--duration", "1"), "statically linked")
        assert target.poll() is None
    finally:
        target.kill()
        target.wait()


def test_attach_to_a_process_already_traced(tmp_path, leaky):
    """ptrace not permitted: the kernel allows one tracer, and a debugger has it."""
    seize = ctypes.CDLL(None, use_errno=True)
    seize.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    # A helper process seizes the server (without stopping it) and keeps it.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import ctypes, sys, time\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]\n"
        f"assert libc.ptrace(0x4206, {leaky.proc.pid}, None, None) == 0, ctypes.get_errno()\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert_one_line_error(run_cli("attach", str(leaky.proc.pid), "--duration", "1"),
                              "ptrace not permitted", f"traced by pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    wait_for(lambda: _tracer(leaky.proc.pid) == 0, what="the holder to let go")
    assert leaky.answers()
    assert "libcgoaudit" not in Path(f"/proc/{leaky.proc.pid}/maps").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run cgo-audit as another user")
def test_attach_to_another_users_process(tmp_path, leaky):
    """cgo-audit run by an unprivileged user against root's server."""
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    env = {**os.environ, "CGO_AUDIT_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    # A checkout under a private folder (mktemp -d is mode 700) cannot be read by another user.
    importable = subprocess.run([*as_nobody, "-c", "import cgo_audit.cli"], cwd="/", env=env,
                                capture_output=True, text=True, timeout=120)
    if importable.returncode != 0:
        pytest.skip("the unprivileged user cannot import this checkout's cgo_audit (a private folder above it)")
    proc = subprocess.run([*as_nobody, "-m", "cgo_audit", "attach", str(leaky.proc.pid), "--duration", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert_one_line_error(proc, "belongs to another user")
    assert leaky.answers()


def test_attach_to_a_pid_that_exits_during_the_attach(tmp_path):
    """A program that quits the moment any of its threads is traced."""
    source = tmp_path / "quitter.c"
    source.write_text(r'''
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static void *watch(void *arg) {
    (void)arg;
    for (;;) {
        DIR *d = opendir("/proc/self/task");
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            char path[256], buf[4096];
            snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
            FILE *f = fopen(path, "r");
            if (!f) continue;
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            buf[n] = 0;
            char *t = strstr(buf, "TracerPid:");
            if (t && atoi(t + 10) != 0) _exit(3);
        }
        if (d) closedir(d);
    }
    return NULL;
}
int main(void) {
    pthread_t a, b;
    pthread_create(&a, NULL, watch, NULL);
    pthread_create(&b, NULL, watch, NULL);
    write(1, "ready\n", 6);
    for (;;) pause();
}
''')
    binary = tmp_path / "quitter"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(source), "-lpthread"], check=True)
    target = subprocess.Popen([str(binary)], stdout=subprocess.PIPE)
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == b"ready"
        proc = run_cli("attach", str(target.pid), "--duration", "5")
        assert target.wait(timeout=30) == 3      # it did quit when traced
        assert_one_line_error(proc, f"pid {target.pid}")
        assert "exited during the attach" in proc.stderr or "no process" in proc.stderr
    finally:
        if target.poll() is None:
            target.kill()
            target.wait()


def test_attach_when_the_static_tls_surplus_is_spent(tmp_path):
    """The shim's initial-exec TLS comes from glibc's static TLS surplus when
    it is loaded by dlopen. A program whose own dlopen'ed libraries spent
    that surplus gets a one-line error saying so, and keeps running."""
    sizes = [2048 >> k for k in range(7)]     # 2048 .. 32 bytes, three libraries each: a greedy fill
    for size in sizes:
        for copy in "abc":
            source = tmp_path / f"tls_{size}{copy}.c"
            source.write_text(f'__thread char big[{size}] __attribute__((tls_model("initial-exec")));\n'
                              "char *touch(void) { return big; }\n")
            subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(tmp_path / f"libtls_{size}{copy}.so"),
                            str(source)], check=True)
    (tmp_path / "filler.c").write_text(r'''
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    (void)argc;
    for (int s = 2048; s >= 32; s /= 2)
        for (char c = 'a'; c <= 'c'; c++) {
            char path[512];
            snprintf(path, sizeof path, "%s/libtls_%d%c.so", argv[1], s, c);
            dlopen(path, RTLD_NOW);
        }
    puts("filled");
    fflush(stdout);
    for (;;) pause();
}
''')
    subprocess.run(["cc", "-O2", "-o", str(tmp_path / "filler"), str(tmp_path / "filler.c"), "-ldl"], check=True)
    target = subprocess.Popen([str(tmp_path / "filler"), str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == b"filled"
        assert_one_line_error(run_cli("attach", str(target.pid), "--duration", "1", "--stacks", "off"),
                              "static TLS", "optional_static_tls")
        assert target.poll() is None
        assert _tracer(target.pid) == 0
    finally:
        target.kill()
        target.wait()


def test_watch_detach_after_bounds_the_attach(tmp_path, leaky):
    """--detach-after ends an unbounded watch (--duration 0) and restores the slots."""
    proc, report = audit_json(tmp_path, str(leaky.proc.pid), "--duration", "0", "--detach-after", "2",
                              "--interval", "0.25", command="watch")
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    notes = " ".join(report["program"]["notes"])
    assert "then detached as asked" in notes
    owners = allocator_slot_owners(leaky.proc.pid)
    assert owners and not any("libcgoaudit" in owner for owner in owners), owners
    assert leaky.answers()
