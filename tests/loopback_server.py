"""A Go server under test on loopback: started, waited for, asked, killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping

from helpers import free_port

WAIT_S = 120   # generous bound for every wait: the tests must pass on a loaded machine


class Server:
    """A Go server on a free loopback port, counting the leaky requests the
    test makes. args(address) gives its arguments."""

    def __init__(self, binary: Path, env: Mapping[str, str], args: Callable[[str], list[str]],
                 cwd: Path | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.requests = 0
        self.proc = subprocess.Popen([str(binary), *args(f"127.0.0.1:{self.port}")],
                                     cwd=cwd, env=dict(env), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + WAIT_S
        while True:
            assert self.proc.poll() is None, self.proc.stderr.read().decode() if self.proc.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "the fixture server never listened"
                time.sleep(0.05)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=WAIT_S) as answer:
                return answer.status, answer.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def request(self, count: int) -> None:
        """count leaky requests, one after another, each answered."""
        for _ in range(count):
            status, body = self.get("/value?key=timeout")
            assert (status, body.strip()) == (200, "30s")
            self.requests += 1

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
