package boot

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/qtenclave/enclave/init/reaper"
)

// TestLateProcs starts real children through a reaper that is started in
// the background: Start waits for it, and statuses arrive.
func TestLateProcs(t *testing.T) {
	sh := "/bin/sh"
	if _, err := os.Stat(sh); err != nil {
		t.Skipf("no %s: %v", sh, err)
	}
	p := StartReaper(reaper.Options{})
	defer p.procs().R.Stop()
	for _, tc := range []struct {
		script string
		want   int
	}{{"exit 0", 0}, {"exit 7", 7}} {
		pid, done, err := p.Start(Proc{Path: sh, Argv: []string{"sh", "-c", tc.script}, Dir: "/"})
		if err != nil {
			t.Fatalf("Start(sh -c %q): %v", tc.script, err)
		}
		select {
		case st := <-done:
			if st.Pid != pid || !st.Exited() || st.ExitStatus() != tc.want {
				t.Errorf("sh -c %q: status = %v, want pid %d exited with status %d", tc.script, st, pid, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("sh -c %q: no status after 10s", tc.script)
		}
	}
	pid, done, err := p.Start(Proc{Path: sh, Argv: []string{"sh", "-c", "sleep 30"}, Dir: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("Kill(%d): %v", pid, err)
	}
	if st := <-done; !st.Signaled() || st.Signal() != syscall.SIGKILL {
		t.Errorf("killed child: status = %v, want killed by SIGKILL", st)
	}
}
