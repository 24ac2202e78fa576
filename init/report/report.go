// Package report sends the enclave's exit status to the parent over vsock
// (the message's format is proto/status's).
package report

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qtenclave/enclave/init/vsock"
	"github.com/qtenclave/enclave/proto/status"
)

// DefaultReportTimeout bounds Report.
const DefaultReportTimeout = 2 * time.Second

// ErrNotAcknowledged is a report that was written but that the parent did
// not acknowledge (by closing the connection) in time: it may or may not
// have arrived.
var ErrNotAcknowledged = errors.New("sent, but the parent did not close the connection")

// Report sends s to the parent at cid:port, then waits for the parent to
// close the connection, which is how it acknowledges the line: the reboot
// that follows the report cannot overtake it. It gives up after timeout
// (DefaultReportTimeout when 0) or when ctx ends.
func Report(ctx context.Context, d vsock.Dialer, cid, port uint32, s status.Status, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultReportTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := d.Dial(ctx, cid, port)
	if err != nil {
		return fmt.Errorf("report status to %d:%d: %w", cid, port, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte(s.Wire())); err != nil {
		return fmt.Errorf("report status to %d:%d: %w", cid, port, err)
	}
	// The parent sends nothing; anything it does is ignored until EOF.
	if err := vsock.AwaitClose(c); err != nil {
		return fmt.Errorf("report status to %d:%d: %w (%v)", cid, port, ErrNotAcknowledged, err)
	}
	return nil
}
