// Command cheapscrape measures what one scrape of goaudit/cheap's heap
// profile costs in a process holding many live C blocks from many distinct
// stacks, against Go's own heap profile (runtime/pprof) in the same process.
// Run it under the shim with stacks on: bench/cheap_scrape.py does.
//
//	cheapscrape -blocks 1000000 -bits 12 -scrapes 20
package main

// #include <stdlib.h>
import "C"

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"syscall"
	"time"
	"unsafe"

	"github.com/cgo-audit/cgo-audit/goaudit/cheap"
)

var blocks []unsafe.Pointer

// grow allocates one block from a stack chosen by path's low bits: each
// level goes through left or right, so bits levels make 2^bits distinct
// stacks.
//
//go:noinline
func grow(level, bits int, path uint) {
	if level == bits {
		blocks = append(blocks, C.malloc(16))
		return
	}
	if path&1 == 0 {
		left(level+1, bits, path>>1)
	} else {
		right(level+1, bits, path>>1)
	}
}

//go:noinline
func left(level, bits int, path uint) { grow(level, bits, path) }

//go:noinline
func right(level, bits int, path uint) { grow(level, bits, path) }

func cpu() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type cost struct{ CPUms, WallMs float64 }

func measure(f func()) cost {
	c0, w0 := cpu(), time.Now()
	f()
	return cost{float64(cpu()-c0) / 1e6, float64(time.Since(w0)) / 1e6}
}

func median(cs []cost) cost {
	cpus, walls := make([]float64, len(cs)), make([]float64, len(cs))
	for i, c := range cs {
		cpus[i], walls[i] = c.CPUms, c.WallMs
	}
	sort.Float64s(cpus)
	sort.Float64s(walls)
	return cost{cpus[len(cs)/2], walls[len(cs)/2]}
}

func main() {
	n := flag.Int("blocks", 1000000, "live C blocks to hold")
	bits := flag.Int("bits", 12, "2^bits distinct allocation stacks")
	scrapes := flag.Int("scrapes", 20, "scrapes to measure after the first")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the first scrape here")
	flag.Parse()

	goroutines := runtime.NumGoroutine()
	handler := cheap.Handler()
	idle := measure(func() { time.Sleep(time.Second) })
	result := map[string]interface{}{
		"goroutines_added_by_handler": runtime.NumGoroutine() - goroutines,
		"idle_cpu_ms_per_s":           idle.CPUms,
	}

	for i := 0; i < *n; i++ {
		grow(0, *bits, uint(i))
	}
	runtime.GC()

	var size int
	scrape := func() {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/cgo-audit/heap", nil))
		if rec.Code != 200 {
			fmt.Fprintf(os.Stderr, "cheapscrape: the handler answered %d: %s", rec.Code, rec.Body.String())
			os.Exit(1)
		}
		size = rec.Body.Len()
	}
	goHeap := func() {
		rec := httptest.NewRecorder()
		pprof.Lookup("heap").WriteTo(rec, 0)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			pprof.StartCPUProfile(f)
			defer f.Close()
		}
	}
	result["first_scrape"] = measure(scrape)
	pprof.StopCPUProfile()
	var warm, base []cost
	for i := 0; i < *scrapes; i++ {
		warm = append(warm, measure(scrape))
		base = append(base, measure(goHeap))
	}
	m, b := median(warm), median(base)
	result["blocks"] = *n
	result["stacks"] = 1 << *bits
	result["profile_bytes"] = size
	result["scrape_median"] = m
	result["go_heap_profile_median"] = b
	result["cpu_ratio_to_go_heap_profile"] = m.CPUms / b.CPUms
	json.NewEncoder(os.Stdout).Encode(result)
}
