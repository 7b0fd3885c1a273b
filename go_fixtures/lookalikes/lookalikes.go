// Package lookalikes holds code that looks like it leaks and does not: an
// audit must call every one of them clean. A bounded C cache (grows to a
// plateau), C memory released by a Go finalizer after a GC, memory
// malloc'd on one OS thread and freed on another, realloc and
// posix_memalign churn, and a bounded Go cache.
package lookalikes

/*
#include <stdlib.h>
#include "cache.h"
*/
import "C"

import (
	"runtime"
	"strconv"
	"sync"
	"unsafe"
)

// CachePut stores a copy of value in the bounded C cache.
func CachePut(key uint64, value string) {
	cv := C.CString(value)
	C.cache_put(C.ulong(key), cv)
	C.free(unsafe.Pointer(cv))
}

// Buffer owns C memory that its finalizer frees: nothing leaks, but the C
// heap only shrinks after a GC has run the finalizers.
type Buffer struct {
	ptr unsafe.Pointer
}

// NewBuffer allocates size bytes of C memory owned by the returned Buffer.
func NewBuffer(size int) *Buffer {
	b := &Buffer{ptr: C.malloc(C.size_t(size))}
	runtime.SetFinalizer(b, func(b *Buffer) { C.free(b.ptr) })
	return b
}

// Two goroutines locked to their own OS threads: one mallocs, the other
// frees, as a C library's worker pool would.
type handoff struct {
	allocate chan int
	release  chan unsafe.Pointer
	done     chan struct{}
}

var (
	pairOnce sync.Once
	pair     handoff
)

func startPair() {
	pair = handoff{allocate: make(chan int), release: make(chan unsafe.Pointer), done: make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		for size := range pair.allocate {
			pair.release <- C.malloc(C.size_t(size))
		}
	}()
	go func() {
		runtime.LockOSThread()
		for p := range pair.release {
			C.free(p)
			pair.done <- struct{}{}
		}
	}()
}

// MallocHereFreeThere allocates on one OS thread and frees on another.
func MallocHereFreeThere(size int) {
	pairOnce.Do(startPair)
	pair.allocate <- size
	<-pair.done
}

// ThreadPerCall runs f on a fresh OS thread that ends with it: a goroutine
// that exits while locked to its thread takes the thread down, so the
// runtime starts another one, and glibc allocates each new thread's TLS.
func ThreadPerCall(f func()) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		f()
		close(done)
	}()
	<-done
}

// Churn allocates, resizes and frees through malloc, realloc, posix_memalign,
// reallocarray, calloc and memalign, leaving nothing behind.
func Churn(seed int) {
	C.churn(C.size_t(seed))
}

// goCache keeps at most goCacheLimit entries: the Go heap grows to a plateau.
const goCacheLimit = 4096

var (
	goCacheMu sync.Mutex
	goCache   = map[string][]byte{}
)

// GoCachePut stores a value, evicting an arbitrary entry when full.
func GoCachePut(key int) {
	goCacheMu.Lock()
	defer goCacheMu.Unlock()
	if len(goCache) >= goCacheLimit {
		for k := range goCache {
			delete(goCache, k)
			break
		}
	}
	goCache[strconv.Itoa(key%(4*goCacheLimit))] = make([]byte, 128)
}
