package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	agentegress "github.com/qtenclave/enclave/agent/egress"
	"github.com/qtenclave/enclave/proto/egress"
	"github.com/qtenclave/enclave/proto/tunnel"
)

// rig is the whole egress path on loopback: the companion's proxy in the
// enclave, its tunnels to the parent, the parent's tunnel server, and the
// destinations.
type rig struct {
	t        *testing.T
	tunnels  *Tunnels
	proxyURL *url.URL
	tunAddr  string // the parent's tunnel port
	logs     *logBuf
}

type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, format+"\n", args...)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func mustPolicy(t *testing.T, allow ...string) *egress.Policy {
	t.Helper()
	p, err := egress.Parse(allow, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newRig(t *testing.T, image *egress.Policy, operator *egress.Policy) *rig {
	t.Helper()
	return newRigWith(t, image, operator, nil)
}

// newRigWith is newRig with the tunnel server's fields set by cfg before
// it serves.
func newRigWith(t *testing.T, image *egress.Policy, operator *egress.Policy, cfg func(*Tunnels)) *rig {
	t.Helper()
	logs := &logBuf{}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	loop := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	tun := &Tunnels{Image: image, Operator: operator, Logf: logs.logf,
		Hosts: map[string][]netip.Addr{"example.com": loop, "plain.example": loop, "denied.example": loop, "other.example": loop}}
	if cfg != nil {
		cfg(tun)
	}
	done := make(chan error, 1)
	go func() { done <- tun.Serve(tl) }()
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &agentegress.Proxy{Policy: image, Logf: logs.logf, HeaderTimeout: 300 * time.Millisecond,
		Open: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", tl.Addr().String())
		}}
	pdone := make(chan error, 1)
	go func() { pdone <- px.Serve(pl) }()
	t.Cleanup(func() {
		pl.Close()
		tl.Close()
		if err := <-pdone; err != nil {
			t.Errorf("Proxy.Serve = %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Tunnels.Serve = %v", err)
		}
	})
	return &rig{t: t, tunnels: tun, proxyURL: &url.URL{Scheme: "http", Host: pl.Addr().String()}, tunAddr: tl.Addr().String(), logs: logs}
}

func (r *rig) client(tlsConf *tls.Config) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(r.proxyURL), TLSClientConfig: tlsConf}}
}

func port(t *testing.T, u string) string {
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Port()
}

// TestEgress: HTTPS through CONNECT with the certificate verified end to
// end, plain http in absolute form, and refusals by the image's policy
// (403 naming the rule, in the enclave, nothing sent to the parent) and by
// the operator's allowlist (403 naming it, from the parent).
func TestEgress(t *testing.T) {
	baseline, fds := runtime.NumGoroutine(), openFDs(t)
	// Registered first, so it runs after every cleanup below: nothing of
	// the path may be left running or open.
	t.Cleanup(func() {
		waitGoroutines(t, baseline)
		if n := openFDs(t); n > fds {
			t.Errorf("%d sockets open after the run, %d before", n, fds)
		}
	})
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello over TLS from %s", r.Host)
	}))
	defer tlsSrv.Close()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "plain %s %s", r.Method, r.URL.Path)
	}))
	defer plain.Close()
	tp, pp := port(t, tlsSrv.URL), port(t, plain.URL)
	image := mustPolicy(t, "example.com:"+tp, "plain.example:"+pp, "other.example")
	operator := mustPolicy(t, "example.com:"+tp, "plain.example:"+pp)
	r := newRig(t, image, operator)
	// httptest's certificate names example.com.
	tlsConf := tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	c := r.client(tlsConf)

	for _, tc := range []struct {
		url, want string
		status    int
		log       string
	}{
		{"https://example.com:" + tp + "/", "hello over TLS from example.com:" + tp, 200, ""},
		{"http://plain.example:" + pp + "/x", "plain GET /x", 200, ""},
		{"https://denied.example:" + tp + "/", "", 403, "egress: refused CONNECT denied.example:" + tp + ": default deny"},
		{"http://denied.example:" + pp + "/", "egress to denied.example:" + pp + " refused: default deny", 403, "egress: refused GET denied.example:" + pp + ": default deny"},
		{"https://other.example:" + tp + "/", "", 403, "egress: refused other.example:" + tp + ": denied: operator allowlist: default deny"},
	} {
		resp, err := c.Get(tc.url)
		switch {
		case tc.status == 403 && strings.HasPrefix(tc.url, "https"):
			// Go's client reports a refused CONNECT as an error.
			if err == nil || !strings.Contains(err.Error(), "Forbidden") {
				t.Errorf("GET %s = %v, want a 403 from the proxy", tc.url, err)
			}
		case err != nil:
			t.Errorf("GET %s: %v", tc.url, err)
		default:
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
				t.Errorf("GET %s = %d %q, want %d %q", tc.url, resp.StatusCode, b, tc.status, tc.want)
			}
		}
		if tc.log != "" && !strings.Contains(r.logs.String(), tc.log) {
			t.Errorf("GET %s: no log line %q in:\n%s", tc.url, tc.log, r.logs)
		}
	}
	c.CloseIdleConnections()
}

