package cheap

// Turning the shim's return addresses into frames, in-process: Go code
// through the runtime's own tables (runtime.CallersFrames, which expands
// inlined calls), C code of the executable through its ELF symbol table, C
// code of shared libraries through their exported symbols (dladdr). Every
// location keeps its address and mapping, so an offline pprof can still look
// further (pprof -symbolize=force).

import (
	"bufio"
	"debug/elf"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// frame is one source-level frame. A return address expands to several
// when calls were inlined into it (innermost first).
type frame struct {
	function string // "" when unknown
	file     string
	line     int64
	goCode   bool
	// Classified once, when the frame is first named (see fold.go).
	trampoline bool
	cgoCall    string // C.<name> for a trampoline that names its C function
	cgoGoSide  bool
}

// procMapping is one executable mapping of /proc/self/maps.
type procMapping struct {
	start, limit, offset uint64
	path                 string
}

func (m *procMapping) contains(pc uintptr) bool {
	return uint64(pc) >= m.start && uint64(pc) < m.limit
}

// readMaps lists the executable mappings that have a file behind them.
func readMaps() []procMapping {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []procMapping
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		// 00400000-0086c000 r-xp 00000000 08:01 1234   /path/to/exe
		fields := strings.Fields(scanner.Text())
		if len(fields) < 6 || !strings.Contains(fields[1], "x") || !strings.HasPrefix(fields[5], "/") {
			continue
		}
		bounds := strings.SplitN(fields[0], "-", 2)
		if len(bounds) != 2 {
			continue
		}
		start, err1 := strconv.ParseUint(bounds[0], 16, 64)
		limit, err2 := strconv.ParseUint(bounds[1], 16, 64)
		offset, err3 := strconv.ParseUint(fields[2], 16, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		out = append(out, procMapping{start, limit, offset, strings.Join(fields[5:], " ")})
	}
	return out
}

// symbolCache keeps what each return address expands to; it only grows, as
// far as the program has distinct allocation sites.
var symbolCache struct {
	sync.Mutex
	frames map[uintptr][]frame
}

// framesOf expands pc, a return address. exe is the executable's mapping
// (nil if unknown); C frames outside it are left to pprof (nil result).
func framesOf(pc uintptr, exe *procMapping) []frame {
	if found, ok := symbolCache.frames[pc]; ok {
		return found
	}
	var out []frame
	if runtime.FuncForPC(pc-1) != nil {
		frames := runtime.CallersFrames([]uintptr{pc})
		for {
			f, more := frames.Next()
			if f.Function != "" {
				out = append(out, frame{function: f.Function, file: f.File, line: int64(f.Line), goCode: true})
			}
			if !more {
				break
			}
		}
	} else if exe != nil && exe.contains(pc) {
		if name := exeSymbols.lookup(pc-1, exe); name != "" {
			out = []frame{{function: name}}
		}
	} else if name := librarySymbol(pc - 1); name != "" {
		out = []frame{{function: name}}
	}
	for i := range out {
		f := &out[i]
		f.trampoline = isTrampoline(f.function)
		if f.trampoline {
			f.cgoCall, f.cgoGoSide, _ = cgoName(f.function)
		}
	}
	if symbolCache.frames == nil {
		symbolCache.frames = map[uintptr][]frame{}
	}
	symbolCache.frames[pc] = out
	return out
}

// cClone matches GCC's clones of a C function (foo.constprop.0, foo.cold).
var cClone = regexp.MustCompile(`^[A-Za-z_]\w*\.(constprop|isra|part|cold|lto_priv|localalias)(\.\d+)*$`)

// exeSymbols: the C functions of the executable (the file with this
// package's code), read once, when a C frame there first needs a name.
var exeSymbols cSymbols

type cSymbol struct {
	start, end uint64 // file addresses
	name       string
}

type cSymbols struct {
	once    sync.Once
	symbols []cSymbol
	loads   []elf.ProgHeader
}

// load reads the symbols of the file that holds this package's code: the
// executable, or the shared library a Go program built with
// -buildmode=c-shared is (then /proc/self/exe is its host, not it).
func (c *cSymbols) load(exe *procMapping) {
	path := exe.path
	if self, err := os.Executable(); err == nil && self == path {
		path = "/proc/self/exe" // still there if the file was replaced on disk
	}
	f, err := elf.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			c.loads = append(c.loads, p.ProgHeader)
		}
	}
	symbols, err := f.Symbols()
	if err != nil {
		return
	}
	for _, s := range symbols {
		// Go's functions are named by the runtime (pkg.Func): keep the C
		// ones, whose names hold a dot only as a GCC clone's suffix.
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value == 0 ||
			strings.Contains(s.Name, ".") && !cClone.MatchString(s.Name) {
			continue
		}
		size := s.Size
		if size == 0 {
			size = 1
		}
		c.symbols = append(c.symbols, cSymbol{s.Value, s.Value + size, s.Name})
	}
	sort.Slice(c.symbols, func(i, j int) bool { return c.symbols[i].start < c.symbols[j].start })
}

// lookup names the C function at pc (an address in the call), or "".
func (c *cSymbols) lookup(pc uintptr, exe *procMapping) string {
	c.once.Do(func() { c.load(exe) })
	offset := uint64(pc) - exe.start + exe.offset
	address := offset
	for _, p := range c.loads {
		if offset >= p.Off && offset < p.Off+p.Filesz {
			address = offset - p.Off + p.Vaddr
			break
		}
	}
	i := sort.Search(len(c.symbols), func(i int) bool { return c.symbols[i].start > address }) - 1
	if i >= 0 && address < c.symbols[i].end {
		return c.symbols[i].name
	}
	return ""
}
