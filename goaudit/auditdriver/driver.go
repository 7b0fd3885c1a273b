// Package auditdriver exposes Go functions to the cgo-audit harness over a
// line-oriented JSON protocol on stdin and stdout. The harness calls a
// function a known number of times under the shim, then reads the exact
// C-heap delta while the driver waits for its next request.
//
// A driver is a main package that registers functions and calls Main:
//
//	auditdriver.Register("GetValueLeaky", auditdriver.Strings(func(a map[string]string) (interface{}, error) {
//		return cstring.GetValueLeaky(a["file"], a["key"])
//	}))
//	auditdriver.Main()
//
// Requests (one JSON object per line):
//
//	{"id": 1, "op": "call", "func": "GetValueLeaky", "args": {"file": "...", "key": "..."}, "count": 1}
//	{"id": 2, "op": "settle"}   // GC until finalizers have run; answers with the Go side
//	{"id": 3, "op": "stats"}    // the Go side as it is, no GC
//	{"id": 4, "op": "list"}     // the registered function names
//	{"id": 5, "op": "exit"}
//
// Every request gets one answer line: {"id": .., "ok": true, ...}.
package auditdriver

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
)

// Func is a function the harness may call; args is the request's "args" as sent.
type Func func(args json.RawMessage) (interface{}, error)

var (
	mu       sync.Mutex
	registry = map[string]Func{}
)

// Register makes fn callable by name. Registering a name twice panics.
func Register(name string, fn Func) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[name]; dup {
		panic("auditdriver: " + name + " registered twice")
	}
	registry[name] = fn
}

// Strings adapts a function of named string arguments ({"file": "...", ...}).
func Strings(fn func(args map[string]string) (interface{}, error)) Func {
	return func(raw json.RawMessage) (interface{}, error) {
		args := map[string]string{}
		if len(raw) > 0 && string(raw) != "null" {
			if err := json.Unmarshal(raw, &args); err != nil {
				return nil, fmt.Errorf("args: %w", err)
			}
		}
		return fn(args)
	}
}

type request struct {
	ID    int64           `json:"id"`
	Op    string          `json:"op"`
	Func  string          `json:"func"`
	Args  json.RawMessage `json:"args"`
	Count int             `json:"count"`
}

type response struct {
	ID     int64             `json:"id"`
	OK     bool              `json:"ok"`
	Error  string            `json:"error,omitempty"`
	Result interface{}       `json:"result,omitempty"`
	Calls  int               `json:"calls,omitempty"`
	Errors int               `json:"errors,omitempty"`
	Go     map[string]uint64 `json:"go,omitempty"`
	Funcs  []string          `json:"funcs,omitempty"`
}

// call runs fn once; a panic becomes an error so the driver stays up.
func call(fn Func, args json.RawMessage) (result interface{}, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return fn(args)
}

func serveOne(req request) (response, bool) {
	resp := response{ID: req.ID, OK: true}
	switch req.Op {
	case "call":
		mu.Lock()
		fn := registry[req.Func]
		mu.Unlock()
		if fn == nil {
			return response{ID: req.ID, Error: "no function named " + req.Func}, false
		}
		count := req.Count
		if count <= 0 {
			count = 1
		}
		for i := 0; i < count; i++ {
			result, err := call(fn, req.Args)
			resp.Result = result
			resp.Calls++
			if err != nil {
				resp.Errors++
				resp.Error = err.Error()
			}
		}
	case "settle":
		resp.Go = driverSettle()
	case "stats":
		resp.Go = driverRead()
	case "list":
		mu.Lock()
		for name := range registry {
			resp.Funcs = append(resp.Funcs, name)
		}
		mu.Unlock()
		sort.Strings(resp.Funcs)
	case "exit":
		return resp, true
	default:
		return response{ID: req.ID, Error: "unknown op " + req.Op}, false
	}
	return resp, false
}

// Serve answers requests from in on out until "exit" or the end of in.
func Serve(in io.Reader, out io.Writer) error {
	lines := bufio.NewScanner(in)
	lines.Buffer(make([]byte, 1<<20), 512<<20)
	answers := json.NewEncoder(out)
	for lines.Scan() {
		var req request
		if err := json.Unmarshal(lines.Bytes(), &req); err != nil {
			if err := answers.Encode(response{Error: "bad request: " + err.Error()}); err != nil {
				return err
			}
			continue
		}
		resp, done := serveOne(req)
		if err := answers.Encode(resp); err != nil {
			// A result JSON cannot carry (+Inf, a channel) is the call's
			// problem, not the driver's: answer without it and stay up.
			var unsupported bool
			switch err.(type) {
			case *json.UnsupportedValueError, *json.UnsupportedTypeError, *json.MarshalerError:
				unsupported = true
			}
			if !unsupported {
				return err
			}
			resp.Result, resp.Error = nil, "result: "+err.Error()
			if err := answers.Encode(resp); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
	return lines.Err()
}

// Main serves stdin and stdout, then exits.
func Main() {
	if err := Serve(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "auditdriver:", err)
		os.Exit(1)
	}
}
