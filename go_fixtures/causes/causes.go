// Package causes leaks on purpose, once for each way a Go service that uses
// cgo leaks memory: a Go map that only grows, resources never closed,
// goroutines that never end, C memory never freed (a C object never
// destroyed, C.CBytes never freed, a C helper that keeps copies, a leak in a
// goroutine), and mmap'd memory no heap counter sees.
package causes

/*
#include <stdlib.h>
#include "clib.h"
*/
import "C"

import (
	"io"
	"net/http"
	"os"
	"sync"
	"unsafe"
)

// registry only grows: cause 1, Go heap growth that pprof can see.
var (
	registryMu sync.Mutex
	registry   = map[int][]byte{}
)

// Remember keeps 256 bytes per id forever.
func Remember(id int) {
	registryMu.Lock()
	registry[id] = make([]byte, 256)
	registryMu.Unlock()
}

// openFiles holds files nobody closes: cause 2, resources never closed.
// (An unreachable *os.File would be closed by its finalizer; a real leak
// keeps it somewhere, as this cache does.)
var (
	filesMu   sync.Mutex
	openFiles []*os.File
)

// OpenAndForget opens path and keeps the file without closing it.
func OpenAndForget(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	filesMu.Lock()
	openFiles = append(openFiles, f)
	filesMu.Unlock()
	return nil
}

// GetWithoutClose fetches url and drops the response body unread and
// unclosed: the connection can never be reused or released.
func GetWithoutClose(client *http.Client, url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	_ = resp.StatusCode
	return nil
}

// GetAndClose is the fix: drain and close the body.
func GetAndClose(client *http.Client, url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// WaitForever starts a goroutine that waits on a channel nobody sends to:
// cause 3, a goroutine leak.
func WaitForever() {
	never := make(chan struct{})
	go func() {
		<-never
	}()
}

// NewParserNoFree creates a C parser and never destroys it: cause 4, a C
// library object never released (64 bytes + the name's copy).
func NewParserNoFree(name string, input []byte) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	p := C.parser_new(cname)
	if len(input) > 0 {
		C.parser_feed(p, (*C.char)(unsafe.Pointer(&input[0])), C.size_t(len(input)))
	}
	// Missing: C.parser_free(p)
}

// CopyToCNoFree hands a buffer to C with C.CBytes and never frees it.
func CopyToCNoFree(buf []byte) unsafe.Pointer {
	return C.CBytes(buf)
}

// RememberInC passes a string to a C helper that strdup()s and keeps it;
// the Go side frees its own C.CString correctly.
func RememberInC(s string) {
	cs := C.CString(s)
	C.remember(cs)
	C.free(unsafe.Pointer(cs))
}

// CStringInGoroutine leaks a C.CString inside a goroutine it starts.
func CStringInGoroutine(s string) {
	done := make(chan struct{})
	go func() {
		_ = C.CString(s)
		close(done)
	}()
	<-done
}

// MapScratch maps and touches bytes of memory in C and never unmaps them:
// RSS grows while neither heap does (the shim counts malloc, not mmap).
func MapScratch(bytes int) {
	C.map_scratch(C.size_t(bytes))
}

// Remembered is how many copies the C helper holds.
func Remembered() int {
	return int(C.remembered())
}
