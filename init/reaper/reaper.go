// Package reaper is the one place init waits for children.
//
// PID 1 inherits every orphan, so it must reap with wait4(-1); a second
// waiter (exec.Cmd.Wait, os.Process.Wait) would race with it and lose exit
// statuses. The Reaper therefore starts children itself (Spawn runs the
// fork under its lock, so a child cannot be reaped before it is
// registered), reaps on SIGCHLD, hands each registered child's status to
// whoever started it, and counts the rest as orphans.
//
// It also owns the signals that would otherwise end init: the Go runtime
// makes a process exit on SIGTERM, SIGINT and SIGHUP, and dump and exit on
// SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGSTKFLT, SIGSYS and on SIGBUS, SIGFPE
// and SIGSEGV sent with kill(2), unless they are handled — and PID 1
// exiting panics the kernel. Those (Caught) are handled; the ones in
// Options.Forward go to the workload. Every other signal is already
// ignored by the Go runtime (or, for stop signals, by the kernel for PID 1).
// Only this list is caught, not every signal: enabling all 65 costs several
// milliseconds at boot.
package reaper

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Status is a reaped child.
type Status struct {
	Pid int
	syscall.WaitStatus
}

func (s Status) String() string {
	switch {
	case s.Exited():
		return fmt.Sprintf("pid %d exited with status %d", s.Pid, s.ExitStatus())
	case s.Signaled():
		return fmt.Sprintf("pid %d killed by signal %d (%v)", s.Pid, int(s.Signal()), s.Signal())
	}
	return fmt.Sprintf("pid %d wait status %#x", s.Pid, uint32(s.WaitStatus))
}

// Caught are the signals the Reaper handles (see the package comment).
var Caught = []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGILL, syscall.SIGTRAP,
	syscall.SIGABRT, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGSEGV, syscall.SIGUSR1, syscall.SIGUSR2,
	syscall.SIGPIPE, syscall.SIGTERM, syscall.SIGSTKFLT, syscall.SIGWINCH, syscall.SIGSYS}

// DefaultForward are the signals passed on to the workload.
var DefaultForward = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}

// Options configure a Reaper.
type Options struct {
	Forward []os.Signal // nil = DefaultForward
	// Logf, when set, is told about forwarded, dropped and orphan events.
	Logf func(format string, args ...any)
}

// Reaper reaps children and routes signals.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int]chan Status
	target  int
	orphans int

	chld    chan os.Signal
	other   chan os.Signal
	forward map[os.Signal]bool
	logf    func(string, ...any)
	stop    chan struct{}
	stopped sync.WaitGroup
}

// Start installs the signal handlers and starts reaping.
func Start(o Options) *Reaper {
	if o.Forward == nil {
		o.Forward = DefaultForward
	}
	r := &Reaper{
		waiters: map[int]chan Status{},
		chld:    make(chan os.Signal, 1),
		other:   make(chan os.Signal, 64),
		forward: map[os.Signal]bool{},
		logf:    o.Logf,
		stop:    make(chan struct{}),
	}
	for _, s := range o.Forward {
		r.forward[s] = true
	}
	if r.logf == nil {
		r.logf = func(string, ...any) {}
	}
	signal.Notify(r.chld, syscall.SIGCHLD)
	signal.Notify(r.other, Caught...)
	signal.Notify(r.other, o.Forward...)
	r.stopped.Add(1)
	go r.loop()
	r.reap() // children that ended before the handler was installed
	return r
}

// Stop uninstalls the handlers (tests; init never stops).
func (r *Reaper) Stop() {
	signal.Stop(r.chld)
	signal.Stop(r.other)
	close(r.stop)
	r.stopped.Wait()
}

func (r *Reaper) loop() {
	defer r.stopped.Done()
	for r.round() {
	}
}

// round handles one event; a panic is logged and the loop goes on (a panic
// escaping a goroutine would end PID 1).
func (r *Reaper) round() (more bool) {
	defer func() {
		if v := recover(); v != nil {
			r.logf("reaper: recovered from panic: %v", v)
			more = true
		}
	}()
	select {
	case <-r.stop:
		return false
	case <-r.chld:
		r.reap()
	case s := <-r.other:
		r.signal(s)
	}
	return true
}

func (r *Reaper) signal(s os.Signal) {
	switch s {
	case syscall.SIGCHLD:
		r.reap()
		return
	case syscall.SIGURG: // the runtime's own preemption signal
		return
	}
	r.mu.Lock()
	target := r.target
	r.mu.Unlock()
	if !r.forward[s] || target <= 0 {
		r.logf("signal %v ignored", s)
		return
	}
	if err := syscall.Kill(target, s.(syscall.Signal)); err != nil {
		r.logf("forward %v to pid %d: %v", s, target, err)
		return
	}
	r.logf("forwarded %v to pid %d", s, target)
}

func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		st := Status{Pid: pid, WaitStatus: ws}
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			if r.target == pid {
				r.target = 0
			}
			ch <- st
			continue
		}
		r.orphans++
		r.logf("reaped orphan %v", st)
	}
}

// Spawn runs start, which must create exactly one child and return its pid,
// with reaping held off, and registers the child. Its status arrives on the
// returned channel (buffered; it is sent exactly once).
func (r *Reaper) Spawn(start func() (int, error)) (int, <-chan Status, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan Status, 1)
	r.waiters[pid] = ch
	// A SIGCHLD that arrived meanwhile is waiting on the lock in reap.
	return pid, ch, nil
}

// StartProcess forks and execs path via syscall.ForkExec under Spawn.
func (r *Reaper) StartProcess(path string, argv []string, attr *syscall.ProcAttr) (int, <-chan Status, error) {
	return r.Spawn(func() (int, error) { return syscall.ForkExec(path, argv, attr) })
}

// ForwardTo makes pid the target of forwarded signals (0 = none).
func (r *Reaper) ForwardTo(pid int) {
	r.mu.Lock()
	r.target = pid
	r.mu.Unlock()
}

// Kill sends sig to pid.
func (r *Reaper) Kill(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }

// Orphans is the number of unregistered children reaped so far.
func (r *Reaper) Orphans() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.orphans
}
