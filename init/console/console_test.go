package console

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/qtenclave/enclave/proto/logstream"
)

// writes records each Write call separately so tests can check that lines
// are never split across writes.
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

func TestLines(t *testing.T) {
	var w writes
	c := New(&w)
	c.Logf("step %s ok", "mounts")
	c.Warnf("no %s", "device")
	c.Errorf("bad")
	c.Debugf("hidden")
	c.SetDebug(true)
	c.Debugf("shown %d", 1)
	c.Line("qtenclave-exit: code=0 signal=0 reason=exited")
	c.Line("")
	want := []string{
		"init: step mounts ok\n",
		"init: warning: no device\n",
		"init: error: bad\n",
		"init: debug: shown 1\n",
		"qtenclave-exit: code=0 signal=0 reason=exited\n",
		"\n",
	}
	if strings.Join(w.w, "|") != strings.Join(want, "|") {
		t.Errorf("writes = %q, want %q", w.w, want)
	}
}

func TestPrefixWriter(t *testing.T) {
	var out bytes.Buffer
	c := New(&out)
	p := c.PrefixWriter("qtsm-agent: ", logstream.Agent)
	for _, s := range []string{"hel", "lo\nwor", "ld\r\n\nqtsm-agent: ", "own prefix\n", "tail"} {
		if n, err := p.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got, want := out.String(), "qtsm-agent: hello\nqtsm-agent: world\nqtsm-agent: \nqtsm-agent: own prefix\n"; got != want {
		t.Errorf("before Close = %q, want %q", got, want)
	}
	p.Close()
	if got, want := out.String(), "qtsm-agent: hello\nqtsm-agent: world\nqtsm-agent: \nqtsm-agent: own prefix\nqtsm-agent: tail\n"; got != want {
		t.Errorf("after Close = %q, want %q", got, want)
	}
}

func TestPrefixWriterLongLine(t *testing.T) {
	var out bytes.Buffer
	c := New(&out)
	p := c.PrefixWriter("> ", logstream.Agent)
	long := strings.Repeat("x", 2*MaxLine+10)
	p.Write([]byte(long + "\n"))
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("long line split into %d lines, want 3", len(lines))
	}
	total := 0
	for _, l := range lines {
		if !strings.HasPrefix(l, "> ") {
			t.Errorf("line %q lacks prefix", l)
		}
		if len(l) > MaxLine+2 {
			t.Errorf("line of %d bytes, want <= %d", len(l), MaxLine+2)
		}
		total += len(l) - 2
	}
	if total != len(long) {
		t.Errorf("total payload %d, want %d", total, len(long))
	}
}

func TestConcurrentLinesIntact(t *testing.T) {
	var w writes
	c := New(&w)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				c.Logf("goroutine line %d", j)
			}
		}()
	}
	wg.Wait()
	if len(w.w) != 400 {
		t.Fatalf("%d writes, want 400", len(w.w))
	}
	for _, s := range w.w {
		if !strings.HasPrefix(s, "init: goroutine line ") || !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
			t.Fatalf("write %q is not one whole line", s)
		}
	}
}

// TestMirror: every line also reaches the mirror, with its source, and the
// mirror may itself write console lines (it is called outside the lock).
func TestMirror(t *testing.T) {
	var w writes
	c := New(&w)
	var got []string
	c.SetMirror(func(src logstream.Source, line string) {
		got = append(got, src.String()+"|"+line)
		if line == "init: trigger" {
			c.Logf("warning from the mirror")
		}
	})
	c.Logf("trigger")
	p := c.PrefixWriter("qtsm-agent: ", logstream.Agent)
	p.Write([]byte("one\ntwo"))
	p.Close()
	want := []string{"init|init: trigger", "init|init: warning from the mirror", "agent|qtsm-agent: one", "agent|qtsm-agent: two"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("mirrored = %q, want %q", got, want)
	}
	if n := len(w.w); n != 4 {
		t.Errorf("%d console writes, want 4", n)
	}
}
