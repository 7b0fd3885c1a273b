"""What `cgo-audit init` (cgo_audit/commands/init.py) writes in a user's Go
module: a driver main for the module's Cgo functions (package auditdriver's
protocol), the pytest configuration with one Hypothesis property test under
`limit_c_leaks`, an empty baseline and a CI workflow; and the goaudit
requirement it adds to go.mod. It never overwrites a file: what exists is
reported and left as is.

The exported functions are read from the syntax (a small go/parser program,
cgo_audit/toolchain/go/exports.go.tmpl), never by pattern matching over source."""

from __future__ import annotations

import json
import keyword
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

from cgo_audit.errors import AuditError
from cgo_audit.toolchain.gotool import GoPackage, go_executable, list_packages

GOAUDIT_MODULE = "github.com/cgo-audit/cgo-audit/goaudit"
DRIVER_PACKAGE = "cmd/cgo-audit-driver"
TESTS_DIR = "cgo_audit_tests"
BASELINE_FILE = "cgo-audit-baseline.json"
WORKFLOW_FILE = ".github/workflows/cgo-audit.yml"
# Where pytest looks for its configuration, and the section that makes a file one.
PYTEST_CONFIGS = (("pytest.ini", ""), ("pyproject.toml", "[tool.pytest.ini_options]"),
                  ("tox.ini", "[pytest]"), ("setup.cfg", "[tool:pytest]"))

# Go's integer types and the range a generated argument may take.
_INTS = {"int": 64, "int64": 64, "int32": 32, "rune": 32, "int16": 16, "int8": 8}
_UINTS = {"uint": 64, "uint64": 64, "uint32": 32, "uint16": 16, "uint8": 8, "byte": 8}
_FLOATS = ("float64", "float32")
# Names the generated main uses itself: a package alias must not take them.
_RESERVED = {"main", "json", "auditdriver", "decode", "context"}


@dataclass(frozen=True)
class Param:
    name: str        # the JSON key it travels under
    go_type: str     # as written in the declaration ("...string" for a variadic one)

    @property
    def context(self) -> bool:
        return self.go_type == "context.Context"


@dataclass(frozen=True)
class Exported:
    """An exported function of one package, and whether its arguments can
    travel as JSON (then the driver can call it with generated ones)."""

    package: GoPackage
    alias: str
    name: str
    params: tuple[Param, ...]
    results: tuple[str, ...]
    generic: bool
    doc: str

    @property
    def register_name(self) -> str:
        return f"{self.alias}.{self.name}"

    @property
    def adapter_name(self) -> str:
        return f"{self.alias}{self.name}"

    @property
    def signature(self) -> str:
        params = ", ".join(f"{p.name} {p.go_type}" for p in self.params)
        results = ", ".join(self.results)
        if len(self.results) > 1:
            results = f"({results})"
        return f"{self.name}({params}) {results}".rstrip()

    def why_not_callable(self) -> str | None:
        """None if the driver can call it with JSON arguments, else why not."""
        if self.generic:
            return "it is generic: instantiate it in an adapter of your own"
        for param in self.params:
            if not param.context and strategy(param.go_type.removeprefix("...")) is None:
                return f"its parameter {param.name} {param.go_type} is not a JSON value: write its adapter yourself"
        return None


def strategy(go_type: str) -> str | None:
    """The Hypothesis strategy (as Python source) for a Go type carried in
    JSON, or None when JSON cannot carry it (a struct, a pointer to a C
    object, a func, a channel, an interface)."""
    if go_type == "string":
        return "TEXT"
    if go_type == "bool":
        return "st.booleans()"
    if go_type in _INTS:
        bits = _INTS[go_type] - 1
        return f"st.integers(-(2 ** {bits}), 2 ** {bits} - 1)"
    if go_type in _UINTS:
        return f"st.integers(0, 2 ** {_UINTS[go_type]} - 1)"
    if go_type in _FLOATS:
        # JSON has no NaN or infinity.
        width = ", width=32" if go_type == "float32" else ""
        return f"st.floats(allow_nan=False, allow_infinity=False{width})"
    if go_type in ("[]byte", "[]uint8"):
        return "BYTES"
    if go_type.startswith("[]"):
        element = strategy(go_type[2:])
        return f"st.lists({element}, max_size=8)" if element else None
    if go_type.startswith("map[string]"):
        value = strategy(go_type[len("map[string]"):])
        return f"st.dictionaries(TEXT, {value}, max_size=8)" if value else None
    if go_type.startswith("*"):
        return strategy(go_type[1:])
    return None


