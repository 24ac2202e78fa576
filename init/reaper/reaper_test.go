package reaper

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const helperEnv = "QTENCLAVE_REAPER_HELPER"

// TestMain turns the test binary into the helper programs the subreaper
// test starts: "exit:N", "orphan:N" (start a sleeping grandchild, exit N
// without waiting), "sleep" and "trap:N" (say "ready" on fd 3, exit N on
// SIGTERM, SIGINT or SIGHUP).
func TestMain(m *testing.M) {
	mode, arg, _ := strings.Cut(os.Getenv(helperEnv), ":")
	n, _ := strconv.Atoi(arg)
	switch mode {
	case "":
		os.Exit(m.Run())
	case "exit":
		os.Exit(n)
	case "sleep":
		time.Sleep(300 * time.Millisecond)
		os.Exit(0)
	case "orphan":
		attr := &syscall.ProcAttr{Env: []string{helperEnv + "=sleep"}, Files: []uintptr{0, 1, 2}}
		if _, err := syscall.ForkExec("/proc/self/exe", []string{"sleeper"}, attr); err != nil {
			fmt.Fprintln(os.Stderr, "orphan:", err)
			os.Exit(99)
		}
		os.Exit(n)
	case "trap":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
		os.NewFile(3, "ready").Write([]byte("ready\n"))
		s := <-c
		os.Exit(n + int(s.(syscall.Signal)))
	}
	os.Exit(100)
}

func TestStatusString(t *testing.T) {
	for ws, want := range map[syscall.WaitStatus]string{
		3 << 8: "pid 7 exited with status 3",
		9:      "pid 7 killed by signal 9 (killed)",
	} {
		if got := (Status{7, ws}).String(); got != want {
			t.Errorf("Status(%#x).String() = %q, want %q", uint32(ws), got, want)
		}
	}
}

// TestSubreaper runs the reaper for real in a child process that makes
// itself a child subreaper (PR_SET_CHILD_SUBREAPER), standing in for PID 1:
// orphans are reaped, the workload's status is never stolen, and SIGTERM,
// SIGINT and SIGHUP sent to "init" are forwarded to the workload while
// "init" survives them.
func TestSubreaper(t *testing.T) {
	if os.Getenv("QTENCLAVE_REAPER_SUBREAPER") == "1" {
		subreaper(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSubreaper$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "QTENCLAVE_REAPER_SUBREAPER=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestSubreaper") {
		t.Fatalf("subreaper process failed (%v):\n%s", err, out)
	}
	if testing.Verbose() {
		t.Logf("subreaper process:\n%s", out)
	}
}

func subreaper(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	var mu sync.Mutex
	var logs []string
	r := Start(Options{Logf: func(f string, a ...any) {
		mu.Lock()
		logs = append(logs, fmt.Sprintf(f, a...))
		mu.Unlock()
	}})
	defer r.Stop()
	start := func(mode string, files ...uintptr) (int, <-chan Status) {
		t.Helper()
		attr := &syscall.ProcAttr{Env: []string{helperEnv + "=" + mode}, Files: append([]uintptr{0, 1, 2}, files...),
			Sys: &syscall.SysProcAttr{Setsid: true}}
		pid, ch, err := r.StartProcess("/proc/self/exe", []string{mode}, attr)
		if err != nil {
			t.Fatalf("StartProcess(%s): %v", mode, err)
		}
		return pid, ch
	}
	wait := func(what string, ch <-chan Status) Status {
		t.Helper()
		select {
		case st := <-ch:
			return st
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no status after 10s", what)
		}
		return Status{}
	}

	// 1. A workload that leaves orphans behind: its own status is exact and
	// every orphan is reaped by the same reaper.
	const workloads = 20
	chans := make([]<-chan Status, workloads)
	for i := range chans {
		_, chans[i] = start(fmt.Sprintf("orphan:%d", i+1))
	}
	// Meanwhile, many quick children that exit at once (the race between
	// fork and registration).
	quick := make([]<-chan Status, 50)
	for i := range quick {
		_, quick[i] = start(fmt.Sprintf("exit:%d", 200+i%50))
	}
	for i, ch := range chans {
		if st := wait("orphan workload", ch); !st.Exited() || st.ExitStatus() != i+1 {
			t.Errorf("workload %d: %v, want exit %d", i, st, i+1)
		}
	}
	for i, ch := range quick {
		if st := wait("quick child", ch); !st.Exited() || st.ExitStatus() != 200+i%50 {
			t.Errorf("quick child %d: %v, want exit %d", i, st, 200+i%50)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Orphans() < workloads && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := r.Orphans(); got != workloads {
		t.Errorf("orphans reaped = %d, want %d", got, workloads)
	}
	// No zombie and no child left.
	if _, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); err != syscall.ECHILD {
		t.Errorf("wait4 after reaping = %v, want ECHILD (children left)", err)
	}

	// 2. Signals sent to init are forwarded to the workload; init survives.
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		pid, ch := start("trap:100", pw.Fd())
		pw.Close()
		if line, err := bufio.NewReader(pr).ReadString('\n'); err != nil || line != "ready\n" {
			t.Fatalf("trap helper: %q, %v", line, err)
		}
		pr.Close()
		r.ForwardTo(pid)
		if err := syscall.Kill(os.Getpid(), sig); err != nil {
			t.Fatal(err)
		}
		st := wait("trap workload", ch)
		if !st.Exited() || st.ExitStatus() != 100+int(sig) {
			t.Errorf("after %v to init, workload %v, want exit %d", sig, st, 100+int(sig))
		}
	}
	// 3. With no workload, a SIGTERM to init is dropped and init lives on,
	// as it does through every signal that would end a Go program.
	r.ForwardTo(0)
	for _, s := range Caught {
		syscall.Kill(os.Getpid(), s.(syscall.Signal))
	}
	for _, s := range []syscall.Signal{syscall.SIGALRM, syscall.SIGXCPU, syscall.SIGXFSZ, syscall.SIGVTALRM, syscall.SIGIO, syscall.SIGPWR, syscall.SIGCONT} {
		syscall.Kill(os.Getpid(), s) // ignored by the Go runtime when not handled
	}
	syscall.Kill(os.Getpid(), syscall.Signal(37)) // a real-time signal
	time.Sleep(100 * time.Millisecond)
	found := false
	mu.Lock()
	defer mu.Unlock()
	for _, l := range logs {
		if strings.Contains(l, "terminated ignored") || strings.Contains(l, "signal terminated ignored") {
			found = true
		}
	}
	if !found {
		t.Errorf("SIGTERM without workload not reported as ignored; log: %q", logs)
	}
}

func TestSpawnError(t *testing.T) {
	if os.Getenv("QTENCLAVE_REAPER_SUBREAPER") != "" {
		t.Skip()
	}
	// Spawn passes the start error through and registers nothing. This runs
	// in the test process itself, without touching signal handling.
	r := &Reaper{waiters: map[int]chan Status{}}
	if _, _, err := r.StartProcess("/nonexistent/prog", []string{"x"}, &syscall.ProcAttr{}); err != syscall.ENOENT {
		t.Errorf("StartProcess(missing) = %v, want ENOENT", err)
	}
	if len(r.waiters) != 0 {
		t.Errorf("%d waiters registered after failed start", len(r.waiters))
	}
}
