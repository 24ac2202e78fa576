package egress

import (
	"context"
	"net"
	"time"

	"github.com/qtenclave/enclave/internal/splice"
	"github.com/qtenclave/enclave/proto/egress"
)

// Forward is a transparent forward: every connection to its listener (a
// loopback address init gave the destination's name in /etc/hosts) is
// tunnelled to Dest, for programs that ignore proxy settings. TLS and SNI
// stay the client's own, end to end.
type Forward struct {
	Dest        egress.Destination
	Policy      *egress.Policy
	Open        OpenFunc
	DialTimeout time.Duration
	IdleTimeout time.Duration
	Logf        func(format string, args ...any)
	Conns       *splice.Group // counts the open forwards (nil: not counted)
}

// Serve forwards connections from l until l is closed.
func (f *Forward) Serve(l net.Listener) error {
	return splice.Serve(l, 0, f.handle)
}

func (f *Forward) handle(c net.Conn) {
	if f.Policy == nil || !f.Policy.Check(f.Dest).Allowed {
		dec := egress.Decision{Rule: "no egress policy"}
		if f.Policy != nil {
			dec = f.Policy.Check(f.Dest)
		}
		if f.Logf != nil {
			f.Logf("egress: refused forward to %s: %s", f.Dest, dec.Rule)
		}
		c.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), or(f.DialTimeout, DefaultDialTimeout))
	out, err := Dial(ctx, f.Open, f.Dest)
	cancel()
	if err != nil {
		if f.Logf != nil {
			f.Logf("egress: forward to %s: %v", f.Dest, err)
		}
		c.Close()
		return
	}
	join(f.Conns, c, out, or(f.IdleTimeout, DefaultIdleTimeout))
}
