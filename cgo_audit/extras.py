"""Optional dependencies (pyproject's extras): a feature whose extra is not
installed is refused before the audit runs, in one line naming the extra."""

from __future__ import annotations

import argparse
import importlib.util

from cgo_audit.errors import AuditError

# option -> (what it makes, extra, the modules the extra brings)
EXTRAS = {
    "html": ("the HTML report", "html", ("matplotlib",)),
}


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    return [name for name in modules if importlib.util.find_spec(name) is None]


def require_extras(args: argparse.Namespace) -> None:
    """Raises AuditError if an option given on the command line needs an extra that is not installed."""
    for option, (feature, extra, modules) in EXTRAS.items():
        missing = missing_modules(modules) if getattr(args, option, None) else []
        if missing:
            raise AuditError(f"{feature} (--{option}) needs the '{extra}' extra ({', '.join(missing)}): "
                             f"pip install 'cgo-audit[{extra}]'")
