"""Copies into the package, when a wheel is built, the files an installed
cgo-audit needs beside its Python code: the shim's C sources (_csrc/, to
build the shim without the checkout) and the demo's Go service with the
fixture it calls (_demo/, for `cgo-audit demo`). MANIFEST.in puts the same
files in the sdist, so a wheel built from the sdist has them too."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
# The demo: go_fixtures' leaky service and the cstring package it calls, without tests.
DEMO_FILES = ("cmd/leakyserver/main.go", "cstring/getvalue.go", "cstring/getvalue.c", "cstring/getvalue.h",
              "cstring/testdata/app.conf")
# Its own go.mod: go_fixtures' one also requires the Go helpers, through a local replace.
DEMO_GO_MOD = "module github.com/cgo-audit/cgo-audit/go_fixtures\n\ngo 1.22\n"


class BuildWithShimSources(build_py):
    def run(self):
        super().run()
        package = Path(self.build_lib) / "cgo_audit"
        target = package / "_csrc"
        target.mkdir(parents=True, exist_ok=True)
        for source in ROOT.joinpath("csrc").glob("*.[ch]"):
            shutil.copy2(source, target / source.name)
        demo = package / "_demo"
        for name in DEMO_FILES:
            (demo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / "go_fixtures" / name, demo / name)
        (demo / "go.mod").write_text(DEMO_GO_MOD)


setup(cmdclass={"build_py": BuildWithShimSources})
