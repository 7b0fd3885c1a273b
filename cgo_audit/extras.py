"""Optional dependencies (pyproject's extras): a feature whose extra is not
installed is refused before the audit runs, in one line naming the extra."""

from __future__ import annotations

import argparse
import importlib.util

from cgo_audit.errors import AuditError

# option -> (extra, the modules it brings)
EXTRAS = {
    "html": ("html", ("matplotlib",)),
}


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    return [name for name in modules if importlib.util.find_spec(name) is None]


def require_extras(args: argparse.Namespace) -> None:
    """Raises AuditError if an option given on the command line needs an extra that is not installed."""
    for option, (extra, modules) in EXTRAS.items():
        if getattr(args, option, None) and missing_modules(modules):
            raise AuditError(f"--{option} needs the '{extra}' extra ({', '.join(missing_modules(modules))}): "
                             f"pip install 'cgo-audit[{extra}]'")
