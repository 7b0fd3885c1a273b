module github.com/cgo-audit/cgo-audit/go_fixtures/sqlitemisuse

go 1.22

require github.com/mattn/go-sqlite3 v1.14.53
