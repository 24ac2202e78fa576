package logs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qtenclave/enclave/init/vsock"
	"github.com/qtenclave/enclave/proto/logstream"
)

// parent is a unix-socket stand-in for the parent's end: it reads the
// stream with the real reader and closes its side after EOF (the
// acknowledgement), unless stall is set.
type parent struct {
	t       *testing.T
	path    string
	stall   bool // read nothing
	mu      sync.Mutex
	records []string
	acked   chan struct{}
}

func newParent(t *testing.T, stall bool) *parent {
	p := &parent{t: t, path: filepath.Join(t.TempDir(), "p.sock"), stall: stall, acked: make(chan struct{})}
	l, err := net.Listen("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer close(p.acked)
		defer c.Close()
		if p.stall {
			time.Sleep(2 * time.Second)
			return
		}
		r := logstream.NewReader(c)
		for {
			rec, err := r.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					p.add("error|" + err.Error())
				}
				return
			}
			p.add(rec.Source.String() + "|" + string(rec.Text))
		}
	}()
	return p
}

func (p *parent) add(s string) {
	p.mu.Lock()
	p.records = append(p.records, s)
	p.mu.Unlock()
}

func (p *parent) got() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.records...)
}

func (p *parent) Dial(ctx context.Context, cid, port uint32) (vsock.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", p.path)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestPendingThenPipes: lines from before Connect arrive first, a pipe's
// lines follow, and Close returns once the parent has read everything.
func TestPendingThenPipes(t *testing.T) {
	p := newParent(t, false)
	var con lockedBuf
	s := New(&con)
	s.Line(logstream.Init, "init: one")
	s.Line(logstream.Agent, "qtsm-agent: two")
	if err := s.Connect(context.Background(), p, 3, 9002); err != nil {
		t.Fatal(err)
	}
	w, err := s.Pipe(logstream.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "a\nb\nc")
	w.Close()
	if !s.Drain(2 * time.Second) {
		t.Fatal("Drain = false, want the reader ended")
	}
	s.Line(logstream.Init, "init: last")
	if err := s.Close(time.Second); err != nil {
		t.Fatalf("Close = %v", err)
	}
	want := []string{"init|init: one", "agent|qtsm-agent: two", "stdout|a", "stdout|b", "stdout|c", "init|init: last"}
	if got := p.got(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("parent read %q, want %q", got, want)
	}
	if con.String() != "" {
		t.Errorf("console got %q, want nothing", con.String())
	}
	// Off now: the workload's lines go to the console, init's nowhere.
	s.Line(logstream.Stdout, "late")
	s.Line(logstream.Init, "init: late")
	if con.String() != "late\n" {
		t.Errorf("console after Close = %q, want %q", con.String(), "late\n")
	}
}

// TestStalledParent: a parent that stops reading turns the stream off
// after the write timeout; the workload's output then reaches the console
// and nothing blocks for longer.
func TestStalledParent(t *testing.T) {
	p := newParent(t, true)
	var con lockedBuf
	var warned []string
	s := New(&con)
	s.WriteTimeout = 200 * time.Millisecond
	s.Warnf = func(f string, a ...any) { warned = append(warned, f) }
	if err := s.Connect(context.Background(), p, 3, 9002); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("y", logstream.MaxText-1)
	start := time.Now()
	for i := 0; i < 200 && s.Connected(); i++ { // far more than any socket buffer
		s.Line(logstream.Stdout, big)
	}
	if s.Connected() {
		t.Fatal("stream still connected after 3 MiB to a parent that reads nothing")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v to give up, want about the write timeout", d)
	}
	s.Line(logstream.Stderr, "after")
	if !strings.HasSuffix(con.String(), "after\n") {
		t.Errorf("console does not end with the line written after the failure: %.80q", con.String())
	}
	if len(warned) != 1 {
		t.Errorf("warnings = %q, want one", warned)
	}
}

// TestPendingBound: what is kept before the connection is bounded; the
// parent is told how many lines were dropped.
func TestPendingBound(t *testing.T) {
	p := newParent(t, false)
	s := New(nil)
	line := strings.Repeat("z", 1000)
	for range 100 { // 100 KB > MaxPending
		s.Line(logstream.Init, line)
	}
	if err := s.Connect(context.Background(), p, 3, 9002); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(time.Second); err != nil {
		t.Fatal(err)
	}
	got := p.got()
	if n := len(got); n < 60 || n > 66 {
		t.Errorf("%d records, want the lines that fit in %d bytes and a warning", n, MaxPending)
	}
	if l := got[len(got)-1]; !strings.Contains(l, "early line(s) not kept") {
		t.Errorf("last record = %.80q, want the dropped-lines warning", l)
	}
}

// TestDisable: a stream turned off before connecting keeps nothing and
// sends the workload's lines to the console.
func TestDisable(t *testing.T) {
	var con lockedBuf
	s := New(&con)
	s.Line(logstream.Init, "init: x")
	s.Disable()
	s.Line(logstream.Stdout, "out")
	if con.String() != "out\n" || s.Connected() {
		t.Errorf("console = %q connected = %v, want \"out\\n\" false", con.String(), s.Connected())
	}
	if err := s.Close(0); err != nil {
		t.Errorf("Close of a stream that is off = %v", err)
	}
}
