module github.com/cgo-audit/cgo-audit/bench/cstringloop

go 1.22
