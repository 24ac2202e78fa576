package boot

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qtenclave/enclave/init/console"
	"github.com/qtenclave/enclave/init/vsock"
	"github.com/qtenclave/enclave/proto/status"
)

func stopRig(t *testing.T, manifest string) (*rig, *fakeListener) {
	t.Helper()
	tree := baseTree()
	tree["launch.json"] = entry{manifest, 0}
	r := newRig(t, tree, "qtenclave.control_port=9003")
	l := newFakeListener()
	r.b.Listen = func(port uint32) (vsock.Listener, error) {
		r.ev.add("listen vsock %d", port)
		return l, nil
	}
	return r, l
}

// TestStopGraceful: the parent's stop request reaches the workload as
// SIGTERM to its process group; a workload that traps it and exits 0
// ends the enclave with status 0 (issue 14, item 12).
func TestStopGraceful(t *testing.T) {
	r, l := stopRig(t, `{"version":1,"cmd":["/bin/app"]}`)
	started := make(chan struct{})
	r.procs.workload = func(p Proc, kill <-chan syscall.Signal) syscall.WaitStatus {
		close(started)
		for s := range kill {
			if s == syscall.SIGTERM {
				return exitCode(0) // trapped: a clean exit
			}
		}
		return exitCode(1)
	}
	done := make(chan status.Status, 1)
	go func() { done <- r.finish(t) }()
	<-started
	if ans := l.connect(t, "STOP 0\n"); ans != "OK\n" {
		t.Fatalf("answer to STOP = %q, want OK", ans)
	}
	if st := <-done; st != status.Exit(0) {
		t.Errorf("status = %+v, want exit 0", st)
	}
	r.before(t, "listen vsock 9003", "start /bin/app", "kill -42 15", "exit 42", "dial 3:9001", "reboot")
	for _, want := range []string{"init: step control ok in ", "port 9003, stop grace 10s", "stop requested by the parent: SIGTERM to the workload's process group 42, SIGKILL in 10s"} {
		if !strings.Contains(r.out.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, r.out.String())
		}
	}
}

// TestStopGraceOver: a workload that ignores SIGTERM gets SIGKILL when the
// grace period (the request's, here) is over, and its status says so.
func TestStopGraceOver(t *testing.T) {
	r, l := stopRig(t, `{"version":1,"cmd":["/bin/app"],"stop_timeout":30}`)
	started := make(chan struct{})
	r.procs.workload = func(p Proc, kill <-chan syscall.Signal) syscall.WaitStatus {
		close(started)
		for s := range kill {
			if s == syscall.SIGKILL {
				return syscall.WaitStatus(syscall.SIGKILL)
			}
		}
		return exitCode(1)
	}
	done := make(chan status.Status, 1)
	go func() { done <- r.finish(t) }()
	<-started
	if ans := l.connect(t, "STOP 50\n"); ans != "OK\n" {
		t.Fatalf("answer to STOP = %q", ans)
	}
	if st := <-done; st != status.Killed(9) {
		t.Errorf("status = %+v, want killed by 9", st)
	}
	r.before(t, "kill -42 15", "kill -42 9", "exit 42")
	if !strings.Contains(r.out.String(), "grace period of 50ms over: SIGKILL") {
		t.Errorf("console lacks the SIGKILL line:\n%s", r.out.String())
	}
	if !strings.Contains(r.out.String(), "stop grace 30s") {
		t.Errorf("console lacks the manifest's grace:\n%s", r.out.String())
	}
}

// TestStopBadRequest: a malformed request is refused and stops nothing.
func TestStopBadRequest(t *testing.T) {
	r, l := stopRig(t, `{"version":1,"cmd":["/bin/app"]}`)
	started := make(chan struct{})
	release := make(chan struct{})
	r.procs.workload = func(p Proc, kill <-chan syscall.Signal) syscall.WaitStatus {
		close(started)
		<-release
		return exitCode(3)
	}
	done := make(chan status.Status, 1)
	go func() { done <- r.finish(t) }()
	<-started
	if ans := l.connect(t, "HALT\n"); !strings.HasPrefix(ans, "ERR ") {
		t.Errorf("answer to HALT = %q, want ERR", ans)
	}
	close(release)
	if st := <-done; st != status.Exit(3) {
		t.Errorf("status = %+v, want exit 3", st)
	}
	if r.ev.index("kill -42") >= 0 {
		t.Errorf("a malformed request signalled the workload")
	}
}

// TestStopBeforeTheWorkloadRuns: a request that comes while the workload
// is being started is carried out as soon as it runs (the window between
// the process starting and init knowing its pid); one after its end is
// refused.
func TestStopBeforeTheWorkloadRuns(t *testing.T) {
	ev := &events{}
	procs := newProcs(ev)
	b := &Boot{Con: console.New(&syncBuffer{}), Procs: procs}
	s := &stopper{b: b, grace: time.Hour}
	if err := s.stop(0); err != nil {
		t.Fatalf("stop before the workload = %v, want it taken", err)
	}
	if ev.index("kill") >= 0 {
		t.Fatalf("signalled before the workload ran: %q", ev.all())
	}
	s.running(42)
	if ev.index("kill -42 15") < 0 {
		t.Errorf("no SIGTERM once the workload ran: %q", ev.all())
	}
	s.running(0)
	if err := s.stop(0); err == nil {
		t.Errorf("stop after the workload ended = nil, want refused")
	}
}
