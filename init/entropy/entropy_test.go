package entropy

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/device"
)

// fakeModule is a qtsm.Transport that answers GetRandom with chunks of
// counting bytes, failing after failAfter answers when set.
type fakeModule struct {
	chunk     int
	calls     int
	failAfter int
	next      byte
}

func (f *fakeModule) RoundTrip(_ context.Context, req []byte) ([]byte, error) {
	r, err := qtsm.DecodeRequest(req)
	if err != nil {
		return nil, err
	}
	if _, ok := r.(qtsm.GetRandomRequest); !ok {
		return qtsm.EncodeResponse(qtsm.ErrorResponse{Name: "InvalidOperation"})
	}
	f.calls++
	if f.failAfter > 0 && f.calls > f.failAfter {
		return qtsm.EncodeResponse(qtsm.ErrorResponse{Name: "InternalError"})
	}
	b := make([]byte, f.chunk)
	for i := range b {
		b[i] = f.next
		f.next++
	}
	return qtsm.EncodeResponse(qtsm.GetRandomResponse{Random: b})
}

func (f *fakeModule) Close() error { return nil }

type fakePool struct {
	added   []byte
	bits    int
	ready   bool
	wakeIn  time.Duration
	addErr  error
	waited  bool
	readyEr error
}

func (p *fakePool) AddEntropy(data []byte, bits int) error {
	if p.addErr != nil {
		return p.addErr
	}
	p.added = append(p.added, data...)
	p.bits += bits
	if p.bits >= 256 {
		p.ready = true
	}
	return nil
}

func (p *fakePool) Ready() (bool, error) { return p.ready, p.readyEr }

