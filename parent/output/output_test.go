package output

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qtenclave/enclave/proto/logstream"
)

// writes keeps each Write separately.
type writes struct {
	mu sync.Mutex
	w  []string
}

func (w *writes) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.w = append(w.w, string(b))
	w.mu.Unlock()
	return len(b), nil
}

func (w *writes) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.w...)
}

func rec(src logstream.Source, text string, more bool) logstream.Record {
	return logstream.Record{Source: src, Text: []byte(text), More: more}
}

func TestRecords(t *testing.T) {
	for _, tc := range []struct {
		name     string
		showInit bool
		in       []logstream.Record
		want     []string
	}{
		{"workload prefixed", false, []logstream.Record{rec(logstream.Stdout, "a", false), rec(logstream.Stderr, "b", false)},
			[]string{"stdout: a\n", "stderr: b\n"}},
		{"init hidden", false, []logstream.Record{rec(logstream.Init, "init: x", false), rec(logstream.Agent, "qtsm-agent: y", false)}, nil},
		{"init shown as is", true, []logstream.Record{rec(logstream.Init, "init: x", false), rec(logstream.Agent, "qtsm-agent: y", false)},
			[]string{"init: x\n", "qtsm-agent: y\n"}},
		{"pieces joined, sources apart", false, []logstream.Record{
			rec(logstream.Stdout, "ab", true), rec(logstream.Stderr, "e", false), rec(logstream.Stdout, "cd", false)},
			[]string{"stderr: e\n", "stdout: abcd\n"}},
	} {
		var w writes
		p := New(&w, tc.showInit)
		for _, r := range tc.in {
			p.Record(r)
		}
		p.Flush()
		if got := w.all(); strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: printed %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestFlushPrintsUnfinished(t *testing.T) {
	var w writes
	p := New(&w, false)
	p.Record(rec(logstream.Stdout, "cut", true))
	p.Flush()
	if got := w.all(); len(got) != 1 || got[0] != "stdout: cut\n" {
		t.Errorf("printed %q, want the unfinished line", got)
	}
}

// TestConsoleLinesStayWhole: a record printed while the console is in the
// middle of a line comes before or after that line, never inside it.
func TestConsoleLinesStayWhole(t *testing.T) {
	var w writes
	p := New(&w, false)
	c := p.Console()
	c.Write([]byte("[    1.8] clocksource: Switched"))
	p.Record(rec(logstream.Stdout, "demo: attestation ...", false))
	c.Write([]byte(" to clocksource tsc\r\nnext"))
	c.Close()
	want := []string{"stdout: demo: attestation ...\n", "[    1.8] clocksource: Switched to clocksource tsc\r\n", "next"}
	if got := w.all(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("printed %q, want %q", got, want)
	}
}

func TestConsolePartialFlushedAfterIdle(t *testing.T) {
	var w writes
	p := New(&w, false)
	c := p.Console()
	defer c.Close()
	c.Write([]byte("login: "))
	deadline := time.Now().Add(5 * time.Second)
	for len(w.all()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := w.all(); len(got) != 1 || got[0] != "login: " {
		t.Errorf("printed %q, want the partial line after %v", got, FlushAfter)
	}
}