def _json_result(go_type: str) -> bool:
    """A result the driver can hand back as JSON as it is."""
    return go_type != "error" and strategy(go_type) is not None and not go_type.startswith("*")


# ---- the module and its functions ---------------------------------------------------------------

@dataclass(frozen=True)
class GoModule:
    path: str
    dir: Path
    go_version: str
    requires: dict[str, str]
    replaces: dict[str, str]


def read_module(directory: Path) -> GoModule:
    """The module directory belongs to, from its go.mod (no network)."""
    if not directory.is_dir():
        raise AuditError(f"no such directory: {directory}")
    proc = subprocess.run([go_executable(), "env", "GOMOD"], cwd=directory, capture_output=True, text=True)
    gomod = proc.stdout.strip()
    if proc.returncode != 0 or not gomod or gomod == "/dev/null":
        raise AuditError(f"{directory} is not inside a Go module (no go.mod here or above it): "
                         "run cgo-audit init in your module")
    edit = subprocess.run([go_executable(), "mod", "edit", "-json", gomod], capture_output=True, text=True)
    if edit.returncode != 0:
        raise AuditError(f"cannot read {gomod}: {edit.stderr.strip().splitlines()[0] if edit.stderr.strip() else ''}")
    data = json.loads(edit.stdout)
    return GoModule(path=data["Module"]["Path"], dir=Path(gomod).parent, go_version=data.get("Go") or "",
                    requires={r["Path"]: r["Version"] for r in data.get("Require") or ()},
                    replaces={r["Old"]["Path"]: r["New"]["Path"] for r in data.get("Replace") or ()})


def _importable_from_root(import_path: str, module_path: str) -> bool:
    """An internal package is importable only from under its parent."""
    parts = import_path.split("/")
    if "internal" not in parts:
        return True
    parent = "/".join(parts[:parts.index("internal")])
    return parent == module_path or module_path.startswith(parent + "/")


def candidate_packages(module: GoModule) -> list[GoPackage]:
    """The module's importable non-main packages that build; the ones with
    cgo files of their own first."""
    packages = [p for p in list_packages(["./..."], module.dir)
                if p.module_path == module.path and p.name not in ("main", "")
                and not p.error and _importable_from_root(p.import_path, module.path)]
    with_cgo = [p for p in packages if p.uses_cgo]
    return with_cgo or packages


def _aliases(packages: Sequence[GoPackage]) -> dict[str, str]:
    """A Go identifier per package, unique, from its name."""
    aliases: dict[str, str] = {}
    taken = set(_RESERVED)
    for package in packages:
        base = re.sub(r"\W", "_", package.name)
        if base in _RESERVED or keyword.iskeyword(base):
            base += "pkg"
        alias, n = base, 2
        while alias in taken:
            alias, n = f"{base}{n}", n + 1
        taken.add(alias)
        aliases[package.import_path] = alias
    return aliases


def exported_functions(packages: Sequence[GoPackage]) -> list[Exported]:
    """Each package's exported top-level functions, in source order."""
    aliases = _aliases(packages)
    found: list[Exported] = []
    with tempfile.TemporaryDirectory(prefix="cgo-audit-init-") as work:
        lister = _build_lister(Path(work))
        for package in packages:
            files = [str(package.dir / name) for name in (*package.go_files, *package.cgo_files)]
            if not files:
                continue
            proc = subprocess.run([str(lister), *files], capture_output=True, text=True)
            if proc.returncode != 0:
                raise AuditError(f"cannot read the functions of {package.import_path}: {proc.stderr.strip()}")
            for item in sorted(json.loads(proc.stdout), key=lambda f: (f["file"], f["line"])):
                params = tuple(Param(p["name"] if p["name"] not in ("", "_") else f"arg{i}", p["type"])
                               for i, p in enumerate(item["params"]))
                found.append(Exported(package, aliases[package.import_path], item["name"], params,
                                      tuple(item["results"]), item["generic"], item["doc"]))
    return found


