package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The connection loop keeps time without a timer per request (conn.go
// says why): the janitor, the deadlines it keeps and the hang-up watch.

// requestClock is when a request's time is up and how to end it.
type requestClock struct {
	at     int64 // UnixNano
	cancel context.CancelCauseFunc
}

// until sets the end of sc's current phase.
func (sc *serverConn) until(t time.Time) { sc.closeAt.Store(t.UnixNano()) }

// sweep is the janitor: every tick it closes the connections whose phase
// has run out and ends the requests whose time is up. It returns once the
// server is shut down and every connection is gone.
func (s *httpServer) sweep() {
	tick := min(s.limits.readHeader, s.limits.read, s.limits.idle, s.request) / 4
	tick = max(5*time.Millisecond, min(tick, time.Second)) // an idle agent wakes once a second
	t := time.NewTicker(tick)
	defer t.Stop()
	for range t.C {
		now := time.Now().UnixNano()
		s.mu.Lock()
		if s.shutting && len(s.conns) == 0 {
			s.mu.Unlock()
			return
		}
		for sc := range s.conns {
			if at := sc.closeAt.Load(); at != 0 && now > at {
				sc.c.Close()
			}
			if r := sc.req.Load(); r != nil && now > r.at {
				r.cancel(context.DeadlineExceeded)
			}
		}
		s.mu.Unlock()
	}
}

// aLongTimeAgo is a deadline in the past: it ends a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// bodyClock is a request body that, once read to its end, moves its
// connection's deadline from the body's to the answer's. Its Close does
// nothing, as quietBody's.
type bodyClock struct {
	r    io.Reader
	sc   *serverConn
	then time.Time
	done bool
}

func (b *bodyClock) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.finish()
	}
	return n, err
}

// finish moves the connection to the answer's deadline, once.
func (b *bodyClock) finish() {
	if !b.done {
		b.done = true
		b.sc.until(b.then)
	}
}

func (*bodyClock) Close() error { return nil }

// served is what the agent's loop tells the request's own code, through
// its context: that the janitor keeps its deadline (Server.do then arms
// no timer), its body's clock, and how to watch its connection.
type served struct {
	body   *bodyClock // nil: no body
	conn   net.Conn
	hangUp func() // cancels the request
}

type servedKey struct{}

func servedOf(ctx context.Context) *served {
	sv, _ := ctx.Value(servedKey{}).(*served)
	return sv
}

// clocked reports whether ctx's request has the janitor's deadline.
func clocked(ctx context.Context) bool { return servedOf(ctx) != nil }

// bodyRead is called by a request about to go to the device: whatever it
// read of its body, it is done reading, and from now on the connection
// has the answer's deadline (a handler need not read its body to EOF).
func bodyRead(ctx context.Context) {
	if sv := servedOf(ctx); sv != nil && sv.body != nil {
		sv.body.finish()
	}
}

// watchQueued is called by a request about to wait in the device queue:
// until the returned stop is called, a hang-up of its client cancels its
// context. It does nothing for a request served by another server.
func watchQueued(ctx context.Context) (stop func()) {
	if sv := servedOf(ctx); sv != nil {
		return watchHangup(sv.conn, sv.hangUp)
	}
	return func() {}
}

// watchHangup cancels the request when c's peer closes its end; data
// arriving instead (a pipelined request) ends the watch without cancel.
// It peeks and never consumes. stop ends the watch.
func watchHangup(c net.Conn, cancel func()) (stop func()) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return func() {}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var buf [1]byte
		hungUp := false
		err := raw.Read(func(fd uintptr) bool {
			n, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if errors.Is(err, unix.EAGAIN) {
				return false // wait for the socket to become readable
			}
			hungUp = err != nil || n == 0 // reset, or EOF; n > 0 is a pipelined request
			return true
		})
		if hungUp && err == nil {
			cancel()
		}
	}()
	return func() {
		c.SetReadDeadline(aLongTimeAgo) // wakes the watcher
		<-done
		c.SetReadDeadline(time.Time{}) // the janitor keeps the time
	}
}
