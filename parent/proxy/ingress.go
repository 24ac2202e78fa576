package proxy

import (
	"context"
	"net"
	"time"

	"github.com/qtenclave/enclave/internal/splice"
)

// Ingress joins each connection a host listener accepts to a new stream
// into the enclave (Dial: its vsock port), for qtenclave run's and
// qtenclave proxy's --publish.
type Ingress struct {
	Dial        func(ctx context.Context) (net.Conn, error)
	DialTimeout time.Duration
	Logf        func(format string, args ...any)
}

// Serve joins connections until l fails or ctx ends (which closes l); it
// closes l.
func (in *Ingress) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer l.Close()
	err := splice.Serve(l, 0, func(hc net.Conn) { in.handle(ctx, hc) })
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (in *Ingress) handle(ctx context.Context, hc net.Conn) {
	dctx, cancel := context.WithTimeout(ctx, or(in.DialTimeout, DefaultDialTimeout))
	gc, err := in.Dial(dctx)
	cancel()
	if err != nil {
		if in.Logf != nil {
			in.Logf("ingress from %v: %v", hc.RemoteAddr(), err)
		}
		hc.Close()
		return
	}
	stop := context.AfterFunc(ctx, func() { hc.Close(); gc.Close() })
	defer stop()
	splice.Join(hc, gc, 0)
}
