package agent

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Queue errors.
var (
	errBusy   = errors.New("agent: device queue is full")
	errClosed = errors.New("agent: shutting down")
)

// job is one request waiting for the device.
type job struct {
	key   int32         // fairness key: the peer's PID
	ready chan struct{} // closed when the job is granted the device
	// granted and abandoned are guarded by queue.mu.
	granted, abandoned bool
}

// queue is a fair lock in front of the one device: FIFO per peer process,
// round-robin across processes, so a chatty process cannot starve others.
// The holder of the device runs its request itself on its own goroutine (no
// hand-off to a worker, so an idle agent adds no scheduling to a call) and
// then passes the device to the next job in order.
//
// A job whose context ends while it waits leaves the queue and is never
// sent to the device; a job already granted runs to completion, since the
// device cannot abandon a request, and its answer is dropped if nobody
// waits for it.
type queue struct {
	max int

	mu      sync.Mutex
	perKey  map[int32][]*job
	ring    []int32 // keys with pending jobs, in service order
	n       int     // jobs waiting (abandoned ones excluded)
	busy    bool    // the device is held
	closed  bool
	stopped chan struct{}

	accepted, executed, dropped, rejected, deviceNanos atomic.Uint64
}

func newQueue(max int) *queue {
	return &queue{max: max, perKey: make(map[int32][]*job), stopped: make(chan struct{})}
}

// do runs fn with the device held, after the jobs ahead of it; it returns
// errBusy when too many wait, errClosed after close, or ctx's error when ctx
// ends before the device is granted (fn then never runs).
func (q *queue) do(ctx context.Context, key int32, fn func(context.Context) (any, error)) (any, error) {
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, errClosed
	}
	if !q.busy && q.n == 0 {
		q.busy = true
		q.mu.Unlock()
		q.accepted.Add(1)
		return q.run(ctx, fn)
	}
	if q.n >= q.max {
		q.mu.Unlock()
		q.rejected.Add(1)
		return nil, errBusy
	}
	j := &job{key: key, ready: make(chan struct{})}
	pending := q.perKey[key]
	if len(pending) == 0 {
		q.ring = append(q.ring, key)
	}
	q.perKey[key] = append(pending, j)
	q.n++
	q.mu.Unlock()
	q.accepted.Add(1)

	unwatch := watchQueued(ctx) // a client that hangs up now leaves the queue
	select {
	case <-j.ready:
		unwatch()
		return q.run(ctx, fn)
	case <-ctx.Done():
		unwatch()
	}
	q.mu.Lock()
	if j.granted { // granted just as ctx ended: pass the device on
		q.mu.Unlock()
		q.dropped.Add(1)
		q.release()
		return nil, context.Cause(ctx)
	}
	j.abandoned = true
	q.n--
	q.mu.Unlock()
	q.dropped.Add(1)
	return nil, context.Cause(ctx)
}

// run calls fn holding the device, then passes it on.
func (q *queue) run(ctx context.Context, fn func(context.Context) (any, error)) (any, error) {
	defer q.release()
	if err := context.Cause(ctx); err != nil {
		q.dropped.Add(1)
		return nil, err
	}
	q.executed.Add(1)
	start := time.Now()
	defer func() { q.deviceNanos.Add(uint64(time.Since(start))) }()
	return fn(ctx)
}

// release passes the device to the next waiting job in round-robin order,
// or marks it free.
func (q *queue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.ring) > 0 {
		key := q.ring[0]
		pending := q.perKey[key]
		j := pending[0]
		pending[0] = nil
		pending = pending[1:]
		q.ring = q.ring[1:]
		if len(pending) == 0 {
			delete(q.perKey, key)
		} else {
			q.perKey[key] = pending
			q.ring = append(q.ring, key) // to the back: others go first
		}
		if j.abandoned {
			continue
		}
		q.n--
		j.granted = true
		close(j.ready)
		return
	}
	q.busy = false
	if q.closed && !q.stoppedClosed() {
		close(q.stopped)
	}
}

func (q *queue) stoppedClosed() bool {
	select {
	case <-q.stopped:
		return true
	default:
		return false
	}
}

// len returns the number of jobs waiting.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// close refuses new jobs; the queued ones still run. q.stopped is closed
// once the device is free and nothing waits.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	if !q.busy && q.n == 0 && !q.stoppedClosed() {
		close(q.stopped)
	}
}
