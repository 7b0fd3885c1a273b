"""The audits the commands run: benchmarks (bench), go test -exec binaries
(exec), a program under the shim (run), a running process (watch), and the
field guide demo (demo)."""
