// Package cheap serves the C heap of a Go program as a pprof heap profile,
// the way net/http/pprof serves the Go heap: one line links it,
//
//	mux.Handle("/debug/cgo-audit/heap", cheap.Handler())
//
// and go tool pprof, Parca or Pyroscope read it like /debug/pprof/heap:
//
//	go tool pprof http://127.0.0.1:6060/debug/cgo-audit/heap
//	go tool pprof http://127.0.0.1:6060/debug/cgo-audit/heap?seconds=600   # what grew in 10 minutes
//
// The figures come from the cgo-audit shim, which counts every malloc, free
// and realloc of the process and keeps, per allocation stack, the bytes and
// blocks still live and allocated in all. So the process must run under it,
// started so or attached later:
//
//	CGO_AUDIT_STACKS=all CGO_AUDIT_GO_LAYOUT=... LD_PRELOAD=$(cgo-audit build-shim) ./service
//	cgo-audit attach PID
//
// (cgo-audit run and attach set those variables; CGO_AUDIT_GO_LAYOUT lets the
// shim walk the goroutine's stack across the cgo call: without it a stack
// holds only malloc's caller.) Otherwise the handler answers 503 Service
// Unavailable and says why in the body.
//
// The profile has the sample types of Go's heap profile: alloc_objects,
// alloc_space, inuse_objects, inuse_space (the default). Go frames are named
// in-process from the runtime's tables; the cgo call machinery between Go and
// C (runtime.cgocall, _Cfunc_ wrappers) is folded into one frame named like
// the call in the source, C.CString or C.get_value, at the Go line that makes
// it. C functions are named from the executable's symbol table and, in
// shared libraries, from their exported symbols (dladdr); every location
// keeps its address and mapping (from /proc/self/maps), so that
// pprof -symbolize=force can name every frame again from the files (a
// library's debug info included, the folding lost).
//
// ?seconds=N answers after N seconds with the difference between the heap
// then and now (a delta profile, as /debug/pprof/heap?seconds=N does): what
// the service leaks while it runs, with days of steady state left out.
//
// Cost: nothing until a request comes (no goroutine, no timer, no sampling
// of its own: the shim counts anyway). A scrape reads the shim's stack table
// (at most 16384 stacks, whatever the number of live blocks) and names each
// distinct return address once for the life of the process; see
// docs/go-helpers.md for the measured figures.
//
// Dependencies: the standard library only. The profile.proto encoding is a
// few functions (proto.go), like runtime/pprof's own, rather than
// github.com/google/pprof/profile, whose module requires the newest Go
// toolchain and would be imposed on every program that links this.
package cheap

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cgo-audit/cgo-audit/goaudit/internal/shimregion"
)

// Handler serves the live C heap as a gzipped pprof profile.
func Handler() http.Handler {
	return handler{}
}

type handler struct{}

