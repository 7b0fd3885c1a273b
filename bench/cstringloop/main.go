// Command cstringloop is the overhead benchmark's workload: a malloc-heavy
// cgo loop, two C.CString and two C.free per iteration, no I/O. It prints the
// loop's wall time in nanoseconds so start-up is left out of the ratio.
//
// With -wait it prints "ready" and starts the loop only when a line arrives
// on stdin: bench/attach_overhead.py attaches the shim in between.
package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"time"
	"unsafe"
)

func main() {
	iterations := flag.Int("n", 2_000_000, "loop iterations")
	wait := flag.Bool("wait", false, `print "ready", then start on a line from stdin`)
	flag.Parse()
	if *wait {
		fmt.Println("ready")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			os.Exit(1)
		}
	}
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
