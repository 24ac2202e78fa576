package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/qtenclave/enclave/image/eif"
	"github.com/qtenclave/enclave/internal/cliflag"
)

// newFlags returns a FlagSet that reports errors on stderr and never exits.
func newFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: qtenclave %s %s\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseN is cliflag.Parse for a command that takes exactly n positional
// arguments. When ok is false, the usage has been printed as needed and
// code is the exit status.
func parseN(fs *flag.FlagSet, args []string, n int) (pos []string, code int, ok bool) {
	pos, err := cliflag.Parse(fs, args)
	if err != nil {
		return nil, usageExit(err), false
	}
	if len(pos) != n {
		fs.Usage()
		return nil, exitUsage, false
	}
	return pos, 0, true
}

// usageExit maps a flag error to an exit code: -h is success.
func usageExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

// writeJSON prints v indented, as nitro-cli does.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// openVerified opens an EIF, checks its structure, CRC and contents and
// returns its measurements.
func openVerified(path string) (*eif.File, *eif.Measurements, error) {
	f, err := eif.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	m, err := f.Verify()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, m, nil
}

// measurementsDoc is nitro-cli's output: {"Measurements": {...}}.
type measurementsDoc struct {
	Measurements *eif.Measurements `json:"Measurements"`
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progress shows "stage: N MiB (R MiB/s)" on a terminal, redrawn in place;
// it does nothing when w is not a terminal.
type progress struct {
	w     io.Writer
	stage atomic.Value // string
	bytes atomic.Int64
	stop  chan struct{}
	done  chan struct{}
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	p.stage.Store("")
	if !isTerminal(w) {
		return p
	}
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go p.loop()
	return p
}

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	start := time.Now()
	spin := `-\|/`
	for i := 0; ; i++ {
		select {
		case <-p.stop:
			fmt.Fprint(p.w, "\r\033[K")
			return
		case <-t.C:
			n := p.bytes.Load()
			rate := float64(n) / time.Since(start).Seconds() / (1 << 20)
			fmt.Fprintf(p.w, "\r\033[K%c %s %.1f MiB (%.0f MiB/s)", spin[i%len(spin)], p.stage.Load(), float64(n)/(1<<20), rate)
		}
	}
}

// Stage names the current step (image.Progress).
func (p *progress) Stage(s string) { p.stage.Store(s) }

// Count wraps w to count the bytes written through it (image.Progress).
func (p *progress) Count(w io.Writer) io.Writer { return &countingWriter{w: w, n: &p.bytes} }

// close erases the progress line.
func (p *progress) close() {
	if p.stop != nil {
		close(p.stop)
		<-p.done
		p.stop = nil
	}
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// printable is s as it is when every character prints, else quoted (Go
// syntax): names and values come from the images, and none of their bytes
// may start a line of this output or reach the terminal as a control
// sequence.
func printable(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
