package supervise

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qtenclave/enclave/init/reaper"
)

// procs fakes processes: each Start makes a pid whose status is sent when
// the test calls exit(pid) or, for obedient processes, on SIGTERM.
type procs struct {
	mu       sync.Mutex
	next     int
	done     map[int]chan reaper.Status
	started  []time.Time
	obey     bool // exit on SIGTERM
	signals  []string
	failFrom int // Start fails from this call on (0 = never)
}

func (p *procs) start() (int, <-chan reaper.Status, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	if p.failFrom > 0 && p.next >= p.failFrom {
		return 0, nil, errors.New("exec format error")
	}
	if p.done == nil {
		p.done = map[int]chan reaper.Status{}
	}
	c := make(chan reaper.Status, 1)
	p.done[p.next] = c
	p.started = append(p.started, time.Now())
	return p.next, c, nil
}

func (p *procs) exit(pid, code int) {
	p.mu.Lock()
	c := p.done[pid]
	p.mu.Unlock()
	c <- reaper.Status{Pid: pid, WaitStatus: syscall.WaitStatus(code << 8)}
}

func (p *procs) kill(pid int, sig syscall.Signal) error {
	p.mu.Lock()
	p.signals = append(p.signals, fmt.Sprintf("%d:%d", pid, int(sig)))
	c := p.done[pid]
	obey := p.obey || sig == syscall.SIGKILL
	p.mu.Unlock()
	if obey {
		c <- reaper.Status{Pid: pid, WaitStatus: syscall.WaitStatus(sig)}
	}
	return nil
}

func (p *procs) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.started)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRestartWithBackoff(t *testing.T) {
	p := &procs{obey: true}
	var mu sync.Mutex
	var logs []string
	s := &Supervisor{Name: "qtsm-agent", Start: p.start, Kill: p.kill,
		Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond},
		Logf: func(f string, a ...any) {
			mu.Lock()
			logs = append(logs, fmt.Sprintf(f, a...))
			mu.Unlock()
		}}
	if err := s.Go(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		waitFor(t, fmt.Sprintf("instance %d", i), func() bool { return s.Pid() == i })
		p.exit(i, 1)
	}
	waitFor(t, "instance 5", func() bool { return s.Pid() == 5 })
	if s.Restarts() != 4 {
		t.Errorf("Restarts() = %d, want 4", s.Restarts())
	}
	// Gaps between starts follow 10, 20, 40, 40 ms.
	want := []time.Duration{10, 20, 40, 40}
	for i := 1; i < len(p.started); i++ {
		gap := p.started[i].Sub(p.started[i-1])
		if gap < want[i-1]*time.Millisecond {
			t.Errorf("restart %d after %v, want >= %vms", i, gap, want[i-1])
		}
	}
	mu.Lock()
	if len(logs) != 4 || !strings.Contains(logs[0], "qtsm-agent pid 1 exited with status 1; restarting in 10ms") {
		t.Errorf("logs = %q", logs)
	}
	mu.Unlock()
	s.Stop(time.Second)
	if s.Pid() != 0 {
		t.Errorf("Pid() after Stop = %d", s.Pid())
	}
	if got := strings.Join(p.signals, " "); got != "5:15" {
		t.Errorf("signals = %q, want 5:15 (SIGTERM to the running instance)", got)
	}
	n := p.count()
	time.Sleep(30 * time.Millisecond)
	if p.count() != n {
		t.Error("restarted after Stop")
	}
}

func TestStopEscalates(t *testing.T) {
	p := &procs{obey: false}
	s := &Supervisor{Name: "agent", Start: p.start, Kill: p.kill}
	if err := s.Go(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s.Stop(30 * time.Millisecond)
	if el := time.Since(start); el < 30*time.Millisecond || el > 2*time.Second {
		t.Errorf("Stop took %v", el)
	}
	if got := strings.Join(p.signals, " "); got != "1:15 1:9" {
		t.Errorf("signals = %q, want SIGTERM then SIGKILL", got)
	}
}

func TestStopWhileWaitingToRestart(t *testing.T) {
	p := &procs{obey: true}
	s := &Supervisor{Name: "agent", Start: p.start, Kill: p.kill, Backoff: Backoff{Initial: time.Hour, Max: time.Hour}}
	s.Go()
	p.exit(1, 2)
	waitFor(t, "exit noticed", func() bool { return s.Pid() == 0 })
	done := make(chan struct{})
	go func() { s.Stop(time.Second); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Stop during back-off hangs")
	}
	if p.count() != 1 || len(p.signals) != 0 {
		t.Errorf("starts %d, signals %q; want 1 start and no signal", p.count(), p.signals)
	}
}

func TestStartFailures(t *testing.T) {
	p := &procs{failFrom: 1}
	s := &Supervisor{Name: "agent", Start: p.start, Kill: p.kill}
	if err := s.Go(); err == nil {
		t.Error("Go with failing first start = nil")
	}
	s.Stop(time.Millisecond) // no-op, must not hang
	// A restart that fails is retried with back-off, not given up.
	p = &procs{failFrom: 2, obey: true}
	s = &Supervisor{Name: "agent", Start: p.start, Kill: p.kill, Backoff: Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond}}
	if err := s.Go(); err != nil {
		t.Fatal(err)
	}
	p.exit(1, 1)
	waitFor(t, "retries", func() bool { return s.Restarts() >= 3 })
	s.Stop(time.Second)
}

func TestBackoffReset(t *testing.T) {
	p := &procs{obey: true}
	s := &Supervisor{Name: "agent", Start: p.start, Kill: p.kill,
		Backoff: Backoff{Initial: 5 * time.Millisecond, Max: time.Hour, Reset: 20 * time.Millisecond}}
	s.Go()
	for i := 1; i <= 6; i++ {
		waitFor(t, "instance", func() bool { return s.Pid() == i })
		p.exit(i, 1)
	}
	// Back-off is now 320ms; an instance that runs past Reset brings it
	// back to 5ms. The restart is timed from the exit, and only has to be
	// well short of 320ms (a loaded machine, -race, may add tens of ms).
	waitFor(t, "instance 7", func() bool { return s.Pid() == 7 })
	time.Sleep(30 * time.Millisecond)
	exited := time.Now()
	p.exit(7, 1)
	waitFor(t, "instance 8", func() bool { return s.Pid() == 8 })
	if gap := p.started[7].Sub(exited); gap > 160*time.Millisecond {
		t.Errorf("restart after a long run took %v, want about 5ms (320ms without the reset)", gap)
	}
	s.Stop(time.Second)
}
