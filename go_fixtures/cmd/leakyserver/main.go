// Command leakyserver is the field guide's service: an HTTP server that looks
// configuration values up through cgo on every request, and serves
// net/http/pprof so an audit can read its goroutines and Go heap, as the
// guide does by hand during a load test. Under the cgo-audit shim it also
// serves its C heap as a pprof profile on /debug/cgo-audit/heap.
//
//	leakyserver -addr 127.0.0.1:8305 -mode leaky      # C.CString leak: 26 B per request
//	leakyserver -mode fixed                           # the fix
//	leakyserver -mode goroutines                      # the fix, plus a goroutine that never ends per request
//
// Run it from go_fixtures/cstring (its -conf default is relative to there).
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"

	"github.com/cgo-audit/cgo-audit/go_fixtures/cstring"
	"github.com/cgo-audit/cgo-audit/goaudit/cheap"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8305", "listen address")
	mode := flag.String("mode", "leaky", "leaky, fixed or goroutines")
	conf := flag.String("conf", "testdata/app.conf", "the config file get_value reads")
	flag.Parse()

	get := cstring.GetValueLeaky
	leakGoroutine := false
	switch *mode {
	case "leaky":
	case "fixed":
		get = cstring.GetValueFixed
	case "goroutines":
		get, leakGoroutine = cstring.GetValueFixed, true
	default:
		fmt.Fprintf(os.Stderr, "leakyserver: unknown -mode %q\n", *mode)
		os.Exit(2)
	}
	http.Handle("/debug/cgo-audit/heap", cheap.Handler())
	http.HandleFunc("/value", func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("key")
		if key == "" {
			key = "timeout"
		}
		if leakGoroutine {
			never := make(chan struct{})
			go func() { <-never }()
		}
		value, err := get(*conf, key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		fmt.Fprintln(w, value)
	})
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on http://%s\n", listener.Addr())
	log.Fatal(http.Serve(listener, nil))
}
