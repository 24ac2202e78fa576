// Package ingress is the enclave side of the way in: the companion
// (qtsm-agent) listens on a vsock port for the parent's connections and
// joins each to the workload's TCP server on 127.0.0.1 at the same port, so
// an ordinary server is reachable from outside (qtenclave build --publish,
// qtenclave run --publish HOSTPORT:ENCLAVEPORT).
package ingress

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/qtenclave/enclave/internal/backoff"
	"github.com/qtenclave/enclave/internal/splice"
)

// Defaults.
const (
	// DefaultWait is how long a connection waits for the workload's
	// server to listen (it may still be starting).
	DefaultWait        = 10 * time.Second
	DefaultIdleTimeout = 10 * time.Minute
)

// retry is how connecting to a server that is not listening yet is
// retried: 10 ms doubling to 1 s, within Wait.
var retry = backoff.Policy{Attempts: 1 << 20, Initial: 10 * time.Millisecond, Max: time.Second}

// Publisher joins connections from a listener to the workload's port.
type Publisher struct {
	Port        int
	Wait        time.Duration
	IdleTimeout time.Duration
	// Dial connects to the workload (default a net.Dialer on 127.0.0.1).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	Logf func(format string, args ...any)
	// Conns counts the open connections (nil: not counted), so that a
	// stopping companion can let them finish.
	Conns *splice.Group
}

// Serve joins the connections l accepts until l is closed.
func (p *Publisher) Serve(l net.Listener) error {
	return splice.Serve(l, 0, p.handle)
}

func (p *Publisher) handle(c net.Conn) {
	dial := p.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	wait := p.Wait
	if wait <= 0 {
		wait = DefaultWait
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port))
	var out net.Conn
	_, err := backoff.Loop{Policy: retry}.Do(ctx, func(int) error {
		var err error
		out, err = dial(ctx, "tcp", addr)
		return err
	})
	if err != nil {
		if p.Logf != nil {
			p.Logf("ingress: port %d: the workload does not answer: %v", p.Port, err)
		}
		c.Close()
		return
	}
	idle := p.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	if p.Conns != nil {
		p.Conns.Join(c, out, idle)
		return
	}
	splice.Join(c, out, idle)
}