// openFDs counts this process's open sockets (the runtime's own
// descriptors, its poller and the pipes it keeps for splice, are not the
// proxy's to close).
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// waitGoroutines waits for the goroutine count to come back to at most n.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > n {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines left, want at most %d:\n%s", g, n, buf[:runtime.Stack(buf, true)])
	}
}

// echo serves connections that send back what they read.
func echo(t *testing.T) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return l
}

// connect opens a CONNECT tunnel through the proxy.
func connect(t testing.TB, proxy *url.URL, dest string) (net.Conn, *bufio.Reader, error) {
	return connectAddr(proxy.Host, dest)
}

// TestConcurrentTunnels opens 200 tunnels at once through the proxy to an
// echo server, 64 KiB each way in each: none lost, none corrupted.
func TestConcurrentTunnels(t *testing.T) {
	e := echo(t)
	ep := port(t, "tcp://"+e.Addr().String())
	r := newRig(t, mustPolicy(t, "example.com:"+ep), nil)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, br, err := connect(t, r.proxyURL, "example.com:"+ep)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			data := make([]byte, 64<<10)
			rand.Read(data)
			go func() { c.Write(data); c.(*net.TCPConn).CloseWrite() }()
			got, err := io.ReadAll(br)
			if err != nil || !bytes.Equal(got, data) {
				errs <- fmt.Errorf("tunnel %d: %d bytes back, %v", i, len(got), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestBulk sends 16 MiB each way through one tunnel, checked by SHA-256.
func TestBulk(t *testing.T) {
	e := echo(t)
	ep := port(t, "tcp://"+e.Addr().String())
	r := newRig(t, mustPolicy(t, "example.com:"+ep), nil)
	c, br, err := connect(t, r.proxyURL, "example.com:"+ep)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := make([]byte, 16<<20)
	rand.Read(data)
	go func() { c.Write(data); c.(*net.TCPConn).CloseWrite() }()
	h := sha256.New()
	n, err := io.Copy(h, br)
	if err != nil || n != int64(len(data)) || !bytes.Equal(h.Sum(nil), sha256Sum(data)) {
		t.Errorf("16 MiB through a tunnel: %d bytes back, %v, digest equal %v", n, err, bytes.Equal(h.Sum(nil), sha256Sum(data)))
	}
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// TestBadInput: a client that never finishes its request head is cut off;
// a malformed tunnel handshake is refused; a destination nobody listens on
// is a 502; a name that does not resolve is refused by the parent.
func TestBadInput(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := port(t, "tcp://"+dead.Addr().String())
	dead.Close()
	r := newRigWith(t, mustPolicy(t, "example.com", "nowhere.invalid"), nil, func(tun *Tunnels) {
		tun.Resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return nil, fmt.Errorf("lookup %s: no such host", host)
		}
	})

	// Slow client: half a request line, then nothing.
	c, err := net.Dial("tcp", r.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "CONNECT exam")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	io.ReadAll(c)
	c.Close()
	if time.Since(start) > 4*time.Second {
		t.Errorf("a slow request head held the connection for %v (header timeout 300ms)", time.Since(start))
	}

	proxyPort := port(t, r.proxyURL.String())
	for _, tc := range []struct{ dest, want string }{
		{"example.com:" + deadPort, "502"},
		{"nowhere.invalid:443", "502"},
		{"example.com", "400"},
		{"127.0.0.1:" + proxyPort, "400"}, // the proxy itself
		{"localhost:" + proxyPort, "400"},
	} {
		_, _, err := connect(t, r.proxyURL, tc.dest)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CONNECT %s = %v, want %s", tc.dest, err, tc.want)
		}
	}

	// A destination that never answers: the dial times out, 502.
	slow := newRigWith(t, mustPolicy(t, "example.com"), nil, func(tun *Tunnels) {
		tun.DialTimeout = 200 * time.Millisecond
		tun.Dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
	})
	t0 := time.Now()
	if _, _, err := connect(t, slow.proxyURL, "example.com:443"); err == nil || !strings.Contains(err.Error(), "502") || time.Since(t0) > 5*time.Second {
		t.Errorf("CONNECT to a destination that never answers = %v after %v, want 502 after the 200ms dial timeout", err, time.Since(t0))
	}

	// The parent, asked directly: a malformed handshake, and one the
	// image's policy refuses (a companion that skipped its own check).
	for _, tc := range []struct {
		req  string
		code tunnel.Code
	}{
		{"GET / HTTP/1.1\n", tunnel.BadRequest},
		{tunnel.Magic + "denied.example:443\n", tunnel.Denied},
		{tunnel.Magic + "10.0.0.1:443\n", tunnel.Denied},
	} {
		pc, err := net.Dial("tcp", r.tunAddr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(pc, tc.req)
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		err = tunnel.ReadAnswer(pc)
		pc.Close()
		var ref *tunnel.Refusal
		if !errors.As(err, &ref) || ref.Code != tc.code {
			t.Errorf("tunnel request %q = %v, want a %s refusal", tc.req, err, tc.code)
		}
	}
}
