"""The shim preloaded into real processes: exact under many threads, one
region per process (fork) and per program image (exec), and harmless to
ordinary programs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cgo_audit.measure.runner import ShimSession, run_target


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sixteen_threads_end_with_exactly_what_they_hold(shim_path, stress_binary, seed):
    with ShimSession(shim_path) as session:
        proc = subprocess.run([str(stress_binary), "16", "100000", str(seed)], capture_output=True, text=True,
                              env=session.environment(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["failures"] == 0
    assert result["shim_live_bytes"] == result["held_bytes"] > 0
    assert result["shim_live_allocs"] == result["held_allocs"] > 0
    assert result["total_allocs"] > 16 * 100000 // 3


def test_stack_figures_add_up_to_the_live_heap_under_many_threads(shim_path, stress_binary):
    """With a stack on every allocation, the live bytes and blocks held per
    stack sum to the process's live user heap (zero-byte blocks included)."""
    with ShimSession(shim_path) as session:
        proc = subprocess.Popen([str(stress_binary), "8", "50000", "7"], stdout=subprocess.PIPE, text=True,
                                env=session.environment(extra={"CGO_AUDIT_STACKS": "all"}))
        out, _ = proc.communicate(timeout=300)
        cheap, stacks = session.main_state(proc.pid, stacks=True)
    assert proc.returncode == 0
    assert json.loads(out)["failures"] == 0
    assert cheap is not None and stacks
    # Read after exit: the program's own output buffers are live too.
    assert cheap.user_live_bytes > 0
    assert sum(s.live_bytes for s in stacks) == cheap.user_live_bytes
    assert sum(s.live_allocs for s in stacks) == cheap.user_live_allocs
    assert all(s.live_allocs >= 0 and s.live_bytes >= 0 for s in stacks)


def test_forked_child_has_its_own_region(shim_path, forker_binary):
    keep, child_bytes, parent_bytes = 4096, 1000, 300
    with ShimSession(shim_path) as session:
        record = run_target([str(forker_binary), str(keep), str(child_bytes), str(parent_bytes)], session)
    assert record.returncode == 0
    children = [o for o in record.others if o.relation == "child"]
    assert len(children) == 1
    child = children[0]
    assert child.info.forked_child and child.info.ppid == record.pid
    parent_live = record.final_c_heap.user_live_bytes
    assert parent_live >= keep + parent_bytes
    # The child inherited the parent's heap up to the fork and added only its own.
    assert child.c_heap.user_live_bytes - parent_live == child_bytes - parent_bytes


def test_exec_gives_each_image_its_own_region(shim_path, forker_binary):
    with ShimSession(shim_path) as session:
        record = run_target(["sh", "-c", f"exec {forker_binary} 100 10 7"], session)
    assert record.returncode == 0
    predecessors = [o for o in record.others if o.relation == "exec-predecessor"]
    assert len(predecessors) == 1 and predecessors[0].info.pid == record.pid
    assert predecessors[0].info.exe.endswith(("sh", "dash", "bash"))
    assert record.final_c_heap.user_live_bytes >= 107
    assert any(o.relation == "child" and o.info.forked_child for o in record.others)


def test_ordinary_programs_run_unharmed(shim_path):
    script = ("import threading, json\n"
              "def work():\n"
              "    data = [json.dumps({'k': 'v' * i}) for i in range(2000)]\n"
              "threads = [threading.Thread(target=work) for _ in range(8)]\n"
              "[t.start() for t in threads]; [t.join() for t in threads]\n"
              "print('done')\n")
    with ShimSession(shim_path) as session:
        record = run_target([sys.executable, "-c", script], session)
        shell = run_target(["sh", "-c", "ls / | sort | head -n 3 >/dev/null; echo ok"], session)
    assert record.returncode == 0 and record.stdout.strip() == "done", record.stderr
    assert record.final_c_heap is not None and record.final_c_heap.total_allocs > 1000
    assert shell.returncode == 0 and shell.stdout.strip() == "ok"
