package cheap

// Folding the cgo call machinery into one frame named like the call in the
// source (C.CString, C.get_value), as cgo-audit's reports do
// (cgo_audit/verdicts/sites.py): between a Go function and the C code it calls sit
// runtime.cgocall, asmcgocall, the generated _Cfunc_ wrapper and its C twin,
// none of which the user wrote.

import "regexp"

var (
	goTrampoline = regexp.MustCompile(
		`^(runtime\.(cgocall|asmcgocall|asmcgocall_landingpad|systemstack|systemstack_switch|cgocallbackg1?|` +
			`cgocallback|cgoCheck\w*|unlockOSThread|lockOSThread)(\.abi0)?|.*\._cgo_cmalloc(\.abi0)?|` +
			`.*\._Cfunc_.*|.*\._cgoexp_.*|.*\._Cgo_.*)$`)
	cWrapper  = regexp.MustCompile(`^_cgo_[0-9a-f]+_C(?:2)?func_(\w+)$`)
	goCfunc   = regexp.MustCompile(`\._Cfunc_(\w+?)(?:\.abi0)?$`)
	cgoRename = map[string]string{"_CMalloc": "malloc", "_Cmalloc": "malloc"}
)

func isTrampoline(function string) bool {
	return goTrampoline.MatchString(function) || cWrapper.MatchString(function)
}

// cgoName is C.<name> for a trampoline that names the C function it calls,
// and whether it is the Go side (_Cfunc_X: what the user wrote).
func cgoName(function string) (string, bool, bool) {
	for _, p := range []struct {
		re     *regexp.Regexp
		goSide bool
	}{{goCfunc, true}, {cWrapper, false}} {
		if m := p.re.FindStringSubmatch(function); m != nil {
			name := m[1]
			if renamed, ok := cgoRename[name]; ok {
				name = renamed
			}
			return "C." + name, p.goSide, true
		}
	}
	return "", false, false
}

// shownFrame is a frame as the profile shows it, with the return address it
// came from.
type shownFrame struct {
	frame
	pc     uintptr
	folded bool // the frame that stands for a run of trampolines
}

// fold turns a stack's frames (expanded, innermost first) into what the
// profile shows: each run of trampolines becomes one frame, named after the
// C function called and placed at the line of the Go call. It appends to
// shown (scratch space) and returns it.
func fold(expanded, shown []shownFrame) []shownFrame {
	folding := false
	for _, f := range expanded {
		if f.trampoline {
			name, goSide, named := f.cgoCall, f.cgoGoSide, f.cgoCall != ""
			if !folding {
				shown = append(shown, shownFrame{frame: frame{function: "C.<call>", goCode: true}, pc: f.pc, folded: true})
				folding = true
			}
			last := &shown[len(shown)-1]
			if named && (last.function == "C.<call>" || goSide) {
				last.function = name
			}
			continue
		}
		if folding && f.goCode {
			// The call is where the Go caller wrote it.
			last := &shown[len(shown)-1]
			last.file, last.line = f.file, f.line
		}
		folding = false
		shown = append(shown, f)
	}
	return shown
}
