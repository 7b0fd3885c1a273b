// Command cstring-driver exposes the cstring package's lookups to the
// cgo-audit harness (see package auditdriver for the protocol).
package main

import (
	"github.com/cgo-audit/cgo-audit/go_fixtures/cstring"
	"github.com/cgo-audit/cgo-audit/goaudit/auditdriver"
)

func main() {
	auditdriver.Register("GetValueLeaky", auditdriver.Strings(func(a map[string]string) (any, error) {
		return cstring.GetValueLeaky(a["file"], a["key"])
	}))
	auditdriver.Register("GetValueFixed", auditdriver.Strings(func(a map[string]string) (any, error) {
		return cstring.GetValueFixed(a["file"], a["key"])
	}))
	auditdriver.Main()
}
