// Package cstring is the field guide's example: a config lookup in C called
// through cgo, once with the C.CString leak and once with its fix.
package cstring

/*
#include <stdlib.h>
#include "getvalue.h"
*/
import "C"

import (
	"errors"
	"unsafe"
)

// ErrNotFound is returned when the key is absent from the file.
var ErrNotFound = errors.New("cstring: key not found")

func result(ret C.int, content, errmsg []C.char) (string, error) {
	switch ret {
	case 0:
		return C.GoString(&content[0]), nil
	case 1:
		return "", ErrNotFound
	default:
		return "", errors.New(C.GoString(&errmsg[0]))
	}
}

// GetValueLeaky is the seed's code as written: the two C.CString copies are
// never freed, so every call leaks len(file)+1 + len(key)+1 bytes of C heap.
func GetValueLeaky(file, key string) (string, error) {
	content := make([]C.char, 40960)
	errmsg := make([]C.char, 1024)
	ret := C.get_value(C.CString(file), C.CString(key), &content[0], 40960, &errmsg[0], 1024)
	return result(ret, content, errmsg)
}

// GetValueFixed is the seed's fix: keep the pointers and free them.
func GetValueFixed(file, key string) (string, error) {
	content := make([]C.char, 40960)
	errmsg := make([]C.char, 1024)
	cfile := C.CString(file)
	ckey := C.CString(key)
	ret := C.get_value(cfile, ckey, &content[0], 40960, &errmsg[0], 1024)
	C.free(unsafe.Pointer(cfile))
	C.free(unsafe.Pointer(ckey))
	return result(ret, content, errmsg)
}
