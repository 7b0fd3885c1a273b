// Package sessioncache is a service's C session cache: bounded, churned on
// every request, and leaking a 32-byte audit record every 100th request.
// The leak (0.32 B per request) hides under the cache's churn, so a site
// figure drawn from sampled stacks can be many times off: the audit must
// name it at its exact size.
package sessioncache

/*
#include <stdlib.h>
#include "sessioncache.h"
*/
import "C"

import "unsafe"

// Touch caches value under key and returns its length.
func Touch(key, value string) int {
	ckey := C.CString(key)
	cvalue := C.CString(value)
	n := C.session_touch(ckey, cvalue)
	C.free(unsafe.Pointer(ckey))
	C.free(unsafe.Pointer(cvalue))
	return int(n)
}
