// Package vsock dials AF_VSOCK stream sockets without package net, which
// keeps init small. Conn and Dialer are interfaces so that the heartbeat and
// the status report can be tested over net.Pipe or unix sockets.
package vsock

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/qtenclave/enclave/proto/vsockports"
)

// Well-known context IDs.
const (
	CIDHypervisor = 0
	CIDLocal      = 1 // loopback (CONFIG_VSOCKETS_LOOPBACK)
	CIDHost       = 2
	CIDParent     = vsockports.ParentCID // the parent instance on Nitro and Qingtian
)

// Conn is a connected stream.
type Conn interface {
	io.ReadWriteCloser
	SetDeadline(t time.Time) error
}

// Dialer connects to cid:port.
type Dialer interface {
	Dial(ctx context.Context, cid, port uint32) (Conn, error)
}

// Listener accepts connections on one port.
type Listener interface {
	Accept() (Conn, error)
	Close() error
}

// DialerFunc adapts a function to Dialer.
type DialerFunc func(ctx context.Context, cid, port uint32) (Conn, error)

// Dial calls f.
func (f DialerFunc) Dial(ctx context.Context, cid, port uint32) (Conn, error) {
	return f(ctx, cid, port)
}

// AwaitClose reads and drops whatever c receives until the peer closes its
// side (nil) or reading fails (the error): how init waits for the parent's
// acknowledgement of a status or of the end of the log stream.
func AwaitClose(c Conn) error {
	var b [64]byte
	for {
		_, err := c.Read(b[:])
		switch {
		case err == nil:
			continue
		case errors.Is(err, io.EOF):
			return nil
		}
		return err
	}
}
