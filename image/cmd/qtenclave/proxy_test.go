//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qtenclave/enclave/proto/egress"
	"github.com/qtenclave/enclave/proto/tunnel"
)

// fakeVsock replaces the AF_VSOCK listener with loopback TCP for the
// duration of a test and hands the listeners out.
func fakeVsock(t *testing.T) chan net.Listener {
	t.Helper()
	got := make(chan net.Listener, 4)
	old := listenVsock
	listenVsock = func(port uint32) (net.Listener, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			got <- l
		}
		return l, err
	}
	t.Cleanup(func() { listenVsock = old })
	return got
}

func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return l.Addr().String()
}

// syncBuf is a bytes.Buffer safe for a command writing while the test
// reads.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestVsockProxy(t *testing.T) {
	addr := echoServer(t)
	_, port, _ := net.SplitHostPort(addr)
	cfg := filepath.Join(t.TempDir(), "vsock-proxy.yaml")
	os.WriteFile(cfg, []byte("allowlist:\n- {address: localhost, port: "+port+"}\n- {address: kms.example, port: 443}\n"), 0o644)

	// Refusals before anything listens.
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"proxy", "vsock-proxy", "--config", cfg, "8000", "other.invalid", "443"}, exitFailed, "not allowed"},
		{[]string{"proxy", "vsock-proxy", "--config", cfg, "8000", "localhost"}, exitUsage, "want LOCALPORT HOST PORT"},
		{[]string{"proxy", "vsock-proxy", "--config", cfg, "0", "localhost", port}, exitUsage, "local port"},
		{[]string{"proxy", "vsock-proxy", "--config", cfg, "8000", "localhost", "99999"}, exitUsage, "remote port"},
		{[]string{"proxy", "vsock-proxy", "-4", "-6", "--config", cfg, "8000", "localhost", port}, exitUsage, "exclude"},
		{[]string{"proxy", "vsock-proxy", "--config", filepath.Join(t.TempDir(), "none"), "8000", "localhost", port}, exitFailed, "no such file"},
	} {
		old := listenVsock
		listenVsock = func(uint32) (net.Listener, error) { t.Errorf("%q listened", c.args); return nil, io.EOF }
		code, _, stderr := cli(t, c.args...)
		listenVsock = old
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("%q = %d %q, want %d and %q", c.args, code, stderr, c.code, c.msg)
		}
	}

	// Allowed by name (localhost, as in the allowlist): raw bytes both ways.
	ls := fakeVsock(t)
	done := make(chan int, 1)
	var errb syncBuf
	go func() {
		done <- run([]string{"proxy", "vsock-proxy", "-4", "--config", cfg, "8000", "localhost", port}, strings.NewReader(""), io.Discard, &errb)
	}()
	l := <-ls
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "\x16\x03\x01 raw bytes, as TLS would be")
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "\x16\x03\x01 raw bytes, as TLS would be" {
		t.Errorf("through vsock-proxy: %q", got)
	}
	l.Close()
	if code := <-done; code != 0 {
		t.Errorf("vsock-proxy after its listener closed = %d: %s", code, errb.String())
	}
}

// TestProxyTunnels: qtenclave proxy --eif serves the image's tunnels; the
// operator's --egress-allow narrows them (both must allow).
func TestProxyTunnels(t *testing.T) {
	f := newFixture(t)
	addr := echoServer(t)
	_, port, _ := net.SplitHostPort(addr)
	out := filepath.Join(t.TempDir(), "egress.eif")
	if code, _, stderr := cli(t, f.buildArgs(out, "--egress-allow", "echo.test:"+port, "--egress-allow", "other.test:"+port)...); code != 0 {
		t.Fatalf("build = %d: %s", code, stderr)
	}
	ls := fakeVsock(t)
	done := make(chan int, 1)
	var errb, outb syncBuf
	go func() {
		done <- run([]string{"proxy", "--eif", out, "--egress-allow", "echo.test:" + port, "--egress-host", "echo.test=127.0.0.1", "--egress-host", "other.test=127.0.0.1"},
			strings.NewReader(""), &outb, &errb)
	}()
	statusL := <-ls // the exit status port, listened on first
	l := <-ls       // the egress port
	logL := <-ls    // the log stream port
	// A log stream: its records are printed, each line whole.
	lc, err := net.Dial("tcp", logL.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(lc, "qtenclave-log 1\nstdout hello from the workload\nstderr+part one, \nstderr part two\n")
	lc.(*net.TCPConn).CloseWrite()
	lc.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.ReadAll(lc) // the proxy's close acknowledges the stream
	lc.Close()
	if got := outb.String(); !strings.Contains(got, "stdout: hello from the workload\n") || !strings.Contains(got, "stderr: part one, part two\n") {
		t.Errorf("log stream printed %q", got)
	}
	open := func(dest string) (net.Conn, error) {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return nil, err
		}
		d, err := egress.ParseDestination(dest)
		if err != nil {
			t.Fatal(err)
		}
		tunnel.WriteRequest(c, d)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tunnel.ReadAnswer(c); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	c, err := open("echo.test:" + port)
	if err != nil {
		t.Fatalf("tunnel to echo.test: %v", err)
	}
	fmt.Fprint(c, "hello")
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "hello" {
		t.Errorf("through the tunnel: %q", got)
	}
	if _, err := open("other.test:" + port); err == nil || !strings.Contains(err.Error(), "operator allowlist: default deny") {
		t.Errorf("tunnel to other.test (image allows, operator does not) = %v", err)
	}
	if _, err := open("third.test:" + port); err == nil || !strings.Contains(err.Error(), "image policy: default deny") {
		t.Errorf("tunnel to third.test = %v", err)
	}
	// The enclave's exit status ends the proxy with that code; a malformed
	// one first is ignored.
	for _, msg := range []string{"EXIT banana\n", "EXIT 7\n"} {
		sc, err := net.Dial("tcp", statusL.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(sc, msg)
		sc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := sc.Read(make([]byte, 1)); err != io.EOF { // the close is the acknowledgement
			t.Errorf("after %q: %v, want the proxy's close", msg, err)
		}
		sc.Close()
	}
	select {
	case code := <-done:
		if code != 7 || !strings.Contains(errb.String(), "enclave exited: qtenclave-exit: code=7") {
			t.Errorf("proxy after the enclave's EXIT 7 = %d: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("proxy did not end")
	}
	l.Close()
}
