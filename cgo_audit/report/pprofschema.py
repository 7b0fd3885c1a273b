"""The pprof profile.proto schema as Python classes, generated on first use.

The schema is the one pprof publishes (github.com/google/pprof, proto/
profile.proto), fetched through the Go module proxy like any Go module and
compiled with grpcio-tools' protoc into the cache, beside the shim. Nothing
of pprof's is copied into this repository."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from cgo_audit.errors import AuditError
from cgo_audit.shim.build import cache_dir
from cgo_audit.toolchain.gotool import go_executable

PPROF_MODULE = "github.com/google/pprof"
PPROF_VERSION = "v0.0.0-20261105003125-4bf881d7fb0b"
_loaded: ModuleType | None = None


def _proto_source() -> Path:
    env = dict(os.environ, GOFLAGS="-mod=mod")
    with tempfile.TemporaryDirectory() as empty:  # outside any module, so no go.mod is touched
        proc = subprocess.run([go_executable(), "mod", "download", "-json", f"{PPROF_MODULE}@{PPROF_VERSION}"],
                              cwd=empty, capture_output=True, text=True, env=env)
    try:
        info = json.loads(proc.stdout)
    except ValueError:
        info = {}
    if proc.returncode != 0 or "Dir" not in info:
        reason = info.get("Error") or proc.stderr.strip().splitlines()[-1:] or ["no answer"]
        raise AuditError(f"cannot fetch pprof's profile.proto ({PPROF_MODULE}@{PPROF_VERSION}): {reason}")
    return Path(info["Dir"]) / "proto" / "profile.proto"


def _generate(target: Path) -> None:
    if importlib.util.find_spec("grpc_tools") is None:  # only needed to generate, once
        raise AuditError("--pprof needs grpcio-tools to compile profile.proto (pip install grpcio-tools)")
    source = _proto_source()
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as out:
        proc = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{source.parent}",
                               f"--python_out={out}", str(source)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise AuditError(f"protoc failed on profile.proto: {proc.stderr.strip()}")
        os.replace(Path(out) / "profile_pb2.py", target / "profile_pb2.py")


def profile_module() -> ModuleType:
    """The generated module (Profile, Sample, Location, ...)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    target = cache_dir() / f"pprof-{PPROF_VERSION}"
    if not (target / "profile_pb2.py").is_file():
        _generate(target)
    spec = importlib.util.spec_from_file_location("cgo_audit_profile_pb2", target / "profile_pb2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _loaded = module
    return module
