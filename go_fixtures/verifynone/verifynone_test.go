package verifynone_test

import (
	"os"
	"testing"

	"github.com/cgo-audit/cgo-audit/go_fixtures/cstring"
	"github.com/cgo-audit/cgo-audit/go_fixtures/verifynone"
	"github.com/cgo-audit/cgo-audit/goaudit/leakcheck"
)

const (
	confFile = "testdata/app.conf"
	confKey  = "timeout" // 17+1 + 7+1 = 26 bytes left by each leaky call
)

func TestGetValueFixedLeavesNoCHeap(t *testing.T) {
	leakcheck.VerifyNone(t, func() {
		if got, err := cstring.GetValueFixed(confFile, confKey); err != nil || got != "30s" {
			t.Errorf("GetValueFixed: got %q, %v; want 30s", got, err)
		}
	})
}

// TestGetValueLeakyLeavesCHeap shows what a failure reads like, on the field
// guide's leak. It fails by design, so it runs only when asked: a plain
// `go test ./...` stays green, and its skip says how to see it.
func TestGetValueLeakyLeavesCHeap(t *testing.T) {
	if os.Getenv("LEAKCHECK_EXPECT_FAILURE") != "1" {
		t.Skip("fails by design (the field guide's C.CString leak); run with LEAKCHECK_EXPECT_FAILURE=1 to see it")
	}
	leakcheck.VerifyNone(t, func() {
		if got, err := cstring.GetValueLeaky(confFile, confKey); err != nil || got != "30s" {
			t.Errorf("GetValueLeaky: got %q, %v; want 30s", got, err)
		}
	})
}

// A tolerance covers a leak no larger than itself.
func TestToleranceCoversASmallLeak(t *testing.T) {
	leakcheck.VerifyNone(t, func() {
		if _, err := cstring.GetValueLeaky(confFile, confKey); err != nil {
			t.Error(err)
		}
	}, leakcheck.Tolerance(26))
}

func TestToleranceBelowTheLeakFails(t *testing.T) {
	expectFailure(t)
	leakcheck.VerifyNone(t, func() {
		if _, err := cstring.GetValueLeaky(confFile, confKey); err != nil {
			t.Error(err)
		}
	}, leakcheck.Tolerance(25))
}

// chainLength is longer than one settling lets the runtime finalize (ten
// collections), and shorter than what Retries(10) allows.
const chainLength = 25

// Retries wait for C memory freed late: after a chain of finalizers.
func TestRetriesWaitForMemoryFreedLate(t *testing.T) {
	leakcheck.VerifyNone(t, func() {
		verifynone.FreedByFinalizerChain(4096, chainLength)
	}, leakcheck.Retries(10))
}

func TestWithoutRetriesMemoryFreedLateFails(t *testing.T) {
	expectFailure(t)
	leakcheck.VerifyNone(t, func() {
		verifynone.FreedByFinalizerChain(4096, chainLength)
	})
}

func expectFailure(t *testing.T) {
	if os.Getenv("LEAKCHECK_EXPECT_FAILURE") != "1" {
		t.Skip("fails by design; run with LEAKCHECK_EXPECT_FAILURE=1 to see it")
	}
}
