// Command workload-driver runs generated workloads for the harness's
// property tests (protocol: package auditdriver). Each call leaks once by
// the cause it is named for, then does "churn" clean C allocations that
// leave nothing behind:
//
//	{"op": "call", "func": "leak_c", "args": {"bytes": 100, "churn": 10}, "count": 50}
package main

/*
#include <stdlib.h>
#include <string.h>

// Visible outside this file, so the compiler must keep the allocation.
void *workload_kept_c;

static void leak_c(size_t bytes) { workload_kept_c = malloc(bytes); memset(workload_kept_c, 1, bytes); }

static void churn(int n, unsigned seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        char *p = malloc(1 + seed % 512);
        char *q = realloc(p, 1 + (seed >> 8) % 4096);
        void *r = NULL;
        if (posix_memalign(&r, 64, 1 + (seed >> 16) % 1024) == 0) {
            free(r);
        }
        free(q != NULL ? q : p);
    }
}
*/
import "C"

import (
	"encoding/json"
	"os"
	"sync"

	"github.com/cgo-audit/cgo-audit/goaudit/auditdriver"
)

type args struct {
	Bytes int `json:"bytes"`
	Churn int `json:"churn"`
}

var (
	mu        sync.Mutex
	keptGo    [][]byte
	keptFiles []*os.File
	seed      C.uint
)

func workload(leak func(a args) error) auditdriver.Func {
	return func(raw json.RawMessage) (any, error) {
		var a args
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		if err := leak(a); err != nil {
			return nil, err
		}
		mu.Lock()
		seed++
		s := seed
		mu.Unlock()
		C.churn(C.int(a.Churn), s)
		return nil, nil
	}
}

func main() {
	auditdriver.Register("leak_c", workload(func(a args) error {
		C.leak_c(C.size_t(a.Bytes))
		return nil
	}))
	auditdriver.Register("leak_go", workload(func(a args) error {
		mu.Lock()
		keptGo = append(keptGo, make([]byte, a.Bytes))
		mu.Unlock()
		return nil
	}))
	auditdriver.Register("leak_goroutine", workload(func(a args) error {
		never := make(chan struct{})
		go func() { <-never }()
		return nil
	}))
	auditdriver.Register("leak_fd", workload(func(a args) error {
		f, err := os.Open(os.DevNull)
		if err == nil {
			mu.Lock()
			keptFiles = append(keptFiles, f)
			mu.Unlock()
		}
		return err
	}))
	auditdriver.Register("clean", workload(func(a args) error { return nil }))
	auditdriver.Main()
}
