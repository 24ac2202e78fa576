package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtenclave/enclave/agent"
	"github.com/qtenclave/enclave/agent/client"
	"github.com/qtenclave/enclave/agent/internal/fakemod"
	"github.com/qtenclave/enclave/qtsm"
)

func serve(t *testing.T, sock string, f *fakemod.Module, mod func(*agent.Config)) func() {
	t.Helper()
	cfg := agent.Config{Module: qtsm.NewSession(f), Logf: t.Logf}
	if mod != nil {
		mod(&cfg)
	}
	l, err := agent.Listen(sock, 0o600, -1)
	if err != nil {
		t.Fatal(err)
	}
	srv := agent.New(cfg)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		srv.Shutdown(context.Background())
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve() = %v", err)
		}
		l.Close()
	}
	t.Cleanup(stop)
	return stop
}

// TestReconnect: pooled connections closed by the agent (restart, idle
// timeout) are noticed and replaced, for GET and for POST alike.
func TestReconnect(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "qtsm.sock")
	ctx := context.Background()
	c := client.New(sock)
	defer c.Close()
	stop := serve(t, sock, fakemod.New(), nil)
	if _, err := c.Describe(ctx); err != nil {
		t.Fatalf("Describe() = %v", err)
	}
	stop()
	serve(t, sock, fakemod.New(), func(c *agent.Config) { c.IdleTimeout = 100 * time.Millisecond })
	if _, err := c.ExtendPCR(ctx, 16, []byte("a")); err != nil {
		t.Errorf("ExtendPCR() after an agent restart = %v, want the stale connection replaced", err)
	}
	time.Sleep(300 * time.Millisecond) // the agent closes the idle connection
	if _, err := c.ExtendPCR(ctx, 16, []byte("b")); err != nil {
		t.Errorf("ExtendPCR() after the idle timeout = %v", err)
	}
	if _, err := c.GetRandom(ctx); err != nil {
		t.Errorf("GetRandom() = %v", err)
	}
}

// TestCancel: a call whose context ends returns at once with its error;
// the connection is not reused with a half-read answer.
func TestCancel(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "qtsm.sock")
	f := fakemod.New()
	f.Gate = make(chan struct{}, 10)
	serve(t, sock, f, nil)
	c := client.New(sock)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Describe(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("Describe() with a stuck device = %v after %v, want DeadlineExceeded promptly", err, time.Since(start))
	}
	f.Gate <- struct{}{} // the stuck request finishes
	f.Gate <- struct{}{}
	d, err := c.Describe(context.Background())
	if err != nil || d.ModuleID != "fake-module" {
		t.Errorf("Describe() after a cancelled call = %+v, %v", d, err)
	}
}

func TestDecodeError(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		check  func(error) bool
	}{
		{409, `{"error":"ReadOnlyIndex","op":"ExtendPCR"}`, func(err error) bool {
			var qe *qtsm.Error
			return errors.Is(err, qtsm.ErrReadOnlyIndex) && errors.As(err, &qe) && qe.Op == "ExtendPCR"
		}},
		{403, `{"error":"PermissionDenied","detail":"uid 1"}`, func(err error) bool { return errors.Is(err, client.ErrPermissionDenied) }},
		{503, `{"error":"Busy"}`, func(err error) bool { return errors.Is(err, client.ErrBusy) }},
		{502, `{"error":"NewDeviceError"}`, func(err error) bool {
			var qe *qtsm.Error
			return errors.As(err, &qe) && qe.Code == qtsm.CodeUnknown && qe.Name == "NewDeviceError"
		}},
		{500, `not json`, func(err error) bool {
			var ce *client.Error
			return errors.As(err, &ce) && ce.Status == 500 && ce.Name == "HTTP 500" && ce.Detail == "not json"
		}},
		{400, `{"error":""}`, func(err error) bool {
			var ce *client.Error
			return errors.As(err, &ce) && ce.Name == "HTTP 400"
		}},
	} {
		if err := client.DecodeError(tc.status, []byte(tc.body)); err == nil || !tc.check(err) {
			t.Errorf("DecodeError(%d, %s) = %#v", tc.status, tc.body, err)
		}
	}
}

