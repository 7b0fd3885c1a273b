// Package verifynone holds the examples of leakcheck.VerifyNone (in its
// tests) and the C memory they need: cgo cannot be used in _test.go files.
package verifynone

// #include <stdlib.h>
import "C"

import (
	"runtime"
	"unsafe"
)

// Block is C memory owned by a Go value.
type Block struct{ p unsafe.Pointer }

// NewBlock mallocs n bytes of C heap.
func NewBlock(n int) *Block { return &Block{C.malloc(C.size_t(n))} }

// Free frees the block's C memory.
func (b *Block) Free() {
	C.free(b.p)
	b.p = nil
}

// link is one object of a finalizer chain.
type link struct {
	next  *link
	block *Block
}

// FreedByFinalizerChain mallocs n bytes that the last of length objects
// frees from its finalizer. The runtime runs the finalizer of an object only
// once the objects that point at it are gone, so the block is freed only
// after length garbage collections: C memory released late, as a wrapper of
// a wrapper of a C handle releases it.
func FreedByFinalizerChain(n, length int) {
	var head *link
	for i := 0; i < length; i++ {
		l := &link{next: head}
		if i == 0 {
			l.block = NewBlock(n)
		}
		runtime.SetFinalizer(l, func(l *link) {
			if l.block != nil {
				l.block.Free()
			}
		})
		head = l
	}
}
