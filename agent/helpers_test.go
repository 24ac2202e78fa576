package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtenclave/enclave/agent"
	"github.com/qtenclave/enclave/agent/client"
	"github.com/qtenclave/enclave/qtsm"
)

// testAgent is an agent serving on a real Unix socket.
type testAgent struct {
	srv    *agent.Server
	socket string
	done   chan error
}

// startAgent serves module (a Transport wrapped in a Session, or a Module)
// on a socket in dir (t.TempDir() if empty).
func startAgent(t testing.TB, module *qtsm.Session, dir string, mod func(*agent.Config)) *testAgent {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := agent.Config{Module: module, Device: "fake", Logf: t.Logf}
	if mod != nil {
		mod(&cfg)
	}
	sock := filepath.Join(dir, "qtsm.sock")
	l, err := agent.Listen(sock, 0o660, -1)
	if err != nil {
		t.Fatalf("Listen(%s) = %v", sock, err)
	}
	a := &testAgent{srv: agent.New(cfg), socket: sock, done: make(chan error, 1)}
	go func() { a.done <- a.srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.srv.Shutdown(ctx)
		if err := <-a.done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve() = %v, want http.ErrServerClosed", err)
		}
		l.Close()
		os.Remove(sock)
	})
	return a
}

func (a *testAgent) client() *client.Client { return client.New(a.socket) }

// rawDo sends one raw HTTP request on a new connection and returns the
// status, the error name of a JSON error body ("" if none) and the body.
func rawDo(t testing.TB, socket, method, path string, header map[string]string, body []byte) (int, string, []byte) {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatalf("dial %s: %v", socket, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	req, err := http.NewRequest(method, "http://qtsm"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("NewRequest(%s %s): %v", method, path, err)
	}
	if body == nil {
		req.Body = nil
		req.ContentLength = 0
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if err := req.Write(c); err != nil {
		t.Fatalf("write request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatalf("%s %s: read response: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	name := ""
	if resp.StatusCode/100 != 2 {
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s %s: error answer has Content-Type %q, want application/json", method, path, ct)
		}
		name = errorName(b)
	}
	return resp.StatusCode, name, b
}

func errorName(b []byte) string {
	const key = `"error":"`
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return ""
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}
