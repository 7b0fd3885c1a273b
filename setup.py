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


def demo_files():
    """The demo's Go service and every package of this repository it
    imports (without tests), as (source, path under _demo): go_fixtures'
    packages at their place, the Go helper module beside them under goaudit/
    (its own module: prom, with client_golang, is not needed)."""
    fixtures, helpers = ROOT / "go_fixtures", ROOT / "goaudit"
    picked = [fixtures / "cmd" / "leakyserver" / "main.go", fixtures / "cstring" / "testdata" / "app.conf"]
    for package in (fixtures / "cstring", fixtures / "sessioncache"):
        picked += package.glob("*.[chg]*")
    picked += [helpers / "go.mod", helpers / "version.go", helpers / "leakcheck" / "cgo_audit_region.h"]
    for package in (helpers / "cheap", helpers / "internal" / "shimregion"):
        picked += package.glob("*.[chg]*")
    for source in picked:
        if source.suffix in (".go", ".c", ".h", ".conf", ".mod") and not source.name.endswith("_test.go"):
            base = fixtures if fixtures in source.parents else ROOT
            yield source, source.relative_to(base)


# Its own go.mod: go_fixtures' one replaces the Go helpers with ../goaudit;
# the demo carries them inside.
DEMO_GO_MOD = ("module github.com/cgo-audit/cgo-audit/go_fixtures\n\ngo 1.22\n\n"
               "require github.com/cgo-audit/cgo-audit/goaudit v0.0.0\n\n"
               "replace github.com/cgo-audit/cgo-audit/goaudit => ./goaudit\n")


class BuildWithShimSources(build_py):
    def run(self):
        super().run()
        package = Path(self.build_lib) / "cgo_audit"
        target = package / "_csrc"
        target.mkdir(parents=True, exist_ok=True)
        for source in ROOT.joinpath("csrc").glob("*.[ch]"):
            shutil.copy2(source, target / source.name)
        demo = package / "_demo"
        for source, name in demo_files():
            (demo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, demo / name)
        (demo / "go.mod").write_text(DEMO_GO_MOD)


setup(cmdclass={"build_py": BuildWithShimSources})
