"""Copies the shim's C sources into the package when a wheel is built, so an
installed cgo-audit can build its shim without the checkout."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithShimSources(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "cgo_audit" / "_csrc"
        target.mkdir(parents=True, exist_ok=True)
        for source in Path(__file__).parent.joinpath("csrc").glob("*.[ch]"):
            shutil.copy2(source, target / source.name)


setup(cmdclass={"build_py": BuildWithShimSources})
