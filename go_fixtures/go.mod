module github.com/cgo-audit/cgo-audit/go_fixtures

go 1.22

require github.com/cgo-audit/cgo-audit/goaudit v0.0.0

// The Go helpers are this repository's own module; a user's module names a
// released version instead (see README).
replace github.com/cgo-audit/cgo-audit/goaudit => ../goaudit
