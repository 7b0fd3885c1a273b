package prom

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cgo-audit/cgo-audit/goaudit/internal/shimregion"
)

func gather(t testing.TB) map[string]float64 {
	registry := prometheus.NewPedanticRegistry()
	registry.MustRegister(NewCollector())
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if m.Gauge != nil {
				values[f.GetName()] = m.Gauge.GetValue()
			} else {
				values[f.GetName()] = m.Counter.GetValue()
			}
		}
	}
	return values
}

// The collector passes the pedantic registry's checks (names, help, labels
// consistent with Describe), with the shim or without it.
func TestCollectorIsConsistent(t *testing.T) {
	values := gather(t)
	if _, err := shimregion.Find(); err != nil {
		if len(values) != 1 || values["cgo_audit_shim_active"] != 0 {
			t.Fatalf("without the shim: want only cgo_audit_shim_active 0, got %v", values)
		}
		return
	}
	if values["cgo_audit_shim_active"] != 1 || len(values) != 8 {
		t.Fatalf("under the shim: got %v", values)
	}
	if live := values["cgo_audit_c_heap_allocated_bytes_total"] - values["cgo_audit_c_heap_freed_bytes_total"]; live != values["cgo_audit_c_heap_live_bytes"] {
		t.Fatalf("live bytes %v != allocated - freed %v", values["cgo_audit_c_heap_live_bytes"], live)
	}
}

// BenchmarkGather is one scrape of the collector alone (run it under the
// shim: LD_PRELOAD=$(cgo-audit build-shim) go test -bench . ./).
func BenchmarkGather(b *testing.B) {
	registry := prometheus.NewRegistry()
	registry.MustRegister(NewCollector())
	for i := 0; i < b.N; i++ {
		if _, err := registry.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGatherOneGauge is the baseline: client_golang's own cost of a
// scrape, with one plain gauge registered.
func BenchmarkGatherOneGauge(b *testing.B) {
	registry := prometheus.NewRegistry()
	registry.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "baseline", Help: "baseline"}))
	for i := 0; i < b.N; i++ {
		if _, err := registry.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
