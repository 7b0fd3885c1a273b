"""Helpers of the fleet tests (metrics, Prometheus, shards): a `cgo-audit
run --metrics-addr` in the background, its endpoint scraped and polled."""

from __future__ import annotations

import http.client
import subprocess
import sys
import urllib.request

import psutil
from prometheus_client.parser import text_string_to_metric_families

from helpers import REPO, SERVER_CWD, NoReport, free_port, wait_for

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape_text(url: str) -> str:
    """The endpoint's exposition text ('' if it does not answer)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.read().decode()
    except OSError:
        return ""


def scrape(url: str) -> Series:
    """Every sample of the endpoint, keyed by (name, sorted labels); {} if it does not answer."""
    text = scrape_text(url)
    if not text:
        return {}
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return series


def value(series: Series, name: str, **labels: str) -> float | None:
    """The one sample of name whose labels include labels (None if absent)."""
    found = [v for (n, ls), v in series.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def start_run(leakyserver, mode: str, *extra: str, seconds: int = 120, interval: float = 0.25,
              server_args: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str, int]:
    """`cgo-audit run --metrics-addr` of the fixture server, in the background."""
    port, metrics_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cgo_audit", "run", "--quiet", "--duration", str(seconds), "--interval", str(interval),
         "--metrics-addr", f"127.0.0.1:{metrics_port}", "--cwd", str(SERVER_CWD), *[e.format(port=port) for e in extra],
         "--", str(leakyserver), "-addr", f"127.0.0.1:{port}", "-mode", mode, *server_args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, f"http://127.0.0.1:{metrics_port}/metrics", port


def server_pid(proc: subprocess.Popen) -> int:
    def child() -> int | None:
        kids = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "leakyserver"]
        return kids[0].pid if kids else None
    return wait_for(child, 60, interval=0.2)  # type: ignore[return-value]


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def sequential_requests(port: int, count: int) -> None:
    """count requests one after another on one connection, each answered before the next."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(count):
        conn.request("GET", "/value?key=timeout")
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 200
    conn.close()


def audit_until(tmp_path, command: str, *args: str, until, what: str, timeout_s: float = 180
                ) -> tuple[subprocess.CompletedProcess[str], dict]:
    """`cgo-audit COMMAND --json ARGS` (run, watch or attach) stopped with
    Ctrl-C (SIGINT, which gives the report) once its own metrics endpoint
    shows the state until(series) asks for: a number of samples, say, which
    a busy machine takes longer to reach than an idle one. --duration is
    only the bound."""
    import json
    import signal

    out = tmp_path / "report.json"
    metrics = f"http://127.0.0.1:{free_port()}/metrics"
    proc = subprocess.Popen([sys.executable, "-m", "cgo_audit", command, "--json", str(out), "--quiet",
                             "--duration", str(int(timeout_s) + 60), "--metrics-addr", metrics[7:-8], *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: proc.poll() is not None or until(scrape(metrics)), timeout_s, what=what)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return done, json.loads(out.read_text()) if out.exists() else NoReport(done)
