package heartbeat

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qtenclave/enclave/init/vsock"
)

// parent is a fake parent behind a net.Pipe dialer. Each Dial consumes one
// behaviour: "refuse" fails the dial, "echo" answers 0xB7, "wrong" answers
// 0x00, "silent" reads and never answers, "close" hangs up.
type parent struct {
	mu        sync.Mutex
	behaviour []string
	dials     int
	addrs     [][2]uint32
	wg        sync.WaitGroup
}

func (p *parent) Dial(ctx context.Context, cid, port uint32) (vsock.Conn, error) {
	p.mu.Lock()
	p.dials++
	p.addrs = append(p.addrs, [2]uint32{cid, port})
	b := "echo"
	if len(p.behaviour) > 0 {
		b, p.behaviour = p.behaviour[0], p.behaviour[1:]
	}
	p.mu.Unlock()
	if b == "refuse" {
		return nil, syscall.ECONNRESET
	}
	a, c := net.Pipe()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer c.Close()
		var buf [1]byte
		if _, err := io.ReadFull(c, buf[:]); err != nil {
			return
		}
		switch b {
		case "echo":
			c.Write(buf[:])
			io.Copy(io.Discard, c) // serve a hook until the client closes
		case "wrong":
			c.Write([]byte{0})
		case "silent":
			io.Copy(io.Discard, c)
		case "close":
		}
	}()
	return a, nil
}

func fast(attempts int) Config {
	return Config{CID: 3, Port: 9000,
		Policy: Policy{Attempts: attempts, Initial: time.Millisecond, Max: 4 * time.Millisecond, Timeout: 200 * time.Millisecond}}
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name      string
		behaviour []string
		attempts  int
		wantOK    bool
		wantDials int
		wantErr   error
	}{
		{"first try", nil, 3, true, 1, nil},
		{"refused then ok", []string{"refuse", "refuse", "echo"}, 3, true, 3, nil},
		{"wrong byte then ok", []string{"wrong", "echo"}, 3, true, 2, nil},
		{"hang-up then ok", []string{"close", "echo"}, 3, true, 2, nil},
		{"always refused", []string{"refuse", "refuse", "refuse", "refuse"}, 3, false, 3, syscall.ECONNRESET},
		{"always wrong", []string{"wrong", "wrong"}, 2, false, 2, ErrBadReply},
		{"silent parent times out", []string{"silent"}, 1, false, 1, nil},
	} {
		p := &parent{behaviour: tc.behaviour}
		var retries []int
		cfg := fast(tc.attempts)
		cfg.OnRetry = func(a int, err error, d time.Duration) { retries = append(retries, a) }
		start := time.Now()
		res, err := Run(context.Background(), p, cfg)
		p.wg.Wait()
		if (err == nil) != tc.wantOK {
			t.Errorf("%s: Run = %+v, %v, want ok=%v", tc.name, res, err, tc.wantOK)
		}
		if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: Run error %v, want %v", tc.name, err, tc.wantErr)
		}
		if p.dials != tc.wantDials {
			t.Errorf("%s: %d dials, want %d", tc.name, p.dials, tc.wantDials)
		}
		if tc.wantOK && res.Attempts != tc.wantDials {
			t.Errorf("%s: Result.Attempts = %d, want %d", tc.name, res.Attempts, tc.wantDials)
		}
		if len(retries) != tc.wantDials-1 {
			t.Errorf("%s: OnRetry called %d times, want %d", tc.name, len(retries), tc.wantDials-1)
		}
		for _, a := range p.addrs {
			if a != [2]uint32{3, 9000} {
				t.Errorf("%s: dialled %v, want 3:9000", tc.name, a)
			}
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("%s: Run took %v", tc.name, el)
		}
	}
}

func TestBackoff(t *testing.T) {
	p := &parent{behaviour: []string{"refuse", "refuse", "refuse", "refuse", "refuse"}}
	var slept []time.Duration
	cfg := Config{CID: 3, Port: 9000, Policy: Policy{Attempts: 5, Initial: 100 * time.Millisecond, Max: 300 * time.Millisecond},
		Sleep: func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }}
	if _, err := Run(context.Background(), p, cfg); err == nil {
		t.Fatal("Run against a refusing parent succeeded")
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}
	if len(slept) != len(want) {
		t.Fatalf("slept %v, want %v", slept, want)
	}
	for i := range want {
		if slept[i] != want[i] {
			t.Errorf("back-off %d = %v, want %v", i, slept[i], want[i])
		}
	}
}

func TestHook(t *testing.T) {
	p := &parent{}
	var called bool
	cfg := fast(1)
	cfg.After = func(ctx context.Context, c vsock.Conn) error {
		called = true
		_, err := c.Write([]byte("time?"))
		return err
	}
	if _, err := Run(context.Background(), p, cfg); err != nil || !called {
		t.Errorf("Run with hook = %v, hook called %v", err, called)
	}
	p = &parent{behaviour: []string{"echo", "echo"}}
	cfg = fast(2)
	n := 0
	cfg.After = func(context.Context, vsock.Conn) error {
		n++
		if n == 1 {
			return errors.New("time sync refused")
		}
		return nil
	}
	if res, err := Run(context.Background(), p, cfg); err != nil || res.Attempts != 2 {
		t.Errorf("Run with failing-then-ok hook = %+v, %v, want 2 attempts", res, err)
	}
}

func TestCancel(t *testing.T) {
	p := &parent{behaviour: []string{"silent"}}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := fast(5)
	cfg.Policy.Timeout = 10 * time.Second
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := Run(ctx, p, cfg)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("Run cancelled = %v after %v", err, time.Since(start))
	}
	if p.dials != 1 {
		t.Errorf("%d dials after cancel, want 1", p.dials)
	}
}

// TestUnixSocketParent runs the heartbeat against a parent listening on a
// unix socket, the host-side stand-in for vsock.
func TestUnixSocketParent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parent.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var b [1]byte
		io.ReadFull(c, b[:])
		got <- b[0]
		c.Write(b[:])
	}()
	d := vsock.DialerFunc(func(ctx context.Context, cid, port uint32) (vsock.Conn, error) {
		var nd net.Dialer
		c, err := nd.DialContext(ctx, "unix", path)
		if err != nil {
			return nil, err
		}
		return c.(*net.UnixConn), nil
	})
	if _, err := Run(context.Background(), d, fast(1)); err != nil {
		t.Fatalf("Run over unix socket = %v", err)
	}
	if b := <-got; b != Byte {
		t.Errorf("parent received 0x%02X, want 0xB7", b)
	}
}
