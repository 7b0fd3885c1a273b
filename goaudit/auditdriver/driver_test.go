package auditdriver

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// A result JSON cannot carry is answered as that call's error; the driver
// stays up for the next request.
func TestUnencodableResultIsAnErrorNotTheEnd(t *testing.T) {
	Register("test.Inf", func(json.RawMessage) (interface{}, error) { return math.Inf(1), nil })
	Register("test.One", func(json.RawMessage) (interface{}, error) { return 1, nil })
	in := strings.NewReader(`{"id": 1, "op": "call", "func": "test.Inf"}` + "\n" +
		`{"id": 2, "op": "call", "func": "test.One"}` + "\n")
	var out bytes.Buffer
	if err := Serve(in, &out); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	var answers []response
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var r response
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("answer %q: %v", line, err)
		}
		answers = append(answers, r)
	}
	if len(answers) != 2 {
		t.Fatalf("got %d answers, want 2: %s", len(answers), out.String())
	}
	if a := answers[0]; a.ID != 1 || a.Calls != 1 || a.Result != nil ||
		a.Error != "result: json: unsupported value: +Inf" {
		t.Errorf("answer to the +Inf call: %+v", a)
	}
	if a := answers[1]; a.ID != 2 || !a.OK || a.Result != float64(1) || a.Error != "" {
		t.Errorf("answer to the next call: %+v", a)
	}
}
