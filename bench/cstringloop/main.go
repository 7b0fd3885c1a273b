// Command cstringloop is the overhead benchmark's workload: a malloc-heavy
// cgo loop, two C.CString and two C.free per iteration, no I/O. It prints the
// loop's wall time in nanoseconds so start-up is left out of the ratio.
package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"flag"
	"fmt"
	"time"
	"unsafe"
)

func main() {
	iterations := flag.Int("n", 2_000_000, "loop iterations")
	flag.Parse()
	file, key := "testdata/app.conf", "timeout"
	start := time.Now()
	for i := 0; i < *iterations; i++ {
		cfile := C.CString(file)
		ckey := C.CString(key)
		C.free(unsafe.Pointer(cfile))
		C.free(unsafe.Pointer(ckey))
	}
	fmt.Println(time.Since(start).Nanoseconds())
}
