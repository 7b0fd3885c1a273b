package cheap

import (
	"reflect"
	"testing"
)

func named(function, file string, line int64, pc uintptr) shownFrame {
	f := frame{function: function, file: file, line: line, goCode: file != "" && file[len(file)-3:] == ".go"}
	f.trampoline = isTrampoline(function)
	if f.trampoline {
		f.cgoCall, f.cgoGoSide, _ = cgoName(function)
	}
	return shownFrame{frame: f, pc: pc}
}

type shown struct {
	function, file string
	line           int64
}

func summary(frames []shownFrame) []shown {
	var out []shown
	for _, f := range frames {
		out = append(out, shown{f.function, f.file, f.line})
	}
	return out
}

// C.CString as the shim records it: malloc's caller is cgo's C wrapper, then
// the runtime's cgo call, then the generated Go wrappers, then the user.
func TestFoldCString(t *testing.T) {
	stack := []shownFrame{
		named("_cgo_0123abcd_Cfunc__Cmalloc", "", 0, 0x10),
		named("runtime.asmcgocall.abi0", "asm_amd64.s", 900, 0x20),
		named("runtime.cgocall", "cgocall.go", 185, 0x30),
		named("example.com/m/cstring._cgo_cmalloc", "_cgo_gotypes.go", 60, 0x40),
		named("example.com/m/cstring._Cfunc_CString", "_cgo_gotypes.go", 40, 0x50),
		named("example.com/m/cstring.GetValueLeaky", "getvalue.go", 35, 0x60),
		named("main.main", "main.go", 12, 0x70),
	}
	got := summary(fold(stack, nil))
	want := []shown{
		{"C.CString", "getvalue.go", 35},
		{"example.com/m/cstring.GetValueLeaky", "getvalue.go", 35},
		{"main.main", "main.go", 12},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

// A C function of the user's that mallocs keeps its own frame under the
// folded call; an unnamed frame (a library's static function) stays.
func TestFoldUserCFunction(t *testing.T) {
	stack := []shownFrame{
		{pc: 0x5},
		named("make_buffer", "", 0, 0x10),
		named("_cgo_0123abcd_Cfunc_make_buffer", "", 0, 0x18),
		named("runtime.asmcgocall.abi0", "asm_amd64.s", 900, 0x20),
		named("runtime.cgocall", "cgocall.go", 185, 0x30),
		named("example.com/m/buf._Cfunc_make_buffer", "_cgo_gotypes.go", 40, 0x50),
		named("example.com/m/buf.New", "buf.go", 21, 0x60),
	}
	got := summary(fold(stack, nil))
	want := []shown{
		{"", "", 0},
		{"make_buffer", "", 0},
		{"C.make_buffer", "buf.go", 21},
		{"example.com/m/buf.New", "buf.go", 21},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

func TestScaleLikeGo(t *testing.T) {
	if c, s := scale(3, 78, 1); c != 3 || s != 78 {
		t.Fatalf("every allocation counted: got %d, %d", c, s)
	}
	// One sampled 512 KiB block at a 512 KiB rate stands for 1/(1-e^-1) of them.
	if c, s := scale(1, 512<<10, 512<<10); c != 1 || s != 829411 {
		t.Fatalf("sampled: got %d, %d", c, s)
	}
}
