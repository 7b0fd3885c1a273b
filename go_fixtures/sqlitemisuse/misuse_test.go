package sqlitemisuse

import "testing"

func BenchmarkStmtNeverClosed(b *testing.B) {
	db := ServiceDB()
	for i := 0; i < b.N; i++ {
		StmtNeverClosed(db, i)
	}
}

func BenchmarkStmtClosed(b *testing.B) {
	db := ServiceDB()
	for i := 0; i < b.N; i++ {
		StmtClosed(db, i)
	}
}

func BenchmarkRowsNeverClosed(b *testing.B) {
	db := ServiceDB()
	for i := 0; i < b.N; i++ {
		RowsNeverClosed(db)
	}
}

func BenchmarkRowsClosed(b *testing.B) {
	db := ServiceDB()
	for i := 0; i < b.N; i++ {
		RowsClosed(db)
	}
}

func BenchmarkRowsDrainedNotClosed(b *testing.B) {
	db := ServiceDB()
	for i := 0; i < b.N; i++ {
		RowsDrainedNotClosed(db)
	}
}

func BenchmarkDBPerCallNeverClosed(b *testing.B) {
	for i := 0; i < b.N; i++ {
		DBPerCallNeverClosed(i)
	}
}

func BenchmarkDBPerCallClosed(b *testing.B) {
	for i := 0; i < b.N; i++ {
		DBPerCallClosed(i)
	}
}

func BenchmarkTxStmtNotClosed(b *testing.B) {
	db := ServiceDB()
	for i := 0; i < b.N; i++ {
		TxStmtNotClosed(db, i)
	}
}

func BenchmarkDriverStmtDropped(b *testing.B) {
	for i := 0; i < b.N; i++ {
		DriverStmtDropped()
	}
}
