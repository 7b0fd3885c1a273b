// Command lateshim serves goaudit/cheap's heap profile, and loads the
// cgo-audit shim into itself only when asked (GET /load), with dlopen and
// RTLD_LOCAL as cgo-audit attach's injector does: the shim is then not in
// the global symbol scope, and the handler must find it all the same.
//
//	lateshim -addr 127.0.0.1:8306 -shim $(cgo-audit build-shim)
package main

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

static int lateshim_load(const char *path)
{
	return dlopen(path, RTLD_NOW | RTLD_LOCAL) != NULL;
}
*/
import "C"

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"unsafe"

	"github.com/cgo-audit/cgo-audit/goaudit/cheap"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8306", "listen address")
	shim := flag.String("shim", "", "the shim to load on GET /load")
	flag.Parse()
	http.Handle("/debug/cgo-audit/heap", cheap.Handler())
	http.HandleFunc("/load", func(w http.ResponseWriter, r *http.Request) {
		path := C.CString(*shim)
		defer C.free(unsafe.Pointer(path))
		if C.lateshim_load(path) == 0 {
			http.Error(w, C.GoString(C.dlerror()), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "loaded")
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