func (p *fakePool) WaitReady(ctx context.Context) error {
	p.waited = true
	if p.wakeIn < 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	select {
	case <-time.After(p.wakeIn):
		p.ready = true
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func noRetry() qtsm.Option { return qtsm.WithRetry(qtsm.RetryPolicy{Attempts: 1}) }

func TestSeed(t *testing.T) {
	for _, tc := range []struct {
		name      string
		chunk, n  int
		wantCalls int
	}{
		{"one call", 256, 64, 1},
		{"several calls", 16, 64, 4},
		{"partial last chunk", 48, 64, 2},
		{"default size", 32, 0, 2},
	} {
		mod := &fakeModule{chunk: tc.chunk}
		pool := &fakePool{}
		got, err := Seed(context.Background(), qtsm.NewSession(mod, noRetry()), pool, tc.n)
		want := tc.n
		if want == 0 {
			want = DefaultBytes
		}
		if err != nil || got != want {
			t.Errorf("%s: Seed = %d, %v, want %d", tc.name, got, err, want)
		}
		if mod.calls != tc.wantCalls {
			t.Errorf("%s: %d GetRandom calls, want %d", tc.name, mod.calls, tc.wantCalls)
		}
		if len(pool.added) != want || pool.bits != 8*want {
			t.Errorf("%s: pool got %d bytes crediting %d bits, want %d bytes %d bits", tc.name, len(pool.added), pool.bits, want, 8*want)
		}
		// The bytes are the module's, in order.
		for i, b := range pool.added {
			if b != byte(i) {
				t.Errorf("%s: byte %d = %d, not the module's", tc.name, i, b)
				break
			}
		}
	}
}

func TestSeedModuleFailure(t *testing.T) {
	// The module fails after one answer: the bytes obtained are still used.
	mod := &fakeModule{chunk: 16, failAfter: 1}
	pool := &fakePool{}
	got, err := Seed(context.Background(), qtsm.NewSession(mod, noRetry()), pool, 64)
	if err == nil || got != 16 || len(pool.added) != 16 {
		t.Errorf("Seed with failing module = %d, %v, pool %d bytes; want 16, error, 16", got, err, len(pool.added))
	}
	var qe *qtsm.Error
	if !errors.As(err, &qe) || qe.Code != qtsm.CodeInternalError {
		t.Errorf("Seed error %v, want *qtsm.Error InternalError", err)
	}
	// A pool that refuses is an error with nothing counted.
	pool = &fakePool{addErr: os.ErrPermission}
	if got, err := Seed(context.Background(), qtsm.NewSession(&fakeModule{chunk: 64}, noRetry()), pool, 64); got != 0 || !errors.Is(err, os.ErrPermission) {
		t.Errorf("Seed into refusing pool = %d, %v", got, err)
	}
}

func TestEnsureReady(t *testing.T) {
	p := &fakePool{ready: true}
	if w, err := EnsureReady(context.Background(), p, time.Second); err != nil || w != 0 || p.waited {
		t.Errorf("EnsureReady(ready) = %v, %v, waited %v", w, err, p.waited)
	}
	p = &fakePool{wakeIn: 20 * time.Millisecond}
	if w, err := EnsureReady(context.Background(), p, time.Second); err != nil || w < 20*time.Millisecond {
		t.Errorf("EnsureReady(ready in 20ms) = %v, %v", w, err)
	}
	p = &fakePool{wakeIn: -1}
	if _, err := EnsureReady(context.Background(), p, 20*time.Millisecond); !errors.Is(err, ErrNotReady) {
		t.Errorf("EnsureReady(never) = %v, want ErrNotReady", err)
	}
	p = &fakePool{readyEr: os.ErrInvalid}
	if _, err := EnsureReady(context.Background(), p, time.Second); !errors.Is(err, os.ErrInvalid) {
		t.Errorf("EnsureReady(broken) = %v", err)
	}
}

func TestSeedThenReady(t *testing.T) {
	// The sequence init runs: seed 64 bytes, then the CRNG is ready
	// without waiting.
	pool := &fakePool{}
	if _, err := Seed(context.Background(), qtsm.NewSession(&fakeModule{chunk: 256}, noRetry()), pool, 0); err != nil {
		t.Fatal(err)
	}
	if w, err := EnsureReady(context.Background(), pool, time.Second); err != nil || pool.waited || w != 0 {
		t.Errorf("after Seed, EnsureReady = %v, %v, waited %v", w, err, pool.waited)
	}
}

// TestIntegrationKernelPool exercises the real ioctl layout on this host:
// it adds 32 bytes from the kernel's own CRNG (so nothing weak is credited).
func TestIntegrationKernelPool(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("RNDADDENTROPY needs CAP_SYS_ADMIN: run as root to cover it")
	}
	var k Kernel
	ok, err := k.Ready()
	if err != nil || !ok {
		t.Fatalf("host CRNG Ready() = %v, %v", ok, err)
	}
	if err := k.WaitReady(context.Background()); err != nil {
		t.Fatalf("WaitReady = %v", err)
	}
	buf := make([]byte, 32)
	f, err := os.Open("/dev/urandom")
	if err != nil {
		t.Skipf("no /dev/urandom: %v", err)
	}
	f.Read(buf)
	f.Close()
	if bytes.Equal(buf, make([]byte, 32)) {
		t.Fatal("urandom gave zeros")
	}
	if err := k.AddEntropy(buf, 256); err != nil {
		t.Errorf("AddEntropy(32 bytes) = %v", err)
	}
	// The ioctl on a device that is not a random device fails.
	if err := (Kernel{Device: "/dev/null"}).AddEntropy(buf, 8); err == nil {
		t.Error("RNDADDENTROPY on /dev/null succeeded")
	}
}

func TestOpenDevice(t *testing.T) {
	if _, err := OpenDevice(t.TempDir() + "/nsm"); err == nil {
		t.Error("OpenDevice(missing) = nil error")
	}
	for path, want := range map[string]int{"/dev/nsm": device.NitroMaxResponse, "/dev/qtsm": device.QingtianMaxResponse} {
		p := filepath.Join(t.TempDir(), filepath.Base(path))
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		d, err := OpenDevice(p)
		if err != nil {
			t.Fatal(err)
		}
		if d.maxResp != want {
			t.Errorf("OpenDevice(%s) response buffer = %#x, want %#x", p, d.maxResp, want)
		}
		if _, err := d.RoundTrip(context.Background(), []byte{0xa0}); err == nil {
			t.Errorf("RoundTrip on a regular file %s = nil error", p)
		}
		d.Close()
	}
}
