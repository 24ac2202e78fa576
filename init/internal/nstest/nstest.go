// Package nstest runs a test of the current test binary again in new Linux
// namespaces (mount, PID, network, UTS), so privileged code — mounts, the
// switch root, loopback, even a whole boot as PID 1 — is tested for real
// without touching the host. Tests skip with a clear message where the
// machine does not allow it.
package nstest

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

const envVar = "QTENCLAVE_NSTEST"

// Child reports whether this process is the re-run of test name inside the
// namespaces.
func Child(name string) bool { return os.Getenv(envVar) == name }

// Result is the finished child.
type Result struct {
	Output string
	State  *os.ProcessState
	Err    error
}

// Run re-runs test name (which must call Child(name) first thing) in new
// namespaces given by cloneflags, with extra environment entries. It skips
// t when the process is not root or the kernel refuses the namespaces.
func Run(t *testing.T, name string, cloneflags uintptr, env ...string) Result {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("namespace test needs root (run the tests as root to cover the privileged path)")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.count=1", "-test.v")
	cmd.Env = append(append(os.Environ(), envVar+"="+name), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneflags, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC) {
			t.Skipf("kernel refuses new namespaces (%v): privileged path not covered on this machine", err)
		}
		t.Fatalf("start namespaced child: %v", err)
	}
	return Result{Output: string(out), State: cmd.ProcessState, Err: err}
}

// MustPass fails t with the child's output unless the child passed.
func (r Result) MustPass(t *testing.T) {
	t.Helper()
	if r.Err != nil || !strings.Contains(r.Output, "\nPASS") && !strings.HasPrefix(r.Output, "PASS") {
		t.Fatalf("namespaced child failed (%v):\n%s", r.Err, r.Output)
	}
	if testing.Verbose() {
		t.Logf("namespaced child output:\n%s", r.Output)
	}
	if strings.Contains(r.Output, "--- SKIP") {
		t.Skipf("namespaced child skipped:\n%s", r.Output)
	}
}

// StaticSelf reports whether the running test binary is statically linked,
// so that a copy of it can run inside a test root file system without a
// dynamic loader (it is not under -race, which needs cgo).
func StaticSelf() bool {
	f, err := elf.Open("/proc/self/exe")
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}
