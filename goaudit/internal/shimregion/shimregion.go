// Package shimregion reads the cgo-audit shim's figures from inside the
// process that the shim counts: the totals, the header and the allocation
// stacks of its region. It serves goaudit's heap-profile handler and metrics
// collector.
//
// The shim's functions are looked up at run time (dlsym), never linked, so a
// program that imports this builds and runs without the shim. A failed lookup
// is not remembered: the shim may be attached to the running process later
// (cgo-audit attach), and the next call then finds it.
package shimregion

/*
#cgo CFLAGS: -I${SRCDIR}/../../leakcheck
#cgo linux LDFLAGS: -ldl
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include "cgo_audit_region.h"

typedef const struct cgo_audit_region *(*shimregion_region_fn)(void);
typedef void (*shimregion_totals_fn)(struct cgo_audit_counters *);
typedef uint64_t (*shimregion_alloc_totals_fn)(uint64_t *, uint64_t *, uint64_t);

// Literal names: a C.CString here would itself be a C allocation the shim counts.
static void *shimregion_sym(void *handle, int which)
{
	static const char *const names[] = {"cgo_audit_region", "cgo_audit_read_totals", "cgo_audit_stack_alloc_totals"};
	return dlsym(handle == NULL ? RTLD_DEFAULT : handle, names[which]);
}

// A shim loaded into the running process with RTLD_LOCAL (as an attach may
// do) is not in the global scope: open it again by path, without loading.
static void *shimregion_open_loaded(const char *path)
{
	return dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
}

static const struct cgo_audit_region *shimregion_region(void *fn)
{
	return ((shimregion_region_fn)fn)();
}

static void shimregion_totals(void *fn, struct cgo_audit_counters *out)
{
	((shimregion_totals_fn)fn)(out);
}

static uint64_t shimregion_alloc_totals(void *fn, uint64_t *bytes, uint64_t *allocs, uint64_t count)
{
	return ((shimregion_alloc_totals_fn)fn)(bytes, allocs, count);
}
*/
import "C"

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// ErrNoShim: the shim is neither preloaded nor attached.
var ErrNoShim = errors.New("this process does not run under the cgo-audit shim: start it with " +
	"LD_PRELOAD=$(cgo-audit build-shim), or attach the shim to it with cgo-audit attach")

// LibraryName is the shim's file name as cgo-audit builds it.
const LibraryName = "libcgoaudit.so"

// Shim is the shim found in this process.
type Shim struct {
	region      unsafe.Pointer // cgo_audit_region
	readTotals  unsafe.Pointer // cgo_audit_read_totals
	allocTotals unsafe.Pointer // cgo_audit_stack_alloc_totals (nil in a shim older than it)
}

var (
	mu    sync.Mutex
	found *Shim
)

// Find returns the shim, or ErrNoShim, or an error saying its region has
// another layout than this package reads.
func Find() (*Shim, error) {
	mu.Lock()
	defer mu.Unlock()
	if found != nil {
		return found, nil
	}
	s := lookup(nil)
	if s == nil {
		if path := loadedShimPath(); path != "" {
			cpath := C.CString(path) // only on this rare path: the shim, if counting, sees 1 block come and go
			handle := C.shimregion_open_loaded(cpath)
			C.free(unsafe.Pointer(cpath))
			if handle != nil {
				s = lookup(handle)
			}
		}
	}
	if s == nil {
		return nil, ErrNoShim
	}
	if layout := s.header().layout_version; layout != C.CGO_AUDIT_LAYOUT_VERSION {
		return nil, fmt.Errorf("the cgo-audit shim in this process writes region layout %d, this package reads "+
			"layout %d: build the shim and goaudit from the same cgo-audit version", layout, C.CGO_AUDIT_LAYOUT_VERSION)
	}
	found = s
	return s, nil
}

func lookup(handle unsafe.Pointer) *Shim {
	region, totals := C.shimregion_sym(handle, 0), C.shimregion_sym(handle, 1)
	if region == nil || totals == nil {
		return nil
	}
	return &Shim{region: region, readTotals: totals, allocTotals: C.shimregion_sym(handle, 2)}
}

// loadedShimPath is the path of a mapped file named like the shim, or "".
func loadedShimPath() string {
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		return ""
	}
	defer maps.Close()
	scanner := bufio.NewScanner(maps)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) >= 6 && strings.HasSuffix(fields[5], "/"+LibraryName) {
			return fields[5]
		}
	}
	return ""
}

// regionPtr is called each time: a forked child writes a region of its own.
func (s *Shim) regionPtr() *C.struct_cgo_audit_region {
	return (*C.struct_cgo_audit_region)(unsafe.Pointer(C.shimregion_region(s.region)))
}

func (s *Shim) header() *C.struct_cgo_audit_header {
	return &s.regionPtr().header
}

// Totals are the process's allocator calls since the shim started counting.
type Totals struct {
	Allocs, Frees, AllocBytes, FreeBytes uint64
	// The subset made inside pthread_create (glibc's per-thread blocks, which
	// live as long as their thread).
	ThreadStartAllocs, ThreadStartFrees, ThreadStartAllocBytes, ThreadStartFreeBytes uint64
}

