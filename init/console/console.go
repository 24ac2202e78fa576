// Package console writes init's log lines to the enclave console.
//
// Every line is written with one write call so that lines from init, the
// agent's prefixed output and the workload do not interleave mid-line. Line
// formats are documented in package init (init/doc.go).
package console

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/qtenclave/enclave/proto/logstream"
)

// Prefix starts every line init itself writes.
const Prefix = "init: "

// Console is a line-oriented, concurrency-safe log writer.
type Console struct {
	mu     sync.Mutex
	w      io.Writer
	debug  bool
	mirror func(src logstream.Source, line string)
}

// New returns a console writing to w.
func New(w io.Writer) *Console { return &Console{w: w} }

// SetDebug turns Debugf lines on or off.
func (c *Console) SetDebug(on bool) {
	c.mu.Lock()
	c.debug = on
	c.mu.Unlock()
}

// SetMirror makes every line also go to fn (the enclave log stream),
// called after the console write and outside the console's lock, so fn may
// itself write console lines. Lines written by Line, Logf and friends are
// logstream.Init's; a PrefixWriter's lines carry its own source.
func (c *Console) SetMirror(fn func(src logstream.Source, line string)) {
	c.mu.Lock()
	c.mirror = fn
	c.mu.Unlock()
}

// Debug reports whether debug lines are written.
func (c *Console) Debug() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.debug
}

// Line writes s as one line, exactly (a newline is added when missing).
func (c *Console) Line(s string) { c.line(logstream.Init, s) }

func (c *Console) line(src logstream.Source, s string) {
	b := make([]byte, 0, len(s)+1)
	b = append(b, s...)
	if len(b) == 0 || b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	c.mu.Lock()
	_, _ = c.w.Write(b)
	mirror := c.mirror
	c.mu.Unlock()
	if mirror != nil {
		mirror(src, strings.TrimSuffix(s, "\n")) // s as written, no copy
	}
}

// Logf writes "init: <message>".
func (c *Console) Logf(format string, args ...any) { c.Line(Prefix + fmt.Sprintf(format, args...)) }

// Warnf writes "init: warning: <message>".
func (c *Console) Warnf(format string, args ...any) {
	c.Line(Prefix + "warning: " + fmt.Sprintf(format, args...))
}

// Errorf writes "init: error: <message>".
func (c *Console) Errorf(format string, args ...any) {
	c.Line(Prefix + "error: " + fmt.Sprintf(format, args...))
}

// Debugf writes "init: debug: <message>" when debug is on.
func (c *Console) Debugf(format string, args ...any) {
	if c.Debug() {
		c.Line(Prefix + "debug: " + fmt.Sprintf(format, args...))
	}
}

// MaxLine is the longest line a prefixed writer emits; longer lines are
// split.
const MaxLine = 4096

// PrefixWriter returns a writer that copies complete lines to the console,
// each preceded by prefix unless it already starts with it (qtsm-agent
// prefixes its own log lines), and mirrors them as src's. A partial last
// line is held until its newline arrives or Close is called.
func (c *Console) PrefixWriter(prefix string, src logstream.Source) io.WriteCloser {
	return &prefixWriter{c: c, prefix: prefix, src: src}
}

type prefixWriter struct {
	c      *Console
	prefix string
	src    logstream.Source
	mu     sync.Mutex
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.buf = append(p.buf, b...)
			for len(p.buf) >= MaxLine {
				p.emit(p.buf[:MaxLine])
				p.buf = append(p.buf[:0], p.buf[MaxLine:]...)
			}
			break
		}
		p.buf = append(p.buf, b[:i]...)
		b = b[i+1:]
		for len(p.buf) > MaxLine {
			p.emit(p.buf[:MaxLine])
			p.buf = append(p.buf[:0], p.buf[MaxLine:]...)
		}
		p.emit(p.buf)
		p.buf = p.buf[:0]
	}
	return n, nil
}

func (p *prefixWriter) emit(line []byte) {
	s := string(bytes.TrimSuffix(line, []byte("\r")))
	if !strings.HasPrefix(s, p.prefix) {
		s = p.prefix + s
	}
	p.c.line(p.src, s)
}

// Close flushes a partial last line.
func (p *prefixWriter) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		p.emit(p.buf)
		p.buf = nil
	}
	return nil
}
