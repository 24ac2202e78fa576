// Package splice joins two connections: what one reads the other writes,
// both ways, each direction's end passed on as a half-close. The egress
// companion in the enclave, the parent's tunnel server and the local
// emulator's forwards all join streams this one way. Stdlib only.
package splice

import (
	"context"
	"io"
	"net"
	"sync"
	"time"
)

type closeWriter interface{ CloseWrite() error }

// Join copies a→b and b→a until both directions have ended, then closes
// both. A direction that ends cleanly half-closes its writer (when the
// connection can), so the other direction goes on; one that fails closes
// both at once. With idle > 0, a connection on which nothing moved either
// way for idle is closed. It returns the bytes copied each way.
func Join(a, b net.Conn, idle time.Duration) (aToB, bToA int64) {
	var act activity
	if idle > 0 {
		act.start(idle, a, b)
		defer act.stop()
	}
	done := make(chan int64, 1)
	go func() { done <- pipe(b, a, &act) }()
	bToA = pipe(a, b, &act)
	aToB = <-done
	a.Close()
	b.Close()
	return aToB, bToA
}

// pipe copies src to dst; at src's clean end it half-closes dst, on an
// error it closes both (which ends the other direction too).
func pipe(dst, src net.Conn, act *activity) int64 {
	var n int64
	buf := make([]byte, 32<<10)
	for {
		k, rerr := src.Read(buf)
		if k > 0 {
			act.touch()
			w, werr := dst.Write(buf[:k])
			n += int64(w)
			if werr != nil {
				src.Close()
				dst.Close()
				return n
			}
		}
		if rerr == io.EOF {
			if cw, ok := dst.(closeWriter); ok {
				cw.CloseWrite()
			} else {
				dst.Close()
			}
			return n
		}
		if rerr != nil {
			src.Close()
			dst.Close()
			return n
		}
	}
}

// activity closes both connections after idle without traffic.
type activity struct {
	last chan struct{}
	quit chan struct{}
}

func (a *activity) start(idle time.Duration, c ...net.Conn) {
	a.last = make(chan struct{}, 1)
	a.quit = make(chan struct{})
	go func() {
		t := time.NewTimer(idle)
		defer t.Stop()
		for {
			select {
			case <-a.quit:
				return
			case <-a.last:
				if !t.Stop() {
					<-t.C
				}
				t.Reset(idle)
			case <-t.C:
				for _, x := range c {
					x.Close()
				}
				return
			}
		}
	}()
}

func (a *activity) touch() {
	if a.last == nil {
		return
	}
	select {
	case a.last <- struct{}{}:
	default:
	}
}

func (a *activity) stop() {
	if a.quit != nil {
		close(a.quit)
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
