// Package logs is the enclave side of the log stream (proto/logstream):
// init's own lines, the agent's and the workload's stdout and stderr go to
// the parent over one vsock connection, each line whole, apart from the
// kernel console.
//
// A Stream starts out waiting: lines written before it connects (init's
// first lines come before the heartbeat, when the parent is not yet known
// to be there) are kept, up to MaxPending bytes, and sent first. Once
// connected, init hands the workload pipes (Pipe) instead of the console:
// init owns the reading end and turns what the workload writes into
// records. A stream that is off (not configured, not reachable, or broken:
// a write that fails or stalls past the write timeout) sends nothing; the
// workload's lines then go to the console, as they would have without a
// stream.
package logs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/qtenclave/enclave/init/vsock"
	"github.com/qtenclave/enclave/proto/logstream"
)

// MaxPending bounds what is kept before the stream connects.
const MaxPending = 64 << 10

// Defaults.
const (
	DefaultWriteTimeout = 10 * time.Second // one write to the parent
	DefaultCloseTimeout = 2 * time.Second  // the parent's acknowledgement
)

type state uint8

const (
	waiting state = iota
	connected
	off
)

// Stream is the enclave's log stream.
type Stream struct {
	// Console receives the workload's lines when the stream is off (the
	// raw console: what the workload would have written there itself).
	Console io.Writer
	// Warnf is told, once, why a connected stream stopped.
	Warnf func(format string, args ...any)
	// WriteTimeout bounds one write (DefaultWriteTimeout when 0).
	WriteTimeout time.Duration

	mu      sync.Mutex
	state   state
	conn    vsock.Conn
	pending []byte
	dropped int // lines not kept while waiting
	buf     []byte
	readers sync.WaitGroup
}

// New returns a waiting stream whose workload lines fall back to console.
func New(console io.Writer) *Stream { return &Stream{Console: console} }

// Line sends one line of src's (several if it holds newlines). Lines of
// init and the agent are dropped when the stream is off (they are on the
// console already); the workload's go to the console.
func (s *Stream) Line(src logstream.Source, line string) {
	s.send(src, []byte(line), false)
}

// send sends one record's worth; more marks a piece of a longer line.
func (s *Stream) send(src logstream.Source, text []byte, more bool) {
	s.mu.Lock()
	var err error
	switch s.state {
	case off:
		s.mu.Unlock()
		if src == logstream.Stdout || src == logstream.Stderr {
			s.toConsole(text, more)
		}
		return
	case waiting:
		n := len(s.pending)
		s.pending, err = s.encode(s.pending, src, text, more)
		if err != nil || len(s.pending) > MaxPending {
			s.pending = s.pending[:n]
			s.dropped++
		}
		s.mu.Unlock()
		return
	}
	s.buf, err = s.encode(s.buf[:0], src, text, more)
	if err == nil {
		err = s.write(s.buf)
	}
	s.mu.Unlock()
	if err != nil {
		s.fail(err)
		if src == logstream.Stdout || src == logstream.Stderr {
			s.toConsole(text, more)
		}
	}
}

func (s *Stream) encode(dst []byte, src logstream.Source, text []byte, more bool) ([]byte, error) {
	if more {
		return logstream.AppendRecord(dst, logstream.Record{Source: src, Text: text, More: true})
	}
	return logstream.AppendLine(dst, src, text)
}

func (s *Stream) toConsole(text []byte, more bool) {
	if s.Console == nil {
		return
	}
	b := make([]byte, 0, len(text)+1)
	b = append(b, text...)
	if !more {
		b = append(b, '\n')
	}
	s.Console.Write(b)
}

// write writes b to the connection; s.mu is held.
func (s *Stream) write(b []byte) error {
	t := s.WriteTimeout
	if t <= 0 {
		t = DefaultWriteTimeout
	}
	_ = s.conn.SetDeadline(time.Now().Add(t))
	_, err := s.conn.Write(b)
	return err
}

// fail turns a connected stream off after an error.
func (s *Stream) fail(err error) {
	s.mu.Lock()
	was := s.state
	if was == connected {
		s.conn.Close()
		s.conn = nil
	}
	s.state = off
	s.mu.Unlock()
	if was == connected && s.Warnf != nil {
		s.Warnf("log stream: %v; the workload's output goes to the console from here", err)
	}
}

// Disable turns a waiting stream off: nothing is sent, the kept lines are
// dropped.
func (s *Stream) Disable() {
	s.mu.Lock()
	if s.state == waiting {
		s.state, s.pending = off, nil
	}
	s.mu.Unlock()
}

// Connected reports whether lines go to the parent.
func (s *Stream) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == connected
}

// Connect dials the parent at cid:port and sends the header and the lines
// kept so far. On failure the stream is off.
func (s *Stream) Connect(ctx context.Context, d vsock.Dialer, cid, port uint32) error {
	c, err := d.Dial(ctx, cid, port)
	if err != nil {
		s.Disable()
		return fmt.Errorf("log stream to %d:%d: %w", cid, port, err)
	}
	s.mu.Lock()
	if s.state != waiting {
		s.mu.Unlock()
		c.Close()
		return errors.New("log stream: not waiting")
	}
	s.conn, s.state = c, connected
	b := append([]byte(logstream.Header), s.pending...)
	s.pending = nil
	dropped := s.dropped
	err = s.write(b)
	s.mu.Unlock()
	if err != nil {
		s.fail(err)
		return fmt.Errorf("log stream to %d:%d: %w", cid, port, err)
	}
	if dropped > 0 {
		s.Line(logstream.Init, fmt.Sprintf("init: warning: log stream: %d early line(s) not kept (over %d bytes)", dropped, MaxPending))
	}
	return nil
}

// Pipe returns the writing end of a pipe whose lines become src's records
// (or console lines while the stream is off). The caller gives it to the
// child and closes its own copy once the child has started; the reader
// ends when every copy is closed (see Drain).
func (s *Stream) Pipe(src logstream.Source) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("log stream pipe: %w", err)
	}
	s.readers.Add(1)
	go func() {
		defer s.readers.Done()
		defer r.Close()
		s.copyLines(src, r)
	}()
	return w, nil
}

// copyLines turns r's bytes into src's lines: a line longer than MaxText
// goes out in pieces, a last line without newline as a line.
func (s *Stream) copyLines(src logstream.Source, r io.Reader) {
	br := bufio.NewReaderSize(r, logstream.MaxText)
	for {
		b, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			s.send(src, b[:len(b)-1], false)
		case errors.Is(err, bufio.ErrBufferFull):
			s.send(src, b, true)
		default:
			if len(b) > 0 {
				s.send(src, b, false)
			}
			return
		}
	}
}

// Drain waits up to timeout for every pipe's reader to reach the end of
// its pipe, which comes when the workload and every process that
// inherited the pipe have closed it. It reports whether all ended.
func (s *Stream) Drain(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { s.readers.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Close ends a connected stream: it half-closes the connection and waits,
// up to timeout (DefaultCloseTimeout when 0), for the parent to close its
// side, which says it has read every line. The stream is off afterwards.
func (s *Stream) Close(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultCloseTimeout
	}
	s.mu.Lock()
	c, was := s.conn, s.state
	s.conn, s.state, s.pending = nil, off, nil
	s.mu.Unlock()
	if was != connected {
		return nil
	}
	defer c.Close()
	hc, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return nil
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := hc.CloseWrite(); err != nil {
		return fmt.Errorf("log stream: half-close: %w", err)
	}
	if err := vsock.AwaitClose(c); err != nil {
		return fmt.Errorf("log stream: the parent did not acknowledge the end: %w", err)
	}
	return nil
}
