// Package leakcheck fails a Go test whose code leaves C heap behind, in the
// spirit of goleak.VerifyNone: one line to adopt, and a failure that says how
// much was left.
//
//	func TestGetValue(t *testing.T) {
//		leakcheck.VerifyNone(t, func() {
//			if _, err := cstring.GetValueFixed("testdata/app.conf", "timeout"); err != nil {
//				t.Error(err)
//			}
//		})
//	}
//
// It counts with the cgo-audit shim, so run the tests under it:
//
//	LD_PRELOAD=$(cgo-audit build-shim) go test ./...
//
// Without the shim, f still runs (its own checks still count) and the test is
// skipped with the reason, so a CI job without the shim stays green and says
// why. The C heap is the whole process's: do not use VerifyNone in tests that
// call t.Parallel, as goleak cannot either.
package leakcheck

import (
	"fmt"
	"testing"
)

// VerifyNone runs f and fails t (t.Errorf) if f left C heap behind: bytes or
// allocations still live once the Go side has settled (GC until finalizers
// have run, so C memory freed by finalizers is not a leak).
func VerifyNone(t testing.TB, f func()) {
	t.Helper()
	if err := findShim(); err != nil {
		f()
		if err == errNoShim {
			t.Skip(err.Error())
		}
		t.Fatal(err.Error())
	}
	before := settledCHeap()
	f()
	after := settledCHeap()
	leftBytes, leftAllocs := after.liveBytes-before.liveBytes, after.liveAllocs-before.liveAllocs
	if leftBytes > 0 || leftAllocs > 0 {
		t.Errorf("leakcheck: f left %s of C heap in %d allocation(s)", formatBytes(leftBytes), leftAllocs)
	}
}

// formatBytes reads sizes the way cgo-audit does everywhere (cgo_audit/units.py,
// format_exact): exact bytes, and binary units (KiB = 1024 B) past 1 KiB.
func formatBytes(n int64) string {
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	value, unit := float64(n), ""
	for _, unit = range []string{"KiB", "MiB", "GiB", "TiB"} {
		value /= 1024
		if value < 1024 && value > -1024 {
			break
		}
	}
	return fmt.Sprintf("%d B (%.1f %s)", n, value, unit)
}
