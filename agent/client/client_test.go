package client_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
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
