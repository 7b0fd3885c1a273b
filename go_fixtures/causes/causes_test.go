package causes

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func BenchmarkGoMapGrowth(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Remember(len(registry))
	}
}

func BenchmarkFileNeverClosed(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if err := OpenAndForget("testdata/tiny.txt"); err != nil {
			b.Fatal(err)
		}
	}
}

func benchmarkHTTP(b *testing.B, get func(*http.Client, string) error) {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("hello"))
	}))
	defer server.Close()
	client := &http.Client{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := get(client, server.URL); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHTTPBodyNeverClosed(b *testing.B) { benchmarkHTTP(b, GetWithoutClose) }

func BenchmarkHTTPBodyClosed(b *testing.B) { benchmarkHTTP(b, GetAndClose) }

func BenchmarkBlockedGoroutines(b *testing.B) {
	for i := 0; i < b.N; i++ {
		WaitForever()
	}
}

func BenchmarkCParserNeverFreed(b *testing.B) {
	input := []byte("GET / HTTP/1.1\r\n")
	for i := 0; i < b.N; i++ {
		NewParserNoFree("conn", input)
	}
}

func BenchmarkCBytesNeverFreed(b *testing.B) {
	buf := make([]byte, 1024)
	for i := 0; i < b.N; i++ {
		CopyToCNoFree(buf)
	}
}

func BenchmarkCHelperStrdup(b *testing.B) {
	for i := 0; i < b.N; i++ {
		RememberInC("session-token")
	}
}

func BenchmarkCStringInGoroutine(b *testing.B) {
	for i := 0; i < b.N; i++ {
		CStringInGoroutine("payload")
	}
}

func BenchmarkMmapNeverUnmapped(b *testing.B) {
	for i := 0; i < b.N; i++ {
		MapScratch(64 << 10)
	}
}

func TestLeakyHelpersWork(t *testing.T) {
	before := Remembered()
	RememberInC("x")
	if Remembered() != before+1 {
		t.Fatal("remember did not keep the copy")
	}
	if err := OpenAndForget("testdata/tiny.txt"); err != nil {
		t.Fatal(err)
	}
}
