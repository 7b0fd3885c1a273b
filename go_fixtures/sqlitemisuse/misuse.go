// Package sqlitemisuse uses database/sql with github.com/mattn/go-sqlite3
// the way real programs misuse it, next to the correct versions, so the
// audit can be proved on real third-party C code (SQLite's amalgamation).
//
// What leaks C memory and what does not depends on who still holds the Go
// objects: database/sql keeps every open *sql.Stmt and every connection in
// the *sql.DB's dependency table, so go-sqlite3's finalizers (which would
// call sqlite3_finalize and sqlite3_close_v2) never run for them. A
// driver-level statement that nothing references is finalized by the GC.
package sqlitemisuse

import (
	"database/sql"
	"database/sql/driver"
	"sync"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// twoRows is a query that needs no table, so every new connection to its
// own in-memory database can run it.
const twoRows = "SELECT 1 AS n UNION ALL SELECT 2"

// lookup is the prepared statement's text: one parameter, one result.
const lookup = "SELECT ? + 1"

var (
	serviceOnce sync.Once
	serviceDB   *sql.DB
)

// ServiceDB is the long-lived *sql.DB a service opens once and never closes
// (closing it would finalize whatever the misuses left behind and hide them).
func ServiceDB() *sql.DB {
	serviceOnce.Do(func() {
		db, err := sql.Open("sqlite3", ":memory:")
		if err != nil {
			panic(err)
		}
		serviceDB = db
	})
	return serviceDB
}

func mustScanInt(row interface{ Scan(...any) error }) int {
	var n int
	if err := row.Scan(&n); err != nil {
		panic(err)
	}
	return n
}

// StmtNeverClosed prepares a statement per call and never closes it: the
// *sql.Stmt stays in the DB's dependency table and its connection's open
// statements, so its sqlite3_stmt is never finalized (1536 C bytes a call).
func StmtNeverClosed(db *sql.DB, x int) int {
	unclosedStmt, err := db.Prepare(lookup)
	if err != nil {
		panic(err)
	}
	return mustScanInt(unclosedStmt.QueryRow(x))
}

// StmtClosed is the correct version.
func StmtClosed(db *sql.DB, x int) int {
	stmt, err := db.Prepare(lookup)
	if err != nil {
		panic(err)
	}
	defer stmt.Close()
	return mustScanInt(stmt.QueryRow(x))
}

// RowsNeverClosed reads the first row and walks away: the *sql.Rows keeps
// its connection busy, so the next call opens a new one (the pool has no
// limit by default), and the DB keeps every connection it opened (65,797 C
// bytes a call). The rows' own statement is finalized by the GC.
func RowsNeverClosed(db *sql.DB) int {
	abandonedRows, err := db.Query(twoRows)
	if err != nil {
		panic(err)
	}
	if !abandonedRows.Next() {
		panic("no rows")
	}
	return mustScanInt(abandonedRows)
}

// RowsClosed is the correct version: the same early exit, then Close.
func RowsClosed(db *sql.DB) int {
	rows, err := db.Query(twoRows)
	if err != nil {
		panic(err)
	}
	defer rows.Close()
	if !rows.Next() {
		panic("no rows")
	}
	return mustScanInt(rows)
}

// RowsDrainedNotClosed never calls Close either, but reads every row:
// database/sql closes the rows itself when Next returns false.
func RowsDrainedNotClosed(db *sql.DB) int {
	rows, err := db.Query(twoRows)
	if err != nil {
		panic(err)
	}
	sum := 0
	for rows.Next() {
		sum += mustScanInt(rows)
	}
	if err := rows.Err(); err != nil {
		panic(err)
	}
	return sum
}

// DBPerCallNeverClosed opens a *sql.DB per call and never closes it: the DB
// keeps its idle connection, and its connectionOpener goroutine keeps the DB
// (one goroutine and one SQLite connection, 65,797 C bytes, a call).
func DBPerCallNeverClosed(x int) int {
	unclosedDB, err := sql.Open("sqlite3", ":memory:")
	if err != nil {
		panic(err)
	}
	// The first query opens the connection: its C memory is allocated here.
	return mustScanInt(unclosedDB.QueryRow(lookup, x))
}

// DBPerCallClosed is the correct version (wasteful, but it frees everything).
func DBPerCallClosed(x int) int {
	db, err := sql.Open("sqlite3", ":memory:")
	if err != nil {
		panic(err)
	}
	defer db.Close()
	return mustScanInt(db.QueryRow(lookup, x))
}

// TxStmtNotClosed prepares inside a transaction and never closes the
// statement: Commit closes the transaction's statements itself.
func TxStmtNotClosed(db *sql.DB, x int) int {
	tx, err := db.Begin()
	if err != nil {
		panic(err)
	}
	stmt, err := tx.Prepare(lookup)
	if err != nil {
		panic(err)
	}
	n := mustScanInt(stmt.QueryRow(x))
	if err := tx.Commit(); err != nil {
		panic(err)
	}
	return n
}

var (
	driverConnOnce sync.Once
	driverConn     driver.Conn
)

// DriverStmtDropped uses go-sqlite3's driver directly and drops a prepared
// statement without closing it: nothing else references it, so the GC runs
// go-sqlite3's finalizer, which calls sqlite3_finalize.
func DriverStmtDropped() {
	driverConnOnce.Do(func() {
		conn, err := (&sqlite3.SQLiteDriver{}).Open(":memory:")
		if err != nil {
			panic(err)
		}
		driverConn = conn
	})
	if _, err := driverConn.Prepare(lookup); err != nil {
		panic(err)
	}
}