func FuzzDecodeError(f *testing.F) {
	f.Add(409, []byte(`{"error":"ReadOnlyIndex","op":"ExtendPCR","detail":"x"}`))
	f.Add(503, []byte(`{"error":"Busy"}`))
	f.Add(500, []byte(`{"error":1}`))
	f.Add(400, []byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		err := client.DecodeError(status, body)
		if err == nil {
			t.Fatalf("DecodeError(%d, %q) = nil", status, body)
		}
		var qe *qtsm.Error
		var ce *client.Error
		if !errors.As(err, &qe) && !errors.As(err, &ce) {
			t.Fatalf("DecodeError(%d, %q) = %T, want *qtsm.Error or *client.Error", status, body, err)
		}
		if len(err.Error()) > len(body)+300 {
			t.Fatalf("DecodeError message %d bytes for a %d-byte body", len(err.Error()), len(body))
		}
	})
}

// TestCall: every request type through Call answers like a session.
func TestCall(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "qtsm.sock")
	serve(t, sock, fakemod.New(), nil)
	c := client.New(sock)
	defer c.Close()
	ref := qtsm.NewSession(fakemod.New())
	ctx := context.Background()
	for _, req := range []qtsm.Request{
		qtsm.DescribeRequest{},
		qtsm.DescribePCRRequest{Index: 3},
		qtsm.ExtendPCRRequest{Index: 16, Data: []byte{1, 2, 3}},
		qtsm.LockPCRRequest{Index: 16},
		qtsm.LockPCRRequest{Index: 16},
		qtsm.LockPCRsRequest{Range: 20},
		qtsm.DescribePCRRequest{Index: 19},
	} {
		got, err := c.Call(ctx, req)
		want, werr := ref.Call(ctx, req)
		if fmt.Sprint(got) != fmt.Sprint(want) || (err == nil) != (werr == nil) || (err != nil && !errors.Is(err, werr)) {
			t.Errorf("Call(%#v) = %v, %v; session says %v, %v", req, got, err, want, werr)
		}
	}
	if r, err := c.Call(ctx, qtsm.GetRandomRequest{}); err != nil || len(r.(qtsm.GetRandomResponse).Random) != 256 {
		t.Errorf("Call(GetRandom) = %v, %v", r, err)
	}
	if r, err := c.Call(ctx, qtsm.AttestationRequest{Nonce: []byte("n")}); err != nil || len(r.(qtsm.AttestationResponse).Document) == 0 {
		t.Errorf("Call(Attestation) = %v, %v", r, err)
	}
}

// TestOpen: a live agent gives a client; a dead agent's socket or no socket
// falls back to the device.
func TestOpen(t *testing.T) {
	if _, err := qtsm.DetectDevice(); err == nil {
		t.Skip("skipped: this machine has a secure-module device; the fallback would use it")
	}
	sock := filepath.Join(t.TempDir(), "qtsm.sock")
	stop := serve(t, sock, fakemod.New(), nil)
	m, err := client.Open(sock)
	if _, ok := m.(*client.Client); err != nil || !ok {
		t.Fatalf("Open(live agent) = %T, %v, want *client.Client", m, err)
	}
	m.Close()
	stop() // leaves the socket file behind, nobody listening
	if _, err := client.Open(sock); err == nil || !strings.Contains(err.Error(), "not listening") || !errors.Is(err, qtsm.ErrNoDevice) {
		t.Errorf("Open(dead agent's socket) = %v, want the device fallback's ErrNoDevice", err)
	}
	if _, err := client.Open(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "no agent at") || !errors.Is(err, qtsm.ErrNoDevice) {
		t.Errorf("Open(no socket) = %v, want the device fallback's ErrNoDevice", err)
	}
}