def _build_lister(work: Path) -> Path:
    source = work / "exports.go"
    source.write_text(resources.files("cgo_audit.toolchain.go").joinpath("exports.go.tmpl").read_text())
    binary = work / "exports"
    # Outside any module (a temporary directory), with only the standard library.
    proc = subprocess.run([go_executable(), "build", "-o", str(binary), str(source)], cwd=work,
                          capture_output=True, text=True, env=_plain_go_env())
    if proc.returncode != 0:
        raise AuditError(f"cannot build cgo-audit's function lister: {proc.stderr.strip()}")
    return binary


def _plain_go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GOFLAGS", None)
    env["GO111MODULE"] = "on"
    return env


def select_functions(functions: Sequence[Exported], wanted: Sequence[str]) -> list[Exported]:
    """The functions named by --func: Func, pkg.Func or import/path.Func."""
    chosen = []
    for spec in wanted:
        qualifier, _, name = spec.rpartition(".")
        matches = [f for f in functions if f.name == name and (
            not qualifier or qualifier in (f.alias, f.package.name, f.package.import_path)
            or f.package.import_path.endswith("/" + qualifier))]
        if not matches:
            known = ", ".join(f.register_name for f in functions) or "none"
            raise AuditError(f"--func {spec}: no such exported function (this module has: {known})")
        if len(matches) > 1:
            raise AuditError(f"--func {spec} is ambiguous: " + ", ".join(f.package.import_path + "." + f.name
                                                                           for f in matches))
        reason = matches[0].why_not_callable()
        if reason:
            raise AuditError(f"--func {spec}: cgo-audit init cannot call it with generated arguments: {reason}")
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


# ---- what it writes ----------------------------------------------------------------------------

def _go_field(index: int) -> str:
    return f"Arg{index}"


def adapter_source(fn: Exported) -> str:
    """A Go function that decodes fn's arguments from JSON and calls it."""
    lines = [f"// {fn.adapter_name} calls {fn.alias}.{fn.signature}."]
    lines.append(f"func {fn.adapter_name}(raw json.RawMessage) (interface{{}}, error) {{")
    json_params = [(i, p) for i, p in enumerate(fn.params) if not p.context]
    if json_params:
        lines.append("\tvar a struct {")
        for i, p in json_params:
            go_type = "[]" + p.go_type[3:] if p.go_type.startswith("...") else p.go_type
            lines.append(f"\t\t{_go_field(i)} {go_type} `json:\"{p.name}\"`")
        lines.append("\t}")
        lines.append("\tif err := decode(raw, &a); err != nil {")
        lines.append("\t\treturn nil, err")
        lines.append("\t}")
    args = []
    for i, p in enumerate(fn.params):
        if p.context:
            args.append("context.Background()")
        else:
            args.append(f"a.{_go_field(i)}" + ("..." if p.go_type.startswith("...") else ""))
    call = f"{fn.alias}.{fn.name}({', '.join(args)})"
    results = list(fn.results)
    if not results:
        lines += [f"\t{call}", "\treturn nil, nil"]
    elif results == ["error"]:
        lines.append(f"\treturn nil, {call}")
    else:
        names, kept = [], []
        for i, go_type in enumerate(results):
            if go_type == "error" and i == len(results) - 1:
                names.append("err")
            elif _json_result(go_type):
                names.append(f"r{i}")
                kept.append(f"r{i}")
            else:
                names.append("_")
        error = "err" if names[-1] == "err" else "nil"
        value = kept[0] if len(kept) == 1 else (f"[]interface{{}}{{{', '.join(kept)}}}" if kept else "nil")
        if all(n == "_" for n in names):
            lines += [f"\t{call}", "\treturn nil, nil"]
        else:
            lines += [f"\t{', '.join(names)} := {call}", f"\treturn {value}, {error}"]
    lines.append("}")
    return "\n".join(lines)


