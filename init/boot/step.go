package boot

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// errSkip marks a step that did nothing, for a reason that is not a failure.
type errSkip struct{ reason string }

func (e errSkip) Error() string { return e.reason }

func skipf(format string, args ...any) error { return errSkip{fmt.Sprintf(format, args...)} }

// Ms formats a duration the way every console line does: milliseconds with
// three decimals.
func Ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 3, 64) + "ms" }

// stepResult is one step's outcome, kept until its line is written.
type stepResult struct {
	name   string
	detail string
	err    error
	d      time.Duration
}

// do runs one step and measures it.
func (b *Boot) do(name string, fn func() (string, error)) stepResult {
	t0 := time.Now()
	b.Con.Debugf("step %s begins at +%s", name, Ms(t0.Sub(b.Start)))
	detail, err := fn()
	return stepResult{name: name, detail: detail, err: err, d: time.Since(t0)}
}

// recovered is fn with a panic turned into its error: a panic escaping a
// goroutine would end PID 1.
func recovered(fn func() (string, error)) func() (string, error) {
	return func() (detail string, err error) {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("panic: %v", v)
			}
		}()
		return fn()
	}
}

// log writes a step's line, "step NAME ok|skipped|failed in DUR[: detail]",
// and returns its error (nil when skipped).
func (b *Boot) log(r stepResult) error {
	d := Ms(r.d)
	var skip errSkip
	switch {
	case errors.As(r.err, &skip):
		b.Con.Logf("step %s skipped in %s: %s", r.name, d, skip.reason)
		return nil
	case r.err != nil && r.detail != "":
		b.Con.Logf("step %s failed in %s: %s: %v", r.name, d, r.detail, r.err)
		return r.err
	case r.err != nil:
		b.Con.Logf("step %s failed in %s: %v", r.name, d, r.err)
		return r.err
	case r.detail != "":
		b.Con.Logf("step %s ok in %s: %s", r.name, d, r.detail)
	default:
		b.Con.Logf("step %s ok in %s", r.name, d)
	}
	return nil
}

// step runs fn and logs its line.
func (b *Boot) step(name string, fn func() (string, error)) error {
	return b.log(b.do(name, fn))
}

// later runs fn now and returns a function that logs its line, and returns
// its error, at that later point of the sequence: work done ahead of its
// turn keeps the console in the documented order.
func (b *Boot) later(name string, fn func() (string, error)) (logIt func() error) {
	r := b.do(name, fn)
	return func() error { return b.log(r) }
}

// lane is a goroutine running steps one after another while the sequence
// goes on; join waits for it and logs their lines in order.
type lane chan []stepResult

// goLane starts a lane; run calls step for each of its steps.
func (b *Boot) goLane(run func(step func(name string, fn func() (string, error)))) lane {
	c := make(lane, 1)
	go func() {
		var rs []stepResult
		defer func() {
			if v := recover(); v != nil {
				rs = append(rs, stepResult{name: "lane", err: fmt.Errorf("panic: %v", v)})
			}
			c <- rs
		}()
		run(func(name string, fn func() (string, error)) { rs = append(rs, b.do(name, recovered(fn))) })
	}()
	return c
}

// join waits for the lane and logs its steps; it returns their errors.
func (l lane) join(b *Boot) error {
	var errs []error
	for _, r := range <-l {
		errs = append(errs, b.log(r))
	}
	return errors.Join(errs...)
}

// async starts fn now and returns a function that waits for it and logs
// its step line (with fn's own duration) at that point of the sequence.
func (b *Boot) async(name string, fn func() (string, error)) (join func() error) {
	l := b.goLane(func(step func(string, func() (string, error))) { step(name, fn) })
	return func() error { return l.join(b) }
}
