"""cgo-audit installed as a user installs it, then used outside this checkout:
sdist -> wheel (built from that sdist) -> a fresh virtualenv; pipx and
`uv tool install` from the wheel and from a copy of the checkout. Each
installed `cgo-audit` builds its shim from the sources it carries (a fresh
cache) and finds the cstring fixture's leak, copied into a module of its own,
at exactly 26 B/op. Installing needs PyPI (build backends, dependencies):
without it these tests skip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import cgo_audit
from cgo_audit.toolchain.gotool import go_executable

from helpers import REPO, assert_one_line_error, copy_cstring_module

pytestmark = [pytest.mark.slow, pytest.mark.network]

INSTALL_TIMEOUT_S = 600
# Environment the checkout's test run sets that a user's shell would not have.
SCRUBBED = ("PYTHONPATH", "VIRTUAL_ENV", "CGO_AUDIT_CSRC", "CGO_AUDIT_SHIM", "CGO_AUDIT_CACHE", "PYTHONHOME")
NOT_SHIPPED = {".venv", ".git", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis"}


def user_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A user's environment: nothing of this checkout's, a shim cache of its own."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env["CGO_AUDIT_CACHE"] = str(tmp / "cgo-audit-cache")
    env.update(extra)
    return env


def run(argv: list[str | Path], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = INSTALL_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    """Fails with the tool's output, or skips when the failure is PyPI being out of reach."""
    if proc.returncode == 0:
        return
    output = proc.stdout + proc.stderr
    offline = ("Could not find a version", "No matching distribution", "NewConnectionError",
               "Temporary failure in name resolution", "Network is unreachable", "Failed to fetch",
               "error sending request", "dns error", "ConnectTimeout")
    if any(sign in output for sign in offline):
        pytest.skip(f"{what}: PyPI is out of reach ({next(s for s in offline if s in output)})")
    pytest.fail(f"{what} failed ({proc.returncode}):\n{output[-4000:]}")


@pytest.fixture(scope="module")
def checkout_copy(tmp_path_factory) -> Path:
    """The checkout as a user would clone it, minus local build state (and
    outside it, so nothing is written into the real one)."""
    dest = tmp_path_factory.mktemp("checkout") / "cgo-audit"
    shutil.copytree(REPO, dest, ignore=lambda _d, names: [n for n in names if n in NOT_SHIPPED
                                                          or n.endswith(".egg-info")])
    return dest


@pytest.fixture(scope="module")
def dists(checkout_copy, tmp_path_factory) -> tuple[Path, Path]:
    """(sdist, wheel built from that sdist)."""
    out = tmp_path_factory.mktemp("dist")
    check(run([sys.executable, "-m", "build", "--sdist", "--outdir", out, checkout_copy], cwd=out),
          "building the sdist")
    (sdist,) = out.glob("cgo_audit-*.tar.gz")
    check(run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", out, sdist], cwd=out),
          "building a wheel from the sdist")
    (wheel,) = out.glob("cgo_audit-*.whl")
    return sdist, wheel


def test_sdist_and_wheel_carry_every_file_the_tool_reads(dists):
    import tarfile
    import zipfile

    sdist, wheel = dists
    # The version is written once (cgo_audit/__init__.py); the build reads it from there.
    assert sdist.name == f"cgo_audit-{cgo_audit.__version__}.tar.gz"
    assert wheel.name.startswith(f"cgo_audit-{cgo_audit.__version__}-")
    with tarfile.open(sdist) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    shim_sources = {p.name for p in (REPO / "csrc").iterdir() if p.suffix in (".c", ".h")}
    assert {f"csrc/{n}" for n in shim_sources} <= in_sdist
    assert {f"cgo_audit/_csrc/{n}" for n in shim_sources} <= in_wheel
    # Every file of the package, code or data (templates, tables), in every subpackage.
    package_files = {str(p.relative_to(REPO)) for p in (REPO / "cgo_audit").rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts}
    assert package_files - in_sdist == set()
    assert package_files - in_wheel == set()
    # `cgo-audit demo`'s Go service and the fixture it calls, with a go.mod of their own.
    demo = {"cmd/leakyserver/main.go", "cstring/getvalue.go", "cstring/getvalue.c", "cstring/getvalue.h",
            "cstring/testdata/app.conf"}
    assert {f"go_fixtures/{n}" for n in demo} <= in_sdist
    assert {f"cgo_audit/_demo/{n}" for n in demo | {"go.mod"}} <= in_wheel


def audit_cstring(cgo_audit_exe: Path, tmp: Path, *extra: str, env: dict[str, str] | None = None
                  ) -> tuple[subprocess.CompletedProcess[str], dict]:
    """The installed tool on a copy of the cstring fixture, from a directory outside the checkout."""
    module = copy_cstring_module(tmp / "cstring")
    report = tmp / "report.json"
    proc = run([cgo_audit_exe, "bench", "--dir", module, "--json", report, *extra], cwd=tmp,
               env=env or user_env(tmp))
    return proc, json.loads(report.read_text()) if report.exists() else {}