def driver_source(module: GoModule, functions: Sequence[Exported], registered: Sequence[Exported]) -> str:
    callable_ = [f for f in functions if f.why_not_callable() is None]
    not_callable = [f for f in functions if f.why_not_callable() is not None]
    shown = list(registered) if registered else callable_
    imports = ['\t"github.com/cgo-audit/cgo-audit/goaudit/auditdriver"']
    std = []
    if shown:
        std.append('\t"encoding/json"')
    if any(p.context for f in shown for p in f.params):
        std.insert(0, '\t"context"')
    packages = []
    for fn in shown:
        line = f'\t{fn.alias} "{fn.package.import_path}"'
        if line not in packages:
            packages.append(line)
    blocks = [block for block in (std, imports, packages) if block]
    out = [
        "// Command cgo-audit-driver exposes this module's Cgo functions to cgo-audit's",
        "// pytest plugin (the cgo_audit fixture), over package auditdriver's protocol:",
        "// the plugin calls a registered function a known number of times under the",
        "// shim and reads the C heap it left behind. Written by `cgo-audit init`; it is",
        "// yours to edit: adapt the arguments, or register functions of your own.",
        "package main",
        "",
        "import (",
        "\n\n".join("\n".join(block) for block in blocks),
        ")",
        "",
        "func main() {",
    ]
    if registered:
        for fn in registered:
            out.append(f'\tauditdriver.Register("{fn.register_name}", {fn.adapter_name})')
    else:
        out.append("\t// TODO(cgo-audit): register the functions to test: uncomment their lines.")
        out.append("\t// (cgo-audit init --func NAME writes them registered, when it writes this file.)")
        for fn in callable_:
            out.append(f'\t// auditdriver.Register("{fn.register_name}", {fn.adapter_name})')
        if not callable_:
            out.append("\t// None of this module's exported functions takes only JSON arguments:")
            out.append("\t// write an adapter, then auditdriver.Register(\"name\", adapter).")
    for fn in not_callable if not registered else ():
        out.append(f"\t// {fn.register_name}: {fn.why_not_callable()}.")
    out += ["\tauditdriver.Main()", "}"]
    for fn in shown:
        out += ["", adapter_source(fn)]
    if shown:
        out += ["",
                "// decode reads a call's arguments (a JSON object keyed by parameter name).",
                "func decode(raw json.RawMessage, into interface{}) error {",
                '\tif len(raw) == 0 || string(raw) == "null" {',
                "\t\treturn nil",
                "\t}",
                "\treturn json.Unmarshal(raw, into)",
                "}"]
    return "\n".join(out) + "\n"


def _param_strategy(param: Param) -> str:
    if param.go_type.startswith("..."):  # a variadic parameter travels as a list
        return f"st.lists({strategy(param.go_type[3:])}, max_size=8)"
    return str(strategy(param.go_type))


def tests_source(functions: Sequence[Exported]) -> str:
    entries = []
    for fn in functions:
        fields = ", ".join(f"{json.dumps(p.name)}: {_param_strategy(p)}" for p in fn.params if not p.context)
        entries.append(f"    # {fn.package.import_path}.{fn.signature}\n"
                       f"    {json.dumps(fn.register_name)}: st.fixed_dictionaries({{{fields}}}),")
    body = "\n".join(entries)
    return f'''"""Leak tests for this module's Cgo functions, written by `cgo-audit init`.

Each function registered in {DRIVER_PACKAGE}/main.go is called with arguments
Hypothesis generates; a call that leaves C heap behind fails on the spot
(@pytest.mark.limit_c_leaks), and Hypothesis shrinks it to the smallest input
that leaks. Run `pytest` here (it needs cgo-audit, pytest and hypothesis)."""

import base64

import pytest
from hypothesis import given, settings, strategies as st

DRIVER = "{DRIVER_PACKAGE}/main.go"
# Arguments travel as JSON: any text but lone surrogates; []byte as base64.
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
BYTES = st.binary().map(lambda raw: base64.b64encode(raw).decode())

# The arguments of each function the driver can call, by parameter name.
ARGS = {{
{body}
}}


def test_the_driver_registers_a_function(cgo_audit):
    assert cgo_audit.functions, f"no function is registered yet: uncomment one in {{DRIVER}} (its TODO)"


@pytest.mark.parametrize("func", sorted(ARGS))
@pytest.mark.limit_c_leaks("0 B")
@settings(deadline=None)  # each call settles the Go heap before and after: tens of ms
@given(data=st.data())
def test_call_leaves_no_c_heap(cgo_audit, func, data):
    if func not in cgo_audit.functions:
        pytest.skip(f"{{func}} is not registered in {{DRIVER}}")
    cgo_audit.call(func, data.draw(ARGS[func], label="args"))
'''