// LiveBytes is the live C heap, thread blocks included.
func (t Totals) LiveBytes() int64 { return int64(t.AllocBytes - t.FreeBytes) }

// LiveBlocks is the number of live blocks, thread blocks included.
func (t Totals) LiveBlocks() int64 { return int64(t.Allocs - t.Frees) }

// Totals sums the shim's thread slots.
func (s *Shim) Totals() Totals {
	var t C.struct_cgo_audit_counters
	C.shimregion_totals(s.readTotals, &t)
	return Totals{
		Allocs: uint64(t.allocs), Frees: uint64(t.frees),
		AllocBytes: uint64(t.alloc_bytes), FreeBytes: uint64(t.free_bytes),
		ThreadStartAllocs: uint64(t.thread_start_allocs), ThreadStartFrees: uint64(t.thread_start_frees),
		ThreadStartAllocBytes: uint64(t.thread_start_alloc_bytes), ThreadStartFreeBytes: uint64(t.thread_start_free_bytes),
	}
}

// Stack modes, as the region names them.
const (
	StacksOff     = int(C.CGO_AUDIT_STACKS_OFF)
	StacksAll     = int(C.CGO_AUDIT_STACKS_ALL)
	StacksSampled = int(C.CGO_AUDIT_STACKS_SAMPLED)
)

// Header is what a reader needs from the region's header.
type Header struct {
	Pid            int
	StackMode      int    // StacksOff, StacksAll or StacksSampled
	SamplePeriod   uint64 // sampled mode: mean bytes between samples
	GoFrames       bool   // the shim walks goroutine stacks (it was given the Go layout)
	StacksUsed     int
	StacksDropped  uint64 // allocations whose stack did not fit in the table
	UntrackedAlloc uint64 // allocations the shim could not tag
	StartTimeNanos int64
	PeakLiveBytes  int64 // high-water mark of the live C heap (thread blocks included)
}

// Header reads the region's header.
func (s *Shim) Header() Header {
	h := s.header()
	return Header{
		Pid:            int(h.pid),
		StackMode:      int(h.stack_mode),
		SamplePeriod:   uint64(h.sample_period_bytes),
		GoFrames:       h.flags&C.CGO_AUDIT_FLAG_STACKS != 0,
		StacksUsed:     int(loadU64(&h.stacks_used)),
		StacksDropped:  uint64(h.stacks_dropped),
		UntrackedAlloc: uint64(h.untracked_allocs),
		StartTimeNanos: int64(h.start_time_ns),
		PeakLiveBytes:  int64(h.peak_live_bytes),
	}
}

// Stack is one distinct allocation stack and the heap it accounts for.
type Stack struct {
	// Hash is the shim's hash of the frames (never 0 for a stored stack).
	Hash uint64
	// Frames are return addresses, innermost first. They point into the
	// shim's region: read them, do not keep them.
	Frames []uintptr
	// GoStatement: the last frame is the go statement that started the
	// goroutine, not a caller.
	GoStatement           bool
	LiveBytes, LiveBlocks int64
	// Allocated in all, freed or not (0 when the shim predates these figures).
	AllocBytes, AllocBlocks uint64
}

// Stacks fills dst (reusing its storage) with every stack the shim has
// recorded, in table order: stack i stays stack i for the life of the
// process, and its frames never change.
func (s *Shim) Stacks(dst []Stack) []Stack {
	r := s.regionPtr()
	used := int(loadU64(&r.header.stacks_used))
	if used > int(C.CGO_AUDIT_STACK_CAPACITY) {
		used = int(C.CGO_AUDIT_STACK_CAPACITY)
	}
	dst = dst[:0]
	var allocBytes, allocBlocks []uint64
	if s.allocTotals != nil && used > 0 {
		allocBytes, allocBlocks = make([]uint64, used), make([]uint64, used)
		C.shimregion_alloc_totals(s.allocTotals, (*C.uint64_t)(unsafe.Pointer(&allocBytes[0])),
			(*C.uint64_t)(unsafe.Pointer(&allocBlocks[0])), C.uint64_t(used))
	}
	table := r.stacks[:used]
	for i := range table {
		e := &table[i]
		depth := int(e.depth)
		if depth > int(C.CGO_AUDIT_STACK_DEPTH) {
			depth = int(C.CGO_AUDIT_STACK_DEPTH)
		}
		st := Stack{
			Hash:        uint64(e.hash),
			Frames:      (*[C.CGO_AUDIT_STACK_DEPTH]uintptr)(unsafe.Pointer(&e.frames[0]))[:depth:depth],
			GoStatement: e.mode_flags&2 != 0,
			LiveBytes:   int64(e.live_bytes),
			LiveBlocks:  int64(e.live_allocs),
		}
		if allocBytes != nil {
			st.AllocBytes, st.AllocBlocks = allocBytes[i], allocBlocks[i]
		}
		dst = append(dst, st)
	}
	return dst
}

// loadU64 pairs with the shim's release stores of stacks_used.
func loadU64(p *C.uint64_t) uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(p)))
}
