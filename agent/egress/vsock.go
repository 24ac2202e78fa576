package egress

import (
	"context"
	"net"

	"github.com/mdlayher/vsock"
)

// VsockOpen opens connections to the parent's port over AF_VSOCK: the
// companion's way to proto/tunnel's server. A thin adapter, exercised in
// the enclave only (the e2e boots); everything above it is tested over
// loopback.
func VsockOpen(cid, port uint32) OpenFunc {
	return func(ctx context.Context) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			c, err := vsock.Dial(cid, port, nil)
			ch <- result{c, err}
		}()
		select {
		case r := <-ch:
			return r.c, r.err
		case <-ctx.Done():
			go func() { // the dial ends on its own; its connection is not wanted
				if r := <-ch; r.c != nil {
					r.c.Close()
				}
			}()
			return nil, ctx.Err()
		}
	}
}
