module github.com/cgo-audit/cgo-audit/go_fixtures

go 1.22
