// Package heartbeat tells the parent that the enclave booted: connect to
// the parent (vsock CID 3, port 9000), send 0xB7, expect 0xB7 back.
//
// Unlike the reference init, which tries once and dies, Run retries with
// bounded exponential back-off (the parent's listener may come up late, and
// a vhost-user backend may drop the first packet). After the echo an
// optional hook runs on the same connection: Qingtian's heartbeat carries a
// time synchronisation whose wire format is not public, so it is pluggable.
package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/qtenclave/enclave/internal/backoff"
	"github.com/qtenclave/enclave/proto/vsockports"

	"github.com/qtenclave/enclave/init/vsock"
)

// Byte is the heartbeat byte, both ways.
const Byte = vsockports.HeartbeatByte

// Policy bounds the retries (run by internal/backoff's loop).
type Policy struct {
	Attempts int           // total attempts, >= 1
	Initial  time.Duration // back-off after the first failure
	Max      time.Duration // back-off cap
	Timeout  time.Duration // per attempt: connect, send, receive, hook
}

// DefaultPolicy gives up after 6 attempts: at most about 3 s of back-off
// plus the attempts themselves (a refused connect fails at once).
var DefaultPolicy = Policy{Attempts: 6, Initial: 100 * time.Millisecond, Max: time.Second, Timeout: 5 * time.Second}

// Hook runs after a successful echo on the heartbeat connection.
type Hook func(ctx context.Context, c vsock.Conn) error

// Config is one heartbeat.
type Config struct {
	CID, Port uint32
	Policy    Policy
	// After runs after the echo (e.g. Qingtian's time sync); its failure
	// fails the attempt.
	After Hook
	// OnRetry is told about each failed attempt that will be retried.
	OnRetry func(attempt int, err error, backoff time.Duration)
	// Sleep waits between attempts (tests shorten it).
	Sleep func(ctx context.Context, d time.Duration) error
}

// ErrBadReply is an answer other than 0xB7.
var ErrBadReply = errors.New("heartbeat: unexpected reply")

// Result describes a successful heartbeat.
type Result struct {
	Attempts int
}

// Run performs the heartbeat.
func Run(ctx context.Context, d vsock.Dialer, cfg Config) (Result, error) {
	p := cfg.Policy
	if p.Attempts < 1 {
		p.Attempts = 1
	}
	if p.Timeout <= 0 {
		p.Timeout = DefaultPolicy.Timeout
	}
	loop := backoff.Loop{
		Policy:  backoff.Policy{Attempts: p.Attempts, Initial: p.Initial, Max: p.Max},
		Sleep:   cfg.Sleep,
		OnRetry: cfg.OnRetry,
	}
	n, err := loop.Do(ctx, func(int) error { return once(ctx, d, cfg, p.Timeout) })
	if err != nil {
		return Result{Attempts: n}, fmt.Errorf("heartbeat to %d:%d failed after %d attempts: %w", cfg.CID, cfg.Port, n, err)
	}
	return Result{Attempts: n}, nil
}

func once(ctx context.Context, d vsock.Dialer, cfg Config, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := d.Dial(ctx, cfg.CID, cfg.Port)
	if err != nil {
		return err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	if err := c.SetDeadline(dl); err != nil {
		return err
	}
	// Closing the connection unblocks I/O if ctx is cancelled early.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := Exchange(c); err != nil {
		return err
	}
	if cfg.After != nil {
		if err := cfg.After(ctx, c); err != nil {
			return fmt.Errorf("heartbeat hook: %w", err)
		}
	}
	return nil
}

// Exchange sends the heartbeat byte and checks the echo.
func Exchange(c io.ReadWriter) error {
	if _, err := c.Write([]byte{Byte}); err != nil {
		return fmt.Errorf("heartbeat send: %w", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("heartbeat receive: %w", err)
	}
	if b[0] != Byte {
		return fmt.Errorf("%w 0x%02X, want 0x%02X", ErrBadReply, b[0], Byte)
	}
	return nil
}
