module github.com/cgo-audit/cgo-audit/goaudit

go 1.12
