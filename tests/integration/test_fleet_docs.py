"""docs/fleet.md: its configuration snippets parse, and the cgo-audit
commands and flags it names exist in the CLI."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import REPO, run_cli

DOC = REPO / "docs" / "fleet.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def block_starting(language: str, first_line: str) -> str:
    found = [b for b in blocks(language) if b.startswith(first_line)]
    assert len(found) == 1, first_line
    return found[0]


def cgo_audit_commands(text: str) -> list[list[str]]:
    """Every `cgo-audit ...` command line in text (continuations joined,
    GitHub expressions replaced by a value), up to a shell operator."""
    text = re.sub(r"\$\{\{[^}]*\}\}", "1", text.replace("\\\n", " "))
    commands = []
    for line in text.splitlines():
        for match in re.finditer(r"(?:^|[\s\"\[])cgo-audit\s+([a-z-]+[^\n|&;]*)", line):
            words = shlex.split(match.group(1).replace('",', " ").replace('"', " "))
            commands.append([w for w in words if not w.startswith("$")])
    return commands


def help_of(command: str) -> str:
    proc = run_cli(command, "--help")
    assert proc.returncode == 0, (command, proc.stderr)
    return proc.stdout


def test_the_ci_workflow_parses_and_names_real_commands():
    workflow = yaml.safe_load(block_starting("yaml", "# .github/workflows/cgo-audit.yml"))
    jobs = workflow["jobs"]
    shards = jobs["shard"]["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, len(shards) + 1))
    assert jobs["merge"]["needs"] == "shard" and jobs["merge"]["if"] == "always()"
    runs = [step["run"] for job in jobs.values() for step in job["steps"] if "run" in step]
    commands = [c for run in runs for c in cgo_audit_commands(run)]
    assert {c[0] for c in commands} == {"bench", "merge"}
    bench = next(c for c in commands if c[0] == "bench")
    assert f"1/{len(shards)}" in bench    # the matrix value over the matrix size
    for command in commands:
        text = help_of(command[0])
        for flag in (w for w in command[1:] if w.startswith("--")):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), (command[0], flag)


def test_every_cgo_audit_command_in_the_page_exists():
    commands = [c for language in ("sh", "yaml", "dockerfile") for b in blocks(language)
                for c in cgo_audit_commands(b)]
    commands += [c for inline in re.findall(r"`(cgo-audit [^`]+)`", DOC.read_text().replace("\n", " "))
                 for c in cgo_audit_commands(inline)]
    assert {"run", "watch", "bench", "merge", "build-shim"} <= {c[0] for c in commands}
    for command in commands:
        text = help_of(command[0])
        for flag in (w for w in command[1:] if w.startswith("--")):
            assert flag in text, (command, flag)


def test_the_kubernetes_and_profiler_snippets_parse():
    deployment = yaml.safe_load(block_starting("yaml", "apiVersion: apps/v1"))
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    shim_dir = pod["spec"]["initContainers"][0]["volumeMounts"][0]["mountPath"]
    assert env["LD_PRELOAD"] == f"{shim_dir}/libcgoaudit.so" and env["CGO_AUDIT_DIR"].startswith(shim_dir)
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    parca = yaml.safe_load(block_starting("yaml", "# parca.yaml"))
    assert parca["scrape_configs"][0]["profiling_config"]["pprof_config"]["cgo_heap"]["path"] == \
        "/debug/cgo-audit/heap"
    alloy = blocks("alloy")[0]
    assert 'path    = "/debug/cgo-audit/heap"' in alloy


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_the_prometheus_snippet_is_a_valid_config_with_the_shipped_rules(tmp_path: Path):
    config = yaml.safe_load(block_starting("yaml", "scrape_configs:\n  - job_name: kubernetes-pods"))
    # Debian's Prometheus is built without Kubernetes discovery: the same
    # relabelling over a static target still checks the rest.
    job = config["scrape_configs"][0]
    assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
    job["static_configs"] = [{"targets": ["127.0.0.1:9464"]}]
    config["rule_files"] = [str(REPO / "deploy" / "prometheus" / "cgo-audit-rules.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    check = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