func (handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	var window time.Duration
	if text := r.FormValue("seconds"); text != "" {
		seconds, err := strconv.ParseInt(text, 10, 64)
		if err != nil || seconds <= 0 {
			fail(w, http.StatusBadRequest, "bad seconds: want a positive whole number of seconds, got %q", text)
			return
		}
		window = time.Duration(seconds) * time.Second
		if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok && srv.WriteTimeout > 0 &&
			window >= srv.WriteTimeout {
			fail(w, http.StatusBadRequest, "profile duration exceeds the server's WriteTimeout (%s)", srv.WriteTimeout)
			return
		}
	}
	shim, err := shimregion.Find()
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "cgo-audit heap profile: %v", err)
		return
	}
	header := shim.Header()
	if header.StackMode == shimregion.StacksOff {
		fail(w, http.StatusServiceUnavailable, "cgo-audit heap profile: the shim in this process records no "+
			"allocation stacks: start it with CGO_AUDIT_STACKS=all (or sampled), as cgo-audit run does")
		return
	}
	var before []figures
	start := time.Now()
	if window > 0 {
		before = takeFigures(shim)
		if !waitWindow(r.Context(), window) {
			return // the client went away
		}
		header = shim.Header() // its counts of dropped stacks, as of now
	}
	p := build(shim, header, before, start, window > 0)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="cgo-audit-heap"`)
	w.Write(p.gzipped())
}

func fail(w http.ResponseWriter, status int, format string, args ...interface{}) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, format+"\n", args...)
}

// waitWindow is the delta profile's wait, a function of its own so that a
// goroutine dump shows a scrape in progress. False: the request was dropped.
//
//go:noinline
func waitWindow(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// figures of one stack at one moment.
type figures struct {
	liveBytes, liveBlocks, allocBytes, allocBlocks int64
}

func takeFigures(shim *shimregion.Shim) []figures {
	stacks := shim.Stacks(nil)
	out := make([]figures, len(stacks))
	for i, s := range stacks {
		out[i] = figures{s.LiveBytes, s.LiveBlocks, int64(s.AllocBytes), int64(s.AllocBlocks)}
	}
	return out
}

// state is what scrapes keep for the next ones: how each stack of the
// shim's table folds into locations, and those locations' frames. A stack's
// frames never change once the shim has stored them, so each is expanded
// once for the life of the process. One scrape at a time builds.
var state struct {
	sync.Mutex
	stacks    []cachedStack // by stack index
	locs      []globalLoc   // every location met so far
	locIndex  map[locKey]int
	funcs     []frame // every function met (name and file)
	funcIndex map[[2]string]int
	stackBuf  []shimregion.Stack
	expanded  []shownFrame // scratch space of expandStack
	shown     []shownFrame
}

// cachedStack is a stack's locations (indexes into state.locs), innermost
// first, and the shim's hash of its frames: a shim attached again starts its
// table over, and an index may then hold another stack.
type cachedStack struct {
	hash uint64
	locs []int
}

type globalLoc struct {
	pc    uintptr
	lines []line // function indexes into state.funcs (0-based, +1 in the profile), innermost first
}

// exeText is an address in this executable's code, to find its mapping.
var exeText = reflect.ValueOf(readMaps).Pointer()

func build(shim *shimregion.Shim, header shimregion.Header, before []figures, start time.Time, delta bool) *profile {
	state.Lock()
	defer state.Unlock()
	maps := readMaps()
	sort.Slice(maps, func(i, j int) bool { return maps[i].start < maps[j].start })
	var exe *procMapping
	for i := range maps {
		if maps[i].contains(exeText) {
			exe = &maps[i]
		}
	}
	symbolCache.Lock()
	defer symbolCache.Unlock()

	b := newBuilder()
	p := b.p
	for _, st := range []string{"alloc_objects", "alloc_space", "inuse_objects", "inuse_space"} {
		unit := "count"
		if strings.HasSuffix(st, "_space") {
			unit = "bytes"
		}
		p.sampleTypes = append(p.sampleTypes, valueType{b.str(st), b.str(unit)})
	}
	p.defaultType = b.str("inuse_space")
	p.periodType = valueType{b.str("space"), b.str("bytes")}
	p.period = 1
	if header.StackMode == shimregion.StacksSampled && header.SamplePeriod > 0 {
		p.period = int64(header.SamplePeriod)
	}
	now := time.Now()
	p.timeNanos = now.UnixNano()
	if delta {
		p.timeNanos = start.UnixNano()
		p.durationNanos = now.Sub(start).Nanoseconds()
	}
	what := "C heap (cgo-audit shim)"
	if delta {
		what = fmt.Sprintf("C heap growth over %s (cgo-audit shim)", now.Sub(start).Round(time.Millisecond))
	}
	p.comments = append(p.comments, b.str(what))
	if !header.GoFrames {
		p.comments = append(p.comments, b.str("no Go frames: the shim was not given the Go runtime's layout "+
			"(CGO_AUDIT_GO_LAYOUT, which cgo-audit run and attach set); stacks end at malloc's caller"))
	}
	if header.StacksDropped > 0 {
		p.comments = append(p.comments, b.str(fmt.Sprintf("%d allocations had no room in the shim's stack table "+
			"and are not in this profile", header.StacksDropped)))
	}

	state.stackBuf = shim.Stacks(state.stackBuf)
	for i, st := range state.stackBuf {
		f := figures{st.LiveBytes, st.LiveBlocks, int64(st.AllocBytes), int64(st.AllocBlocks)}
		if delta {
			var old figures
			if i < len(before) {
				old = before[i]
			}
			f = figures{f.liveBytes - old.liveBytes, f.liveBlocks - old.liveBlocks,
				f.allocBytes - old.allocBytes, f.allocBlocks - old.allocBlocks}
		}
		if f == (figures{}) {
			continue
		}
		allocObjects, allocSpace := scale(f.allocBlocks, f.allocBytes, p.period)
		inuseObjects, inuseSpace := scale(f.liveBlocks, f.liveBytes, p.period)
		p.samples = append(p.samples, sample{
			locations: b.stackLocations(i, st, exe, maps),
			values:    []int64{allocObjects, allocSpace, inuseObjects, inuseSpace},
		})
	}
	return p
}

// scale estimates true figures from sampled ones, as Go's heap profile does
// (runtime/pprof scaleHeapSample); period 1 means every allocation counted.
func scale(count, size, period int64) (int64, int64) {
	if count == 0 || size == 0 || period <= 1 {
		return count, size
	}
	avg := float64(size) / float64(count)
	s := 1 / (1 - math.Exp(-avg/float64(period)))
	return int64(float64(count) * s), int64(float64(size) * s)
}

// builder assembles one profile from the global caches.
type builder struct {
	p        *profile
	strings  map[string]int64
	locID    map[int]uint64 // global location -> profile id
	funcID   map[int]uint64
	mapID    map[int]uint64 // index in maps -> profile id
	exeFirst bool
}

func newBuilder() *builder {
	b := &builder{p: &profile{}, strings: map[string]int64{}, locID: map[int]uint64{}, funcID: map[int]uint64{},
		mapID: map[int]uint64{}}
	b.str("")
	return b
}

func (b *builder) str(s string) int64 {
	if id, ok := b.strings[s]; ok {
		return id
	}
	id := int64(len(b.p.strings))
	b.p.strings = append(b.p.strings, s)
	b.strings[s] = id
	return id
}

// stackLocations is the profile's location ids for stack i, innermost first.
func (b *builder) stackLocations(i int, st shimregion.Stack, exe *procMapping, maps []procMapping) []uint64 {
	for len(state.stacks) <= i {
		state.stacks = append(state.stacks, cachedStack{})
	}
	cached := &state.stacks[i]
	if cached.locs == nil || cached.hash != st.Hash {
		*cached = cachedStack{st.Hash, expandStack(st, exe)}
	}
	ids := make([]uint64, 0, len(cached.locs))
	for _, g := range cached.locs {
		id, ok := b.locID[g]
		if !ok {
			id = uint64(len(b.p.locations) + 1)
			b.locID[g] = id
			loc := state.locs[g]
			out := location{id: id, address: uint64(loc.pc), mapping: b.mappingOf(loc.pc, exe, maps)}
			for _, ln := range loc.lines {
				out.lines = append(out.lines, line{function: b.function(int(ln.function)), line: ln.line})
			}
			b.p.locations = append(b.p.locations, out)
		}
		ids = append(ids, id)
	}
	return ids
}

func (b *builder) function(g int) uint64 {
	if id, ok := b.funcID[g]; ok {
		return id
	}
	id := uint64(len(b.p.functions) + 1)
	b.funcID[g] = id
	f := state.funcs[g]
	name := b.str(f.function)
	b.p.functions = append(b.p.functions, function{id: id, name: name, systemName: name, file: b.str(f.file)})
	return id
}

// mappingOf gives the location's mapping a profile id; the executable's
// comes first, as pprof takes the first mapping for the main binary.
func (b *builder) mappingOf(pc uintptr, exe *procMapping, maps []procMapping) uint64 {
	if !b.exeFirst && exe != nil {
		b.exeFirst = true
		for i := range maps {
			if &maps[i] == exe {
				b.addMapping(i, maps)
			}
		}
	}
	i := sort.Search(len(maps), func(i int) bool { return maps[i].limit > uint64(pc) })
	if i == len(maps) || !maps[i].contains(pc) {
		return 0
	}
	if id, ok := b.mapID[i]; ok {
		return id
	}
	return b.addMapping(i, maps)
}

func (b *builder) addMapping(i int, maps []procMapping) uint64 {
	m := maps[i]
	id := uint64(len(b.p.mappings) + 1)
	b.mapID[i] = id
	// Every location is named here as far as it can be: a mapping left for
	// pprof to symbolize makes pprof ask the server for /symbolz beside the
	// profile, and a fetch from a URL fails when that is not served.
	b.p.mappings = append(b.p.mappings, mapping{id: id, start: m.start, limit: m.limit, offset: m.offset,
		file: b.str(m.path), hasFunctions: true})
	return id
}

// expandStack names and folds a stack once, interning its locations.
func expandStack(st shimregion.Stack, exe *procMapping) []int {
	pcs := st.Frames
	if st.GoStatement && len(pcs) > 0 {
		pcs = pcs[:len(pcs)-1] // where the goroutine was started: not a caller
	}
	expanded := state.expanded[:0]
	for _, pc := range pcs {
		frames := framesOf(pc, exe)
		if len(frames) == 0 {
			expanded = append(expanded, shownFrame{pc: pc})
			continue
		}
		for _, f := range frames {
			expanded = append(expanded, shownFrame{frame: f, pc: pc})
		}
	}
	shown := fold(expanded, state.shown[:0])
	state.expanded, state.shown = expanded, shown
	var out []int
	for start := 0; start < len(shown); {
		end := start + 1
		for end < len(shown) && shown[end].pc == shown[start].pc && shown[start].function != "" &&
			!shown[start].folded && !shown[end].folded {
			end++ // frames inlined at one return address share its location
		}
		out = append(out, internLocation(shown[start:end]))
		start = end
	}
	return out
}

// locKey tells locations apart: the frames of a return address are always
// the same, except the folded frame's, which takes the name of the call and
// the line of its caller.
type locKey struct {
	pc         uintptr
	fold, file string
	line       int64
}

func internLocation(frames []shownFrame) int {
	key := locKey{pc: frames[0].pc}
	if frames[0].folded {
		key.fold, key.file, key.line = frames[0].function, frames[0].file, frames[0].line
	}
	if state.locIndex == nil {
		state.locIndex, state.funcIndex = map[locKey]int{}, map[[2]string]int{}
	}
	if g, ok := state.locIndex[key]; ok {
		return g
	}
	loc := globalLoc{pc: frames[0].pc}
	for _, f := range frames {
		if f.function == "" {
			continue // unnamed: pprof shows its address in its mapping
		}
		fk := [2]string{f.function, f.file}
		fi, ok := state.funcIndex[fk]
		if !ok {
			fi = len(state.funcs)
			state.funcs = append(state.funcs, f.frame)
			state.funcIndex[fk] = fi
		}
		loc.lines = append(loc.lines, line{function: uint64(fi), line: f.line})
	}
	g := len(state.locs)
	state.locs = append(state.locs, loc)
	state.locIndex[key] = g
	return g
}
