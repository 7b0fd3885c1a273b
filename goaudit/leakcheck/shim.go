package leakcheck

// Reads the cgo-audit shim's counters from inside the process. The shim's
// exported functions are looked up at run time (dlsym), not linked, so this
// package builds and its tests run without the shim.
//
// cgo_audit_region.h is a copy of csrc/cgo_audit_region.h, the layout the
// shim writes (tests/test_leakcheck.py keeps the two identical): a module
// that imports leakcheck gets go_fixtures without the rest of the repository.

/*
#cgo linux LDFLAGS: -ldl
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdint.h>
#include "cgo_audit_region.h"

typedef void (*leakcheck_read_totals_fn)(struct cgo_audit_counters *);
typedef const struct cgo_audit_region *(*leakcheck_region_fn)(void);

// Literal names: a C.CString here would itself be a C allocation.
static void *leakcheck_find_read_totals(void) { return dlsym(RTLD_DEFAULT, "cgo_audit_read_totals"); }
static void *leakcheck_find_region(void) { return dlsym(RTLD_DEFAULT, "cgo_audit_region"); }

static void leakcheck_read_totals(void *fn, struct cgo_audit_counters *out)
{
	((leakcheck_read_totals_fn)fn)(out);
}

static uint32_t leakcheck_layout_version(void *fn)
{
	return ((leakcheck_region_fn)fn)()->header.layout_version;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"
)

// errNoShim: the process was started without LD_PRELOAD of the shim.
var errNoShim = errors.New(
	"leakcheck: not running under the cgo-audit shim; run with LD_PRELOAD=$(cgo-audit build-shim)")

var (
	findOnce   sync.Once
	readTotals unsafe.Pointer // the shim's cgo_audit_read_totals
	findErr    error
)

// findShim looks the shim up once: dlsym may allocate, and must not do it
// between two readings.
func findShim() error {
	findOnce.Do(func() {
		read, region := C.leakcheck_find_read_totals(), C.leakcheck_find_region()
		if read == nil || region == nil {
			findErr = errNoShim
			return
		}
		if layout := C.leakcheck_layout_version(region); layout != C.CGO_AUDIT_LAYOUT_VERSION {
			findErr = fmt.Errorf("leakcheck: the preloaded shim writes region layout %d, this package reads layout %d: "+
				"build the shim and leakcheck from the same cgo-audit version", layout, C.CGO_AUDIT_LAYOUT_VERSION)
			return
		}
		readTotals = read
	})
	return findErr
}

// cHeap is the program's live C heap, as the harness counts it: without the
// runtime's per-thread blocks made inside pthread_create, which live as long
// as their thread.
type cHeap struct {
	liveBytes  int64
	liveAllocs int64
}

func readCHeap() cHeap {
	var t C.struct_cgo_audit_counters
	C.leakcheck_read_totals(readTotals, &t)
	return cHeap{
		liveBytes:  int64(t.alloc_bytes-t.free_bytes) - int64(t.thread_start_alloc_bytes-t.thread_start_free_bytes),
		liveAllocs: int64(t.allocs-t.frees) - int64(t.thread_start_allocs-t.thread_start_frees),
	}
}

// stableCHeap reads until two reads a millisecond apart agree: the runtime
// may be starting a thread, and x_cgo_thread_start mallocs a small block that
// the new thread frees a moment later.
func stableCHeap() cHeap {
	last := readCHeap()
	for attempt := 0; attempt < 50; attempt++ {
		time.Sleep(time.Millisecond)
		now := readCHeap()
		if now == last {
			return now
		}
		last = now
	}
	return last
}

// settledCHeap brings the Go side to rest first (GC until finalizers and
// cleanups have run: they may free C memory), as the benchmark probe does.
func settledCHeap() cHeap {
	leakCheckSettle()
	return stableCHeap()
}
