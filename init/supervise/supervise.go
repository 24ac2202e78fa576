// Package supervise keeps a helper process (qtsm-agent) running: when it
// dies it is restarted with exponential back-off; Stop ends it politely
// (SIGTERM, then SIGKILL after a timeout).
package supervise

import (
	"sync"
	"syscall"
	"time"

	"github.com/qtenclave/enclave/init/reaper"
	"github.com/qtenclave/enclave/internal/backoff"
)

// Starter starts one instance and returns its pid and the channel its
// status arrives on (from the reaper).
type Starter func() (pid int, done <-chan reaper.Status, err error)

// Backoff is the restart policy.
type Backoff struct {
	Initial time.Duration // delay before the first restart
	Max     time.Duration // cap
	// Reset: an instance that ran at least this long restarts after
	// Initial again.
	Reset time.Duration
}

func (b Backoff) policy() backoff.Policy { return backoff.Policy{Initial: b.Initial, Max: b.Max} }

// DefaultBackoff restarts after 100 ms, doubling to 10 s.
var DefaultBackoff = Backoff{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Reset: 30 * time.Second}

// Supervisor runs one process.
type Supervisor struct {
	Name    string
	Start   Starter
	Kill    func(pid int, sig syscall.Signal) error
	Backoff Backoff
	Logf    func(format string, args ...any)

	mu       sync.Mutex
	pid      int
	restarts int
	stop     chan time.Duration
	finished chan struct{}
}

// Go starts the process and supervises it in the background. An error
// starting the first instance is returned and nothing is supervised (a
// binary that cannot be executed will not get better by retrying).
func (s *Supervisor) Go() error {
	if s.Logf == nil {
		s.Logf = func(string, ...any) {}
	}
	if s.Backoff == (Backoff{}) {
		s.Backoff = DefaultBackoff
	}
	pid, done, err := s.Start()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.pid = pid
	s.mu.Unlock()
	s.stop = make(chan time.Duration)
	s.finished = make(chan struct{})
	go s.loop(done)
	return nil
}

// Pid is the current instance's pid (0 while restarting or stopped).
func (s *Supervisor) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

// Restarts counts restarts so far.
func (s *Supervisor) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// Stop ends supervision: SIGTERM to the running instance, SIGKILL if it has
// not exited after timeout, and returns once it is gone (or after a second
// timeout if even SIGKILL did not end it).
func (s *Supervisor) Stop(timeout time.Duration) {
	if s.stop == nil {
		return
	}
	select {
	case s.stop <- timeout:
		<-s.finished
	case <-s.finished:
	}
}

func (s *Supervisor) loop(done <-chan reaper.Status) {
	defer close(s.finished)
	defer func() {
		// A panic escaping this goroutine would end PID 1: stop supervising.
		if v := recover(); v != nil {
			s.Logf("%s: supervisor stopped after panic: %v", s.Name, v)
		}
	}()
	backoff := s.Backoff.Initial
	started := time.Now()
	for {
		var timeout time.Duration
		select {
		case st := <-done:
			s.setPid(0)
			if s.Backoff.Reset > 0 && time.Since(started) >= s.Backoff.Reset {
				backoff = s.Backoff.Initial
			}
			s.Logf("%s %v; restarting in %v", s.Name, st, backoff)
			select {
			case <-time.After(backoff):
			case <-s.stop:
				return
			}
			backoff = s.Backoff.policy().Next(backoff)
			pid, d, err := s.Start()
			s.mu.Lock()
			s.restarts++
			s.mu.Unlock()
			if err != nil {
				s.Logf("%s: restart failed: %v", s.Name, err)
				c := make(chan reaper.Status, 1)
				c <- reaper.Status{Pid: 0, WaitStatus: syscall.WaitStatus(127 << 8)}
				done = c
			} else {
				s.setPid(pid)
				done = d
			}
			started = time.Now()
			continue
		case timeout = <-s.stop:
		}
		pid := s.Pid()
		if pid <= 0 {
			return
		}
		_ = s.Kill(pid, syscall.SIGTERM)
		select {
		case <-done:
			s.setPid(0)
			return
		case <-time.After(timeout):
		}
		s.Logf("%s (pid %d) did not stop within %v: killing it", s.Name, pid, timeout)
		_ = s.Kill(pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(timeout):
		}
		s.setPid(0)
		return
	}
}

func (s *Supervisor) setPid(pid int) {
	s.mu.Lock()
	s.pid = pid
	s.mu.Unlock()
}
