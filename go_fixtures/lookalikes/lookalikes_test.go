package lookalikes

import (
	"strconv"
	"testing"
)

func BenchmarkBoundedCCache(b *testing.B) {
	for i := 0; i < b.N; i++ {
		CachePut(uint64(i), "value-"+strconv.Itoa(i%1000))
	}
}

func BenchmarkFinalizerFreesC(b *testing.B) {
	for i := 0; i < b.N; i++ {
		_ = NewBuffer(256)
	}
}

func BenchmarkMallocHereFreeThere(b *testing.B) {
	for i := 0; i < b.N; i++ {
		MallocHereFreeThere(100)
	}
}

func BenchmarkReallocChurn(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Churn(i)
	}
}

func BenchmarkBoundedGoCache(b *testing.B) {
	for i := 0; i < b.N; i++ {
		GoCachePut(i)
	}
}

func BenchmarkThreadPerCall(b *testing.B) {
	for i := 0; i < b.N; i++ {
		ThreadPerCall(func() { Churn(i) })
	}
}
