"""The Go toolchain side: running go (gotool), the runtime struct layout table
(layout), the probe and settle files added to a package (probe), module-
cache copies (modcache), GODEBUG=gctrace output (gctrace), and the
net/http/pprof endpoint (endpoint). go/ holds the Go templates and the
layout table."""
