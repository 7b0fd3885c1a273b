module github.com/cgo-audit/cgo-audit/bench/cheapscrape

go 1.22

require github.com/cgo-audit/cgo-audit/goaudit v0.1.0

replace github.com/cgo-audit/cgo-audit/goaudit => ../../goaudit
