"""The docs cannot drift from the tool: every `cgo-audit ...` and `make ...`
command in a fenced code block of README.md or docs/*.md (pages added later
included) is checked here. A cgo-audit command must name a real subcommand
and real options, spelled out (no abbreviations), whose values parse; a make
command must name real targets, which `make -n` expands; the cheap commands
run for real."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cgo_audit.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~)")
# A command as a reader types it: an optional prompt, then the program.
CGO_AUDIT = re.compile(r"^(?:\$ )?(?:\.venv/bin/)?(?:cgo-audit|python3? -m cgo_audit)(?=\s|$)")
MAKE = re.compile(r"^(?:\$ )?make(?=\s|$)")
CHEAP = {"build-shim"}          # subcommands fast enough to run for real here


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def fenced_commands(path: Path) -> list[Command]:
    """Every cgo-audit and make command in the page's fenced code blocks,
    with backslash continuations joined and comments dropped."""
    commands: list[Command] = []
    inside = False
    pending, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        if FENCE.match(raw.strip()):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        line = raw.strip()
        if pending:
            line = pending + " " + line
        else:
            start = number
        if line.endswith("\\"):
            pending = line[:-1].strip()
            continue
        pending = ""
        if CGO_AUDIT.match(line) or MAKE.match(line):
            commands.append(Command(str(path.relative_to(REPO)), start, line))
    return commands


ALL = [command for page in PAGES for command in fenced_commands(page)]


def words(command: Command) -> list[str]:
    lexer = shlex.shlex(command.text, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    argv = list(lexer)
    if argv and argv[0] == "$":
        argv = argv[1:]
    return argv


def cgo_audit_args(argv: list[str]) -> list[str]:
    if argv[0] in ("python", "python3"):
        return argv[3:]          # python -m cgo_audit ARGS
    return argv[1:]


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_docs_have_commands_to_check():
    assert any(CGO_AUDIT.match(c.text) for c in ALL) and any(MAKE.match(c.text) for c in ALL)


@pytest.mark.parametrize("command", [c for c in ALL if CGO_AUDIT.match(c.text)], ids=str)
def test_each_cgo_audit_command_parses(command: Command, capsys: pytest.CaptureFixture[str]):
    args = cgo_audit_args(words(command))
    parser = build_parser()
    if any("$" in word for word in args):
        # Values the shell fills in ($VAR, ${{ matrix.x }} in a CI workflow)
        # cannot be parsed here: check the subcommand and every option's name.
        assert args and args[0] in subparsers(parser), f"{command}\n  names no cgo-audit subcommand"
        spelled = {option for action in subparsers(parser)[args[0]]._actions for option in action.option_strings}
        for word in args[1:]:
            if word == "--":
                break
            if word.startswith("--") and "$" not in word:
                assert word.split("=", 1)[0] in spelled, f"{command}\n  {word} is not an option of cgo-audit {args[0]}"
        return
    try:
        parsed = parser.parse_args(args)
    except SystemExit as stop:
        if stop.code == 0 and {"--version", "--help", "-h"} & set(args):
            return           # asked for the version or the help: nothing more to check
        pytest.fail(f"{command}\n  does not parse: {capsys.readouterr().err.strip()} (exit {stop.code})")
    sub = subparsers(parser)[parsed.command]
    spelled = {option for action in sub._actions for option in action.option_strings}
    spelled |= {option for action in parser._actions for option in action.option_strings}
    for word in args:
        if word == "--":
            break            # the target's own arguments follow
        option = word.split("=", 1)[0]
        if option.startswith("-") and option != "-" and not re.fullmatch(r"-?\d+(\.\d+)?", option):
            assert option in spelled, f"{command}\n  {option} is not an option of cgo-audit {parsed.command}"


@pytest.mark.parametrize("command", [c for c in ALL if CGO_AUDIT.match(c.text)
                                     and cgo_audit_args(words(c))[:1] and cgo_audit_args(words(c))[0] in CHEAP],
                         ids=str)
def test_the_cheap_commands_run(command: Command):
    proc = subprocess.run([sys.executable, "-m", "cgo_audit", *cgo_audit_args(words(command))], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{command}\n{proc.stdout}{proc.stderr}"


def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return {name for line in text.splitlines()
            for name in re.findall(r"^([A-Za-z0-9_.%/-]+(?:\s+[A-Za-z0-9_.%/-]+)*)\s*:(?!=)", line)[:1]
            for name in name.split()}


@pytest.mark.parametrize("command", [c for c in ALL if MAKE.match(c.text)], ids=str)
def test_each_make_command_names_real_targets(command: Command):
    argv = words(command)[1:]
    targets = [word for word in argv if "=" not in word and not word.startswith("-")]
    known = make_targets()
    for target in targets:
        assert target in known, f"{command}\n  make has no target {target!r} (targets: {sorted(known)})"
    # make -n expands the recipe without running it: variables and targets resolve.
    proc = subprocess.run(["make", "-n", *argv], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{command}\n{proc.stderr}"
