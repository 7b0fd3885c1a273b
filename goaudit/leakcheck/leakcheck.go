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
	"time"
)

// VerifyNone runs f and fails t (t.Errorf) if f left C heap behind: bytes or
// allocations still live once the Go side has settled (GC until finalizers
// have run, so C memory freed by finalizers is not a leak). Options relax
// the check the way goleak's do:
//
//	leakcheck.VerifyNone(t, f, leakcheck.Tolerance(64), leakcheck.Retries(5))
func VerifyNone(t testing.TB, f func(), options ...Option) {
	t.Helper()
	opts := settings{}
	for _, o := range options {
		o(&opts)
	}
	if err := findShim(); err != nil {
		f()
		if err == errNoShim {
			t.Skip(err.Error())
		}
		t.Fatal(err.Error())
	}
	before := settledCHeap()
	f()
	leftBytes, leftAllocs := int64(0), int64(0)
	for attempt := 0; ; attempt++ {
		after := settledCHeap()
		leftBytes, leftAllocs = after.liveBytes-before.liveBytes, after.liveAllocs-before.liveAllocs
		if !opts.exceeded(leftBytes, leftAllocs) || attempt >= opts.retries {
			break
		}
		time.Sleep(retryPause(attempt))
	}
	if opts.exceeded(leftBytes, leftAllocs) {
		within := ""
		if opts.toleranceBytes > 0 {
			within = fmt.Sprintf(" (tolerance %s)", formatBytes(opts.toleranceBytes))
		}
		t.Errorf("leakcheck: f left %s of C heap in %d allocation(s)%s", formatBytes(leftBytes), leftAllocs, within)
	}
}

// Option changes how VerifyNone judges what f left.
type Option func(*settings)

type settings struct {
	toleranceBytes int64
	retries        int
}

// exceeded: more bytes left than tolerated, or (with no tolerance) any
// allocation left, even of zero bytes.
func (s settings) exceeded(bytes, allocs int64) bool {
	if s.toleranceBytes > 0 {
		return bytes > s.toleranceBytes
	}
	return bytes > 0 || allocs > 0
}

// Tolerance lets f leave up to n bytes of C heap (a cache a library fills
// once, say) before the test fails.
func Tolerance(n int64) Option {
	return func(s *settings) { s.toleranceBytes = n }
}

// Retries reads the C heap again up to n more times, settling the Go side
// each time after a growing pause (1 ms doubling to 100 ms), before it
// fails: for C memory that is freed a little later, by a finalizer that
// only runs after another has, or by a goroutine or thread of the library.
func Retries(n int) Option {
	return func(s *settings) { s.retries = n }
}

func retryPause(attempt int) time.Duration {
	pause := time.Millisecond << uint(attempt)
	if attempt >= 7 || pause > 100*time.Millisecond {
		pause = 100 * time.Millisecond
	}
	return pause
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