def assert_finds_26_bytes(cgo_audit_exe: Path, tmp: Path) -> None:
    version = run([cgo_audit_exe, "--version"], cwd=tmp, env=user_env(tmp))
    assert version.stdout.strip() == f"cgo-audit {cgo_audit.__version__}", version.stdout + version.stderr
    proc, report = audit_cstring(cgo_audit_exe, tmp)
    assert proc.returncode == 1, proc.stdout + proc.stderr   # 1: a new leak
    results = {r["name"]: r for r in report["results"]}
    assert results["BenchmarkGetValueLeaky"]["c_leak_bytes_per_op"] == 26.0
    assert results["BenchmarkGetValueFixed"]["c_leak_bytes_per_op"] == 0.0
    # The shim was built from the sources the installation carries, into the fresh cache.
    assert list((tmp / "cgo-audit-cache").glob("shim-*/libcgoaudit.so")), "no shim was built"


@pytest.fixture(scope="module")
def wheel_venv(dists, tmp_path_factory) -> Path:
    """A fresh virtualenv outside the checkout with the wheel (no extras) installed."""
    root = tmp_path_factory.mktemp("venv")
    venv.create(root / "venv", with_pip=True)
    py = root / "venv" / "bin" / "python"
    check(run([py, "-m", "pip", "install", dists[1]], cwd=root, env=user_env(root)), "pip install the wheel")
    return root / "venv"


def test_wheel_built_from_the_sdist_installs_and_finds_26_bytes_per_op(wheel_venv, tmp_path):
    proc = run([wheel_venv / "bin" / "python", "-c",
                "import cgo_audit, cgo_audit.sources as s; print(cgo_audit.__file__); print(s.csrc_dir())"],
               cwd=tmp_path, env=user_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    located = proc.stdout.split()
    assert located[0].startswith(str(wheel_venv)) and located[1].endswith("_csrc"), located
    assert_finds_26_bytes(wheel_venv / "bin" / "cgo-audit", tmp_path)


def test_without_the_html_extra_html_is_refused_in_one_line_and_pprof_works_offline(wheel_venv, tmp_path):
    exe = wheel_venv / "bin" / "cgo-audit"
    proc, _ = audit_cstring(exe, tmp_path, "--html", str(tmp_path / "r.html"))
    assert_one_line_error(proc, "the HTML report (--html) needs the 'html' extra",
                          "pip install 'cgo-audit[html]'")
    profile = tmp_path / "leak.pb.gz"
    env = user_env(tmp_path, GOPROXY="off", GOMODCACHE=str(tmp_path / "gomodcache"))
    shutil.rmtree(tmp_path / "cstring")
    proc, report = audit_cstring(exe, tmp_path, "--bench", "Leaky", "--pprof", str(profile), env=env)
    assert proc.returncode == 1 and report["results"][0]["c_leak_bytes_per_op"] == 26.0, proc.stdout + proc.stderr
    top = run([go_executable(), "tool", "pprof", "-top", profile], cwd=tmp_path).stdout
    assert "C.CString" in top and "cstring.GetValueLeaky" in top


def tool_sources(checkout_copy: Path, dists: tuple[Path, Path]) -> dict[str, Path]:
    return {"wheel": dists[1], "checkout": checkout_copy}


@pytest.mark.parametrize("source", ["wheel", "checkout"])
def test_pipx_install_finds_26_bytes_per_op(source, checkout_copy, dists, tmp_path):
    pipx = shutil.which("pipx")
    if pipx is None:
        pytest.skip("pipx is not installed (apt-get install pipx)")
    env = user_env(tmp_path, PIPX_HOME=str(tmp_path / "pipx"), PIPX_BIN_DIR=str(tmp_path / "bin"),
                   PIPX_MAN_DIR=str(tmp_path / "man"))
    check(run([pipx, "install", tool_sources(checkout_copy, dists)[source]], cwd=tmp_path, env=env),
          f"pipx install from the {source}")
    assert_finds_26_bytes(tmp_path / "bin" / "cgo-audit", tmp_path)


def uv_tool_install(what: str, tmp_path: Path) -> Path:
    """`uv tool install WHAT` into tmp_path; the installed cgo-audit."""
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:
        pytest.skip("uv is not installed (pip install uv; it is in the test extra)")
    env = user_env(tmp_path, UV_TOOL_DIR=str(tmp_path / "uv-tools"), UV_TOOL_BIN_DIR=str(tmp_path / "bin"))
    check(run([uv, "tool", "install", what], cwd=tmp_path, env=env), f"uv tool install {what}")
    return tmp_path / "bin" / "cgo-audit"


@pytest.mark.parametrize("source", ["wheel", "checkout"])
def test_uv_tool_install_finds_26_bytes_per_op(source, checkout_copy, dists, tmp_path):
    assert_finds_26_bytes(uv_tool_install(str(tool_sources(checkout_copy, dists)[source]), tmp_path), tmp_path)


def test_with_the_html_extra_the_installed_demo_writes_its_report(dists, tmp_path):
    exe = uv_tool_install(f"{dists[1]}[html]", tmp_path)
    page = tmp_path / "demo.html"
    proc = run([exe, "demo", "--kills", "1", "--memory-limit", "64MiB", "--html", page], cwd=tmp_path,
               env=user_env(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "leaky: cgo-leak" in proc.stdout and "fixed: clean" in proc.stdout, proc.stdout
    assert "cstring.GetValueLeaky getvalue.go" in proc.stdout
    assert "<svg" in page.read_text()
