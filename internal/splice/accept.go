package splice

import (
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/qtenclave/enclave/internal/backoff"
)

// acceptRetry is the back-off between accepts that failed for a passing
// reason (net/http's server waits the same).
var acceptRetry = backoff.Policy{Initial: 5 * time.Millisecond, Max: time.Second}

// Accept is l.Accept that waits out the errors that pass (descriptors or
// memory exhausted, a connection aborted before it was taken) with a
// back-off instead of ending the server; onRetry (may be nil) hears of
// each. Other errors, net.ErrClosed among them, are returned. Every
// server of the project accepts through it.
func Accept(l net.Listener, onRetry func(err error, wait time.Duration)) (net.Conn, error) {
	var wait time.Duration
	for {
		c, err := l.Accept()
		if err == nil || !temporary(err) {
			return c, err
		}
		if wait == 0 {
			wait = acceptRetry.Initial
		} else {
			wait = acceptRetry.Next(wait)
		}
		if onRetry != nil {
			onRetry(err, wait)
		}
		time.Sleep(wait)
	}
}

// temporary reports whether an accept error passes.
func temporary(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}
