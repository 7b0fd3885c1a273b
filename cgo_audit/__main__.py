"""Entry point for `python -m cgo_audit`."""

from cgo_audit.cli import main

raise SystemExit(main())