def pytest_ini_source() -> str:
    return f"""# Written by cgo-audit init. The cgo_audit fixture builds the Go main package
# cgo_audit_driver in the module cgo_audit_go_dir (paths relative to this file).
[pytest]
testpaths = {TESTS_DIR}
cgo_audit_go_dir = .
cgo_audit_driver = ./{DRIVER_PACKAGE}
"""


def baseline_source() -> str:
    # Nothing accepted yet: every leak found is new until a team accepts it.
    return json.dumps({"version": 1, "accepted": []}, indent=2) + "\n"


def workflow_source(module_rel: str, goaudit_version: str) -> str:
    workdir = ""
    if module_rel not in ("", "."):
        workdir = f"    defaults:\n      run:\n        working-directory: {module_rel}\n"
    artifacts = f"{module_rel}/cgo-audit.*" if module_rel not in ("", ".") else "cgo-audit.*"
    return f"""# Written by cgo-audit init: audits this module's benchmarks for C-heap leaks
# (failing on a leak the baseline does not accept) and runs the property tests.
name: cgo-audit
on: [push, pull_request]
jobs:
  cgo-audit:
    runs-on: ubuntu-latest
{workdir}    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-go@v5
        with: {{go-version: stable}}
      - uses: actions/setup-python@v5
        with: {{python-version: "3.12"}}
      # llvm-symbolizer names leak sites with inlined frames.
      - run: sudo apt-get install -y llvm
      # The cgo-audit init was run with (until it is on PyPI: pip install a wheel or a checkout).
      - run: pip install "cgo-audit[test]=={goaudit_version.removeprefix('v')}" pytest hypothesis
      - run: cgo-audit bench --baseline {BASELINE_FILE} --json cgo-audit.json --junit cgo-audit.xml ./...
      - run: python -m pytest
      - uses: actions/upload-artifact@v4
        if: always()
        with: {{name: cgo-audit, path: "{artifacts}"}}
"""


# ---- writing, never overwriting -------------------------------------------------------------------------------

def _goaudit_dir(path: Path) -> Path:
    for candidate in (path, path / "goaudit"):
        gomod = candidate / "go.mod"
        if gomod.is_file() and re.search(rf"^module\s+{re.escape(GOAUDIT_MODULE)}\s*$", gomod.read_text(), re.M):
            return candidate.resolve()
    raise AuditError(f"--goaudit-replace {path}: neither it nor its goaudit/ holds the module {GOAUDIT_MODULE}")


def _git_root(directory: Path) -> Path | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=directory, capture_output=True,
                              text=True)
    except FileNotFoundError:
        return None
    return Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None


