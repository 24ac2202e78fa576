package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qtenclave/enclave/agent/client"
	"github.com/qtenclave/enclave/qtsm"
)

// syncBuffer is a bytes.Buffer safe for the agent's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"--mode", "999"}, 2, "octal"},
		{[]string{"--mode", "01777"}, 2, "octal"},
		{[]string{"--group", "no-such-group-qtsm"}, 2, "--group"},
		{[]string{"--timeout", "0s"}, 2, "--timeout"},
		{[]string{"--max-queue", "0"}, 2, "--max-queue"},
		{[]string{"--sim=bogus"}, 2, "want nitro or qingtian"},
		{[]string{"--sim", "--device", "/dev/nsm"}, 2, "exclusive"},
		{[]string{"extra"}, 2, "unexpected arguments"},
		{[]string{"--listen-fd", "1"}, 2, "--listen-fd 1: want a descriptor above 2"},
		{[]string{"--egress-allow", "a.example"}, 2, "go with --egress-fd"},
		{[]string{"--egress-fd", "2", "--egress-allow", "a.example"}, 2, "--egress-fd 2: want a descriptor above 2"},
		{[]string{"--egress-fd", "9", "--egress-allow", "a.*b.example"}, 2, `egress rule "a.*b.example"`},
		{[]string{"--device", "/nonexistent/nsm"}, 1, "open secure module /nonexistent/nsm"},
		{[]string{"--device-wait", "100ms"}, 1, "no secure-module device"},
	} {
		if len(tc.args) == 2 && tc.args[0] == "--device-wait" {
			if _, err := qtsm.DetectDevice(); err == nil {
				continue // this machine has a device
			}
		}
		var errb syncBuffer
		code := run(context.Background(), tc.args, &errb, &errb)
		if code != tc.code || !strings.Contains(errb.String(), tc.err) {
			t.Errorf("qtsm-agent %q = %d %q, want %d and %q", tc.args, code, errb.String(), tc.code, tc.err)
		}
	}
}

// TestRunSimulator starts the daemon on the simulator, waits for its ready
// signals, uses it, then stops it as SIGTERM would.
func TestRunSimulator(t *testing.T) {
	if !haveSim {
		t.Skip("skipped: built with -tags nosim")
	}
	for _, vendor := range []string{"--sim", "--sim=qingtian"} {
		t.Run(vendor, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "run", "qtsm.sock")
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			// A child would inherit the pipe as fd N; here it is a dup
			// of ours, which the agent closes.
			fd, err := syscall.Dup(int(w.Fd()))
			if err != nil {
				t.Fatal(err)
			}
			w.Close()
			ctx, stop := context.WithCancel(context.Background())
			var logs syncBuffer
			done := make(chan int, 1)
			go func() {
				done <- run(ctx, []string{vendor, "--socket", sock, "--mode", "0600", "--ready-fd", itoa(fd)}, &logs, &logs)
			}()
			line, err := bufio.NewReader(r).ReadString('\n')
			if err != nil || line != "ready\n" {
				t.Fatalf("ready fd gave %q, %v, want \"ready\\n\" (logs: %s)", line, err, logs.String())
			}
			fi, err := os.Stat(sock)
			if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
				t.Errorf("socket %s = %v, %v, want a 0600 socket when ready", sock, fi, err)
			}
			want := "qtsm-agent: listening on " + sock + " (device simulator ("
			if !strings.Contains(logs.String(), want) {
				t.Errorf("logs = %q, want a line %q", logs.String(), want)
			}
			c := client.New(sock)
			d, err := c.Describe(context.Background())
			if err != nil || d.MaxPCRs != 32 {
				t.Errorf("Describe() = %+v, %v", d, err)
			}
			if _, err := c.Attestation(context.Background(), qtsm.AttestationRequest{Nonce: []byte("n")}); err != nil {
				t.Errorf("Attestation() = %v", err)
			}
			stop()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("run() after stop = %d, want 0 (logs: %s)", code, logs.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatal("agent did not stop")
			}
			if _, err := os.Lstat(sock); !os.IsNotExist(err) {
				t.Errorf("socket after stop: %v, want removed", err)
			}
		})
	}
}

// TestRunSocketActivation: the agent serves a listening socket it inherits
// (--listen-fd), including a connection made before it started, and leaves
// the socket to its owner when it stops.
func TestRunSocketActivation(t *testing.T) {
	if !haveSim {
		t.Skip("skipped: built with -tags nosim")
	}
	sock := filepath.Join(t.TempDir(), "qtsm.sock")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	f, err := ul.File() // the descriptor init would pass; a dup the agent closes
	if err != nil {
		t.Fatal(err)
	}
	ul.Close()
	defer f.Close()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}

	// An application connects before the agent runs.
	early := make(chan error, 1)
	go func() {
		_, err := client.New(sock).Describe(context.Background())
		early <- err
	}()
	time.Sleep(50 * time.Millisecond)

	ctx, stop := context.WithCancel(context.Background())
	var logs syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"--sim", "--socket", sock, "--listen-fd", itoa(fd)}, &logs, &logs) }()
	select {
	case err := <-early:
		if err != nil {
			t.Errorf("Describe() made before the agent started = %v (logs: %s)", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the early connection was not served (logs: %s)", logs.String())
	}
	stop()
	if code := <-done; code != 0 {
		t.Errorf("run() after stop = %d, want 0 (logs: %s)", code, logs.String())
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("inherited socket after stop: %v, %v; want it left in place", fi, err)
	}
	// Still listening (the owner's copy): a new connection is accepted by
	// the kernel and waits for the next agent.
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		t.Errorf("dial after the agent stopped = %v, want a queued connection", err)
	} else {
		c.Close()
	}

	// An agent that cannot open its device does not leave a waiting
	// application hanging.
	waiting := make(chan error, 1)
	go func() {
		_, err := client.New(sock).Describe(context.Background())
		waiting <- err
	}()
	time.Sleep(50 * time.Millisecond)
	fd2, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	var errd syncBuffer
	if code := run(context.Background(), []string{"--device", "/nonexistent/nsm", "--socket", sock, "--listen-fd", itoa(fd2)}, &errd, &errd); code != 1 {
		t.Errorf("qtsm-agent --device /nonexistent/nsm = %d, want 1 (logs: %s)", code, errd.String())
	}
	select {
	case err := <-waiting:
		if err == nil {
			t.Error("Describe() waiting on an agent that failed to start = nil error")
		}
	case <-time.After(10 * time.Second):
		t.Errorf("a connection waiting on an agent that failed to start was left hanging (logs: %s)", errd.String())
	}

	var errb syncBuffer
	if code := run(context.Background(), []string{"--sim", "--listen-fd", "99"}, &errb, &errb); code != 1 || !strings.Contains(errb.String(), "--listen-fd 99") {
		t.Errorf("qtsm-agent --listen-fd 99 (closed) = %d %q, want 1 and an error naming it", code, errb.String())
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
