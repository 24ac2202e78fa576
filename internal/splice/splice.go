// Package splice joins two connections: what one reads the other writes,
// both ways, each direction's end passed on as a half-close. The egress
// companion in the enclave, the parent's tunnel server and the local
// emulator's forwards all join streams this one way, and accept them one
// way (Serve, Accept; the agent's HTTP server accepts through Accept too).
// Stdlib and internal/backoff only.
package splice

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

type closeWriter interface{ CloseWrite() error }

// Join copies a→b and b→a until both directions have ended, then closes
// both. A direction that ends cleanly half-closes its writer (when the
// connection can), so the other direction goes on; one that fails closes
// both at once. With idle > 0, a pair on which nothing moved either way for
// idle is closed. It returns the bytes copied each way.
//
// Between two TCP connections the kernel moves the bytes (io.Copy's
// splice(2) path), in chunks, so that the idle check never needs a copy
// through user space.
func Join(a, b net.Conn, idle time.Duration) (aToB, bToA int64) {
	act := &activity{idle: idle}
	act.touch()
	done := make(chan int64, 1)
	go func() { done <- pipe(b, a, act) }()
	bToA = pipe(a, b, act)
	aToB = <-done
	a.Close()
	b.Close()
	return aToB, bToA
}

// chunk is how much one kernel copy moves before the idle bookkeeping.
const chunk = 8 << 20

// pipe copies src to dst; at src's clean end it half-closes dst, on an
// error (or when the pair is idle) it closes both, which ends the other
// direction too.
func pipe(dst, src net.Conn, act *activity) int64 {
	var n int64
	for {
		if act.idle > 0 {
			// A read deadline of a quarter of the idle time: the check
			// below sees either direction's progress within that.
			src.SetReadDeadline(time.Now().Add(act.idle / 4))
		}
		k, err := io.CopyN(dst, src, chunk)
		n += k
		if k > 0 {
			act.touch()
		}
		switch {
		case err == nil:
			continue
		case err == io.EOF:
			if cw, ok := dst.(closeWriter); ok {
				cw.CloseWrite()
			} else {
				dst.Close()
			}
			return n
		case act.idle > 0 && isTimeout(err) && act.since() < act.idle:
			continue // quiet this way, not idle both ways
		}
		src.Close()
		dst.Close()
		return n
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// activity is when bytes last moved either way.
type activity struct {
	idle time.Duration
	last atomic.Int64 // UnixNano
}

func (a *activity) touch()               { a.last.Store(time.Now().UnixNano()) }
func (a *activity) since() time.Duration { return time.Duration(time.Now().UnixNano() - a.last.Load()) }

// Serve handles each connection l accepts on its own goroutine, at most
// max at once when max > 0 (more wait in the listener's backlog), until l
// is closed; then it waits for the handlers to return. The servers that
// join streams (the parent's tunnels and ingress, the companion's forwards
// and published ports) all accept this one way.
func Serve(l net.Listener, max int, handle func(net.Conn)) error {
	var slots chan struct{}
	if max > 0 {
		slots = make(chan struct{}, max)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		if slots != nil {
			slots <- struct{}{}
		}
		c, err := Accept(l, nil)
		if err != nil {
			if slots != nil {
				<-slots
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if slots != nil {
				defer func() { <-slots }()
			}
			handle(c)
		}()
	}
}

// Group counts the joins in progress, so that a server stopping can let
// them finish (Wait) instead of cutting the bytes still on their way.
type Group struct {
	mu sync.Mutex
	n  int
	// zero is closed (and replaced) each time n comes back to 0.
	zero chan struct{}
}

// Join is the package's Join, counted in g.
func (g *Group) Join(a, b net.Conn, idle time.Duration) (aToB, bToA int64) {
	g.mu.Lock()
	g.n++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.n--
		if g.n == 0 && g.zero != nil {
			close(g.zero)
			g.zero = nil
		}
		g.mu.Unlock()
	}()
	return Join(a, b, idle)
}

// Active is the number of joins in progress.
func (g *Group) Active() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// Wait waits until no join is in progress or ctx ends; it returns the
// number still in progress (0 when all finished).
func (g *Group) Wait(ctx context.Context) int {
	g.mu.Lock()
	if g.n == 0 {
		g.mu.Unlock()
		return 0
	}
	if g.zero == nil {
		g.zero = make(chan struct{})
	}
	zero := g.zero
	g.mu.Unlock()
	select {
	case <-zero:
		return 0
	case <-ctx.Done():
		return g.Active()
	}
}