class Writer:
    """Writes files that do not exist yet; says what it did with each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lines: list[str] = []

    def write(self, path: Path, text: str, what: str) -> bool:
        shown = path.relative_to(self.root) if path.is_relative_to(self.root) else path
        if path.exists():
            self.lines.append(f"exists, left as is: {shown} ({what})")
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.lines.append(f"wrote {shown}: {what}")
        return True


def _pytest_config(module_dir: Path) -> Path | None:
    for name, section in PYTEST_CONFIGS:
        path = module_dir / name
        if path.is_file() and (not section or section in path.read_text()):
            return path
    return None


def _require_goaudit(module: GoModule, version: str, replace: Path | None, lines: list[str]) -> None:
    gomod = module.dir / "go.mod"
    if GOAUDIT_MODULE in module.requires:
        lines.append(f"exists, left as is: go.mod requires {GOAUDIT_MODULE} {module.requires[GOAUDIT_MODULE]}")
    else:
        _go_mod_edit(gomod, f"-require={GOAUDIT_MODULE}@{version}")
        lines.append(f"go.mod: require {GOAUDIT_MODULE} {version}")
    if (module.dir / "vendor" / "modules.txt").is_file():
        lines.append("note: this module vendors its dependencies: run go mod vendor before building the driver")
    if replace is None:
        if GOAUDIT_MODULE not in module.replaces:
            lines.append(f"note: {GOAUDIT_MODULE} {version} must be fetchable: if it is not published "
                         "(yet), rerun with --goaudit-replace /path/to/cgo-audit (a checkout)")
        return
    if GOAUDIT_MODULE in module.replaces:
        lines.append(f"exists, left as is: go.mod replaces {GOAUDIT_MODULE} => {module.replaces[GOAUDIT_MODULE]}")
        return
    _go_mod_edit(gomod, f"-replace={GOAUDIT_MODULE}={replace}")
    lines.append(f"go.mod: replace {GOAUDIT_MODULE} => {replace}")


def _go_mod_edit(gomod: Path, flag: str) -> None:
    proc = subprocess.run([go_executable(), "mod", "edit", flag, str(gomod)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AuditError(f"go mod edit {flag} failed: {proc.stderr.strip()}")


def scaffold(directory: Path, funcs: Sequence[str], goaudit_version: str, goaudit_replace: Path | None
             ) -> list[str]:
    """Sets the module in directory up; what it wrote, and what it left as it was, one line each."""
    replace = _goaudit_dir(goaudit_replace) if goaudit_replace else None
    module = read_module(directory.resolve())
    functions = exported_functions(candidate_packages(module))
    registered = select_functions(functions, funcs) if funcs else []
    tested = registered or [f for f in functions if f.why_not_callable() is None]

    writer = Writer(module.dir)
    driver = module.dir / DRIVER_PACKAGE / "main.go"
    if registered:
        what = "the driver, registering " + ", ".join(f.register_name for f in registered)
    else:
        what = (f"the driver; TODO: uncomment the functions to test ({len(tested)} listed)"
                if tested else "the driver; TODO: no exported function takes JSON arguments, write an adapter")
    writer.write(driver, driver_source(module, functions, registered), what)
    writer.write(module.dir / TESTS_DIR / "test_c_leaks.py", tests_source(tested),
                 "a Hypothesis property test per function, under @pytest.mark.limit_c_leaks(\"0 B\")")
    existing = _pytest_config(module.dir)
    if existing is not None and "cgo_audit_driver" in existing.read_text():
        writer.lines.append(f"exists, left as is: {existing.name} (it sets cgo_audit_driver)")
    elif existing is not None:
        writer.lines.append(f"exists, left as is: {existing.name}; add to its pytest section: "
                            f"cgo_audit_go_dir = . and cgo_audit_driver = ./{DRIVER_PACKAGE}")
    else:
        writer.write(module.dir / "pytest.ini", pytest_ini_source(), "the pytest configuration for the driver")
    writer.write(module.dir / BASELINE_FILE, baseline_source(),
                 "the baseline (accepts nothing; see cgo-audit baseline)")
    git_root = _git_root(module.dir) or module.dir
    rel = module.dir.relative_to(git_root).as_posix() if module.dir.is_relative_to(git_root) else "."
    workflow = git_root / WORKFLOW_FILE
    if workflow.exists():
        writer.lines.append(f"exists, left as is: {workflow} (the CI workflow)")
    else:
        writer.write(workflow, workflow_source(rel, goaudit_version), "the CI workflow (GitHub Actions)")
    _require_goaudit(module, goaudit_version, replace, writer.lines)
    return writer.lines
