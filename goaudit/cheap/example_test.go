package cheap_test

import (
	"net/http"

	"github.com/cgo-audit/cgo-audit/goaudit/cheap"
)

// A service serves its C heap beside net/http/pprof's Go heap.
func ExampleHandler() {
	mux := http.NewServeMux()
	mux.Handle("/debug/cgo-audit/heap", cheap.Handler())
	go http.ListenAndServe("127.0.0.1:6060", mux)
}
