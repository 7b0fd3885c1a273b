"""A real headless Chromium for the tests (Debian's package), and a reader of
the pages it loads: what a person opening a report would see."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from html.parser import HTMLParser
from typing import Any, Iterator, Sequence

import pytest

# The brief's flags for a root, headless, offline-as-possible Chromium.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


# --- Reading a page -----------------------------------------------------------

class PageOutline(HTMLParser):
    """What a test needs from a page: every element's attributes, the charts
    (and the SVG text inside each), and the text of the page."""

    VOID = {"meta", "link", "br", "img", "input", "hr", "wbr", "source", "col", "area", "base", "embed"}

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.charts: list[dict[str, Any]] = []
        self.text_parts: list[str] = []
        self._open: list[str] = []
        self._chart_depth: int | None = None
        self._in_svg_text = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.elements.append((tag, attributes))
        if tag == "figure" and "chart" in attributes.get("class", "").split():
            self.charts.append({"attrs": attributes, "svgs": 0, "svg_text": [], "text": []})
            self._chart_depth = len(self._open)
        elif self._chart_depth is not None and tag == "svg":
            self.charts[-1]["svgs"] += 1
        self._in_svg_text = tag == "text" and self._chart_depth is not None
        if tag not in self.VOID and not tag.endswith("/"):
            self._open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            while self._open and self._open.pop() != tag:
                pass
        if self._chart_depth is not None and len(self._open) <= self._chart_depth:
            self._chart_depth = None
        self._in_svg_text = False

    def handle_data(self, data: str) -> None:
        self.text_parts.append(data)
        if self._chart_depth is not None:
            self.charts[-1]["svg_text" if self._in_svg_text else "text"].append(data.strip())

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())

    def charts_of(self, name: str) -> dict[str, dict[str, Any]]:
        return {c["attrs"]["data-metric"]: c for c in self.charts if c["attrs"].get("data-result") == name}

    def verdicts_of(self, name: str) -> list[str]:
        return [attrs["data-verdict"] for _, attrs in self.elements
                if attrs.get("data-result") == name and "data-verdict" in attrs]


# --- In a real browser -----------------------------------------------------------

def chromium_binary() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("chromium not installed (apt-get install -y chromium): browser checks skipped")
    return found


def run_chromium(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One headless Chromium process with a fresh, empty profile."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


class DevToolsPipe:
    """Chromium's DevTools protocol over --remote-debugging-pipe (fd 3 in,
    fd 4 out, NUL-separated JSON): it reports every request a page makes,
    which a proxy cannot tell from the browser's own background traffic."""

    def __init__(self, profile: str) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire() -> None:
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.process = subprocess.Popen(
            [chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
             "about:blank"], pass_fds=(3, 4), preexec_fn=wire,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._last_id = 0

    def send(self, method: str, session: str | None = None, **params: Any) -> int:
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        return self._last_id

    def messages(self, deadline: float) -> Iterator[dict[str, Any]]:
        while time.monotonic() < deadline:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                yield json.loads(raw)
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    return
                self._buffer += chunk

    def call(self, method: str, deadline: float, session: str | None = None, **params: Any) -> dict[str, Any]:
        call_id = self.send(method, session, **params)
        for message in self.messages(deadline):
            if message.get("id") == call_id:
                return message.get("result", {})
        raise TimeoutError(method)

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.process.wait(timeout=15)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            os.close(self._to_browser)
            os.close(self._from_browser)


def requests_of_page(url: str, settle_s: float = 0.5, timeout_s: float = 45) -> list[str]:
    """Every URL a page requested while loading (and settle_s after), its own included."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        browser = DevToolsPipe(profile)
        try:
            deadline = time.monotonic() + timeout_s
            target = browser.call("Target.createTarget", deadline, url="about:blank")["targetId"]
            session = browser.call("Target.attachToTarget", deadline, targetId=target, flatten=True)["sessionId"]
            browser.call("Network.enable", deadline, session)
            browser.call("Page.enable", deadline, session)
            browser.send("Page.navigate", session, url=url)
            urls: list[str] = []
            loaded = False
            for message in browser.messages(deadline):
                if message.get("sessionId") != session:
                    continue
                if message.get("method") == "Network.requestWillBeSent":
                    urls.append(message["params"]["request"]["url"])
                elif message.get("method") == "Page.loadEventFired":
                    loaded = True
                    break
            assert loaded, f"{url} never finished loading"
            for message in browser.messages(time.monotonic() + settle_s):
                if message.get("sessionId") == session and message.get("method") == "Network.requestWillBeSent":
                    urls.append(message["params"]["request"]["url"])
            return urls
        finally:
            browser.close()


def network_requests(urls: Sequence[str]) -> list[str]:
    return [url for url in urls if not url.startswith(("file:", "data:", "about:"))]
