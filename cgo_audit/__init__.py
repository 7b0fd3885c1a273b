"""cgo-audit: finds C-heap leaks in Go programs that use cgo, where pprof cannot look."""

__version__ = "0.1.0"
