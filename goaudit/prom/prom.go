// Package prom exports the C heap of a Go program as Prometheus metrics,
// read from the cgo-audit shim at scrape time:
//
//	prometheus.MustRegister(prom.NewCollector())
//	http.Handle("/metrics", promhttp.Handler())
//
//	cgo_audit_shim_active                   1 when the shim counts this process (started under it or attached)
//	cgo_audit_c_heap_live_bytes             bytes allocated and not yet freed
//	cgo_audit_c_heap_live_blocks            blocks allocated and not yet freed
//	cgo_audit_c_heap_peak_bytes             the live C heap's high-water mark so far
//	cgo_audit_c_heap_allocated_bytes_total  bytes allocated since the shim started counting
//	cgo_audit_c_heap_freed_bytes_total      bytes freed since then
//	cgo_audit_c_heap_allocations_total      blocks allocated since then
//	cgo_audit_c_heap_frees_total            blocks freed since then
//
// The names, and their pid and program labels, are those cgo-audit run,
// watch and attach serve on --metrics-addr, so the alert rules in
// deploy/prometheus/ read either source. As there, the figures leave out
// the blocks glibc makes for each new thread inside pthread_create: they
// live as long as the runtime's threads, not the program's data. Live =
// allocated - freed, exactly. (The peak is the shim's running high-water
// mark, taken with those blocks, as cgo-audit run reports it.)
//
// Without the shim only cgo_audit_shim_active (0) is exported: the C heap is
// then not measured, which is not the same as empty.
//
// The collector does nothing between scrapes (no goroutine, no timer); a
// scrape sums the shim's thread slots (at most 512), a few microseconds.
//
// This is a module of its own (github.com/cgo-audit/cgo-audit/goaudit/prom)
// so that github.com/prometheus/client_golang and its dependencies come only
// to programs that want the metrics, not to every user of leakcheck. It
// requires the oldest client_golang it works with (v1.22.0, go 1.22): a
// program that has a newer one keeps its own.
package prom

import (
	"os"
	"path/filepath"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cgo-audit/cgo-audit/goaudit/internal/shimregion"
)

type collector struct {
	active, liveBytes, liveBlocks, peakBytes, allocBytes, freeBytes, allocs, frees *prometheus.Desc
	pid, program                                                                   string
}

// NewCollector returns a collector of the process's C heap.
func NewCollector() prometheus.Collector {
	labels := []string{"pid", "program"}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	program := "?"
	if len(os.Args) > 0 {
		program = filepath.Base(os.Args[0])
	}
	return &collector{
		active:     desc("cgo_audit_shim_active", "1 when the cgo-audit shim counts this process's C heap"),
		liveBytes:  desc("cgo_audit_c_heap_live_bytes", "C heap bytes allocated and not yet freed (counted by the shim)"),
		liveBlocks: desc("cgo_audit_c_heap_live_blocks", "C heap blocks allocated and not yet freed"),
		peakBytes:  desc("cgo_audit_c_heap_peak_bytes", "The C heap's highest live bytes so far"),
		allocBytes: desc("cgo_audit_c_heap_allocated_bytes_total", "C heap bytes allocated since the shim started counting"),
		freeBytes:  desc("cgo_audit_c_heap_freed_bytes_total", "C heap bytes freed since the shim started counting"),
		allocs:     desc("cgo_audit_c_heap_allocations_total", "C heap blocks allocated since the shim started counting"),
		frees:      desc("cgo_audit_c_heap_frees_total", "C heap blocks freed since the shim started counting"),
		pid:        strconv.Itoa(os.Getpid()),
		program:    program,
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.active, c.liveBytes, c.liveBlocks, c.peakBytes, c.allocBytes, c.freeBytes, c.allocs, c.frees} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	shim, err := shimregion.Find()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, 0, c.pid, c.program)
		return
	}
	t := shim.Totals()
	allocs, frees := t.Allocs-t.ThreadStartAllocs, t.Frees-t.ThreadStartFrees
	allocBytes, freeBytes := t.AllocBytes-t.ThreadStartAllocBytes, t.FreeBytes-t.ThreadStartFreeBytes
	for _, m := range []struct {
		desc  *prometheus.Desc
		kind  prometheus.ValueType
		value float64
	}{
		{c.active, prometheus.GaugeValue, 1},
		{c.liveBytes, prometheus.GaugeValue, float64(int64(allocBytes - freeBytes))},
		{c.liveBlocks, prometheus.GaugeValue, float64(int64(allocs - frees))},
		{c.peakBytes, prometheus.GaugeValue, float64(shim.Header().PeakLiveBytes)},
		{c.allocBytes, prometheus.CounterValue, float64(allocBytes)},
		{c.freeBytes, prometheus.CounterValue, float64(freeBytes)},
		{c.allocs, prometheus.CounterValue, float64(allocs)},
		{c.frees, prometheus.CounterValue, float64(frees)},
	} {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value, c.pid, c.program)
	}
}
