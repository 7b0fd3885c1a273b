package cstring

import (
	"errors"
	"testing"
)

const (
	confFile = "testdata/app.conf"
	confKey  = "timeout" // 18+1 + 7+1 = 26 bytes leaked per leaky call
)

func TestGetValue(t *testing.T) {
	for name, get := range map[string]func(string, string) (string, error){
		"leaky": GetValueLeaky,
		"fixed": GetValueFixed,
	} {
		got, err := get(confFile, confKey)
		if err != nil || got != "30s" {
			t.Errorf("%s: got %q, %v; want 30s", name, got, err)
		}
		if _, err := get(confFile, "missing"); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: missing key: got %v, want ErrNotFound", name, err)
		}
		if _, err := get("testdata/absent.conf", confKey); err == nil {
			t.Errorf("%s: absent file: want an error", name)
		}
	}
}

func BenchmarkGetValueLeaky(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := GetValueLeaky(confFile, confKey); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetValueFixed(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := GetValueFixed(confFile, confKey); err != nil {
			b.Fatal(err)
		}
	}
}
