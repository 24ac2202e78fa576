// Package output is what the parent prints of an enclave: the serial
// console and the log stream (proto/logstream), interleaved on one writer
// with every line in one write, so that neither can split a line of the
// other.
//
// Workload lines are printed with their source as prefix ("stdout: ",
// "stderr: "). init's and the agent's lines already carry theirs ("init: ",
// "qtsm-agent: ") and are printed as they are, when ShowInit is set: a
// parent that also prints the console would otherwise show them twice.
package output

import (
	"bytes"
	"io"
	"sync"
	"time"

	"github.com/qtenclave/enclave/proto/logstream"
)

// MaxLine bounds a line joined from a stream's pieces; a longer line is
// printed in parts of that size.
const MaxLine = 1 << 20

// FlushAfter is how long a partial console line waits for its end before
// it is printed as it is (a prompt, or a kernel message cut short).
const FlushAfter = 200 * time.Millisecond

// Printer writes whole lines to W.
type Printer struct {
	W io.Writer
	// ShowInit prints init's and the agent's records (set when the console
	// is not printed to W as well).
	ShowInit bool

	mu      sync.Mutex
	partial map[logstream.Source][]byte
}

// New returns a printer to w.
func New(w io.Writer, showInit bool) *Printer { return &Printer{W: w, ShowInit: showInit} }

func (p *Printer) write(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = p.W.Write(b)
}

// Prefix is what a record of src is printed after ("" for init's and the
// agent's, whose lines carry their own).
func Prefix(src logstream.Source) string {
	switch src {
	case logstream.Stdout:
		return "stdout: "
	case logstream.Stderr:
		return "stderr: "
	}
	return ""
}

// Record prints r, joining a line's pieces first.
func (p *Printer) Record(r logstream.Record) {
	if (r.Source == logstream.Init || r.Source == logstream.Agent) && !p.ShowInit {
		return
	}
	p.mu.Lock()
	if p.partial == nil {
		p.partial = map[logstream.Source][]byte{}
	}
	line := append(p.partial[r.Source], r.Text...)
	if r.More && len(line) < MaxLine {
		p.partial[r.Source] = line
		p.mu.Unlock()
		return
	}
	p.partial[r.Source] = nil
	p.mu.Unlock()
	out := make([]byte, 0, len(Prefix(r.Source))+len(line)+1)
	out = append(append(append(out, Prefix(r.Source)...), line...), '\n')
	p.write(out)
}

// Flush prints the pieces of lines whose end never came.
func (p *Printer) Flush() {
	p.mu.Lock()
	var out []byte
	for src, b := range p.partial {
		if len(b) > 0 {
			out = append(append(append(out, Prefix(src)...), b...), '\n')
		}
	}
	p.partial = nil
	p.mu.Unlock()
	if len(out) > 0 {
		p.write(out)
	}
}

// Console returns a writer for the serial console's bytes: each complete
// line is printed in one write; a partial line waits up to FlushAfter for
// its end. Close prints what is left.
func (p *Printer) Console() io.WriteCloser { return &console{p: p} }

type console struct {
	p     *Printer
	mu    sync.Mutex
	buf   []byte
	timer *time.Timer
}

func (c *console) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, b...)
	if i := bytes.LastIndexByte(c.buf, '\n'); i >= 0 {
		c.p.write(c.buf[:i+1])
		c.buf = append(c.buf[:0], c.buf[i+1:]...)
	}
	if len(c.buf) >= MaxLine {
		c.p.write(c.buf)
		c.buf = c.buf[:0]
	}
	if len(c.buf) > 0 && c.timer == nil {
		c.timer = time.AfterFunc(FlushAfter, c.flush)
	}
	return len(b), nil
}

func (c *console) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timer = nil
	if len(c.buf) > 0 {
		c.p.write(c.buf)
		c.buf = c.buf[:0]
	}
}

func (c *console) Close() error {
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.mu.Unlock()
	c.flush()
	return nil
}
