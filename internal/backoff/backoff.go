// Package backoff is the project's one retry loop: exponential back-off
// (an initial wait, doubling, capped) over a bounded number of attempts,
// cut short by a context. The secure-module clients (qtsm.Session and
// init's GetRandom client), the heartbeat and the agent's supervisor use
// it. It depends on the standard library only, so init links it.
package backoff

import (
	"context"
	"time"
)

// Policy bounds a retry loop.
type Policy struct {
	Attempts int           // total attempts (less than 1 counts as 1)
	Initial  time.Duration // the wait after the first failure
	Max      time.Duration // the cap on a wait (0: none)
}

// Next is the wait that follows a wait of d.
func (p Policy) Next(d time.Duration) time.Duration {
	d *= 2
	if p.Max > 0 && d > p.Max {
		d = p.Max
	}
	return d
}

// Sleep waits for d or until ctx ends, whichever comes first; it returns
// ctx's error in the second case.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Loop is one use of a Policy.
type Loop struct {
	Policy Policy
	// Sleep waits between attempts (tests shorten it); nil is Sleep.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnRetry, when set, is told each failure that will be retried and
	// the wait before the next attempt.
	OnRetry func(attempt int, err error, wait time.Duration)
}

// Do calls op (with the attempt's number, from 1) until it returns nil,
// the attempts are used up, or ctx ends. It returns the number of
// attempts made and op's last error (nil on success). When ctx ended the
// loop, ctx.Err() is not nil: callers tell the two apart that way.
func (l Loop) Do(ctx context.Context, op func(attempt int) error) (int, error) {
	attempts := max(l.Policy.Attempts, 1)
	sleep := l.Sleep
	if sleep == nil {
		sleep = Sleep
	}
	wait := l.Policy.Initial
	for attempt := 1; ; attempt++ {
		err := op(attempt)
		if err == nil {
			return attempt, nil
		}
		if attempt >= attempts || ctx.Err() != nil {
			return attempt, err
		}
		if l.OnRetry != nil {
			l.OnRetry(attempt, err, wait)
		}
		if sleep(ctx, wait) != nil {
			return attempt, err
		}
		wait = l.Policy.Next(wait)
	}
}
