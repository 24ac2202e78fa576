package agent

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// Queue errors.
var (
	errBusy   = errors.New("agent: device queue is full")
	errClosed = errors.New("agent: shutting down")
)

// job is one request for the device.
type job struct {
	ctx  context.Context
	key  int32 // fairness key: the peer's PID
	run  func(ctx context.Context) (any, error)
	done chan result // buffered (1): the worker never blocks on it
}

type result struct {
	v   any
	err error
}

// queue is a fair queue in front of the one device: FIFO per peer process,
// round-robin across processes, so a chatty process cannot starve others.
// One worker sends the jobs to the device one at a time, in that order.
// A job whose context has ended by the time it reaches the head of the queue
// (client gone, deadline passed) is never sent; a job already sent runs to
// completion and its answer is dropped if nobody waits for it.
type queue struct {
	max int

	mu      sync.Mutex
	perKey  map[int32][]*job
	ring    []int32 // keys with pending jobs, in service order
	n       int
	closed  bool
	wake    chan struct{}
	stopped chan struct{}

	accepted, executed, dropped, rejected atomic.Uint64
}

func newQueue(max int) *queue {
	q := &queue{
		max:     max,
		perKey:  make(map[int32][]*job),
		wake:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
	}
	go q.work()
	return q
}

// submit queues j, or refuses it with errBusy or errClosed.
func (q *queue) submit(j *job) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return errClosed
	}
	if q.n >= q.max {
		q.mu.Unlock()
		q.rejected.Add(1)
		return errBusy
	}
	pending := q.perKey[j.key]
	if len(pending) == 0 {
		q.ring = append(q.ring, j.key)
	}
	q.perKey[j.key] = append(pending, j)
	q.n++
	q.mu.Unlock()
	q.accepted.Add(1)
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// next takes the next job in round-robin order; ok is false once the queue
// is closed and empty.
func (q *queue) next() (j *job, ok bool) {
	for {
		q.mu.Lock()
		if q.n > 0 {
			key := q.ring[0]
			pending := q.perKey[key]
			j = pending[0]
			pending[0] = nil
			pending = pending[1:]
			q.ring = q.ring[1:]
			if len(pending) == 0 {
				delete(q.perKey, key)
			} else {
				q.perKey[key] = pending
				q.ring = append(q.ring, key) // to the back: others go first
			}
			q.n--
			q.mu.Unlock()
			return j, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		<-q.wake
	}
}

func (q *queue) work() {
	defer close(q.stopped)
	for {
		j, ok := q.next()
		if !ok {
			return
		}
		if err := j.ctx.Err(); err != nil {
			q.dropped.Add(1)
			j.done <- result{err: err}
			continue
		}
		q.executed.Add(1)
		v, err := j.run(j.ctx)
		j.done <- result{v, err}
	}
}

// len returns the number of jobs waiting.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// close refuses new jobs; the worker finishes the queued ones and stops.
// wait for that with <-q.stopped.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}
