// Package interrupt gives the host commands one way to stop cleanly on
// SIGINT (Ctrl-C) and SIGTERM (kill, systemctl stop): a context that ends
// on either, whose cause names the signal, so work that ends early says
// "interrupted by SIGTERM" rather than whichever read or write noticed
// first, and removes what it had half-written.
package interrupt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Error is the cause of a context ended by a signal.
type Error struct{ Signal os.Signal }

func (e *Error) Error() string {
	name := e.Signal.String()
	switch e.Signal {
	case syscall.SIGTERM:
		name = "SIGTERM"
	case os.Interrupt:
		name = "SIGINT"
	}
	return fmt.Sprintf("interrupted by %s", name)
}

// Context returns a context that ends, with an *Error as its cause, on
// SIGINT or SIGTERM; stop releases the signals.
func Context(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-c:
			cancel(&Error{Signal: s})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(c)
		close(done)
		cancel(context.Canceled)
	}
}

// Cause is err, or the reason ctx ended when it has: an error from work
// cut short by ctx says why it stopped, not how the cut surfaced.
func Cause(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	cause := context.Cause(ctx)
	if errors.Is(err, cause) {
		return err
	}
	return cause
}
