"""Entry point for `python -m cgo_audit`."""

from cgo_audit.cli import run_cli

run_cli()
