package agent_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qtenclave/enclave/agent"
	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/agent/internal/fakemod"
)

// rawExchange writes in to a new connection and reads every answer until
// the agent closes it or wait passes; closed reports whether the agent
// closed the connection.
func rawExchange(t *testing.T, socket, in string, wait time.Duration, methods ...string) (answers []*http.Response, bodies []string, closed bool) {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, in); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	br := bufio.NewReader(c)
	for {
		var req *http.Request
		if len(methods) > 0 {
			req = &http.Request{Method: methods[0]}
			methods = methods[1:]
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			var ne net.Error
			timeout := errors.As(err, &ne) && ne.Timeout()
			return answers, bodies, !timeout
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answers = append(answers, resp)
		bodies = append(bodies, string(b))
	}
}

// TestConnLoop: the agent's HTTP/1.1 connection loop keeps what net/http's
// server promised its peers: keep-alive, pipelining, the header limit,
// Host, Expect, HEAD, Connection: close and HTTP/1.0.
func TestConnLoop(t *testing.T) {
	a := startAgent(t, fakeSession(fakemod.New()), "", func(c *agent.Config) { c.MaxHeaderBytes = 1 << 10 })
	get := "GET " + api.PathDescribe + " HTTP/1.1\r\nHost: qtsm\r\n\r\n"
	long := "GET " + api.PathDescribe + " HTTP/1.1\r\nHost: qtsm\r\nX-Long: " + strings.Repeat("a", 8<<10) + "\r\n\r\n"
	for _, tc := range []struct {
		name    string
		in      string
		methods []string // of the requests, for reading the answers
		status  []int
		closed  bool // the agent closes after the answers
		check   func(t *testing.T, rs []*http.Response, bodies []string)
	}{
		{name: "keep-alive", in: get, status: []int{200}, closed: false},
		{name: "pipelined", in: get + get + get, status: []int{200, 200, 200}, closed: false},
		{name: "connection close", in: "GET " + api.PathDescribe + " HTTP/1.1\r\nHost: qtsm\r\nConnection: close\r\n\r\n", status: []int{200}, closed: true,
			check: func(t *testing.T, rs []*http.Response, _ []string) {
				if !rs[0].Close {
					t.Errorf("answer to Connection: close has no Connection: close")
				}
			}},
		{name: "HTTP/1.0", in: "GET " + api.PathDescribe + " HTTP/1.0\r\n\r\n", status: []int{200}, closed: true},
		{name: "HTTP/1.0 keep-alive", in: "GET " + api.PathDescribe + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + get, status: []int{200, 200}, closed: false},
		{name: "no Host", in: "GET " + api.PathDescribe + " HTTP/1.1\r\n\r\n", status: []int{400}, closed: true},
		{name: "two Hosts", in: "GET " + api.PathDescribe + " HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", status: []int{400}, closed: true},
		{name: "bad Host", in: "GET " + api.PathDescribe + " HTTP/1.1\r\nHost: a b\r\n\r\n", status: []int{400}, closed: true},
		{name: "control byte in a value", in: "GET " + api.PathDescribe + " HTTP/1.1\r\nHost: qtsm\r\nX: a\x01b\r\n\r\n", status: []int{400}, closed: true},
		{name: "garbage", in: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", status: []int{400}, closed: true},
		{name: "HTTP/2 preface", in: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", status: []int{400}, closed: true},
		{name: "header too large", in: long, status: []int{431}, closed: true},
		{name: "unknown Expect", in: "POST " + api.PathAttestation + " HTTP/1.1\r\nHost: qtsm\r\nExpect: magic\r\nContent-Length: 2\r\n\r\n{}", status: []int{417}, closed: true},
		{name: "100-continue", in: "POST " + api.PathAttestation + " HTTP/1.1\r\nHost: qtsm\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
			status: []int{100, 200}, closed: false},
		{name: "body left unread is drained", in: "GET " + api.PathDescribe + " HTTP/1.1\r\nHost: qtsm\r\nContent-Length: 5\r\n\r\nhello" + get, status: []int{400, 200}, closed: false},
		{name: "HEAD", in: "HEAD " + api.PathHealth + " HTTP/1.1\r\nHost: qtsm\r\n\r\n" + get, methods: []string{"HEAD", "GET"}, status: []int{405, 200}, closed: false,
			check: func(t *testing.T, rs []*http.Response, bodies []string) {
				if bodies[0] != "" || rs[0].ContentLength <= 0 {
					t.Errorf("HEAD answer: length %d, body %q; want a length and no body", rs[0].ContentLength, bodies[0])
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, bodies, closed := rawExchange(t, a.socket, tc.in, 500*time.Millisecond, tc.methods...)
			var got []int
			for _, r := range rs {
				got = append(got, r.StatusCode)
			}
			if len(got) != len(tc.status) || closed != tc.closed {
				t.Fatalf("answers %v, closed %v; want %v, closed %v (bodies %q)", got, closed, tc.status, tc.closed, bodies)
			}
			for i := range got {
				if got[i] != tc.status[i] {
					t.Fatalf("answers %v, want %v (bodies %q)", got, tc.status, bodies)
				}
			}
			for _, r := range rs {
				if r.StatusCode == 200 && r.Header.Get("Date") == "" {
					t.Errorf("answer %d has no Date", r.StatusCode)
				}
			}
			if tc.check != nil {
				tc.check(t, rs, bodies)
			}
		})
	}
}

// TestConnTimeouts: a client that never finishes its request line, or
// leaves its connection idle, is cut off after the configured time.
func TestConnTimeouts(t *testing.T) {
	a := startAgent(t, fakeSession(fakemod.New()), "", func(c *agent.Config) {
		c.ReadHeaderTimeout = 200 * time.Millisecond
		c.IdleTimeout = 300 * time.Millisecond
	})
	for _, tc := range []struct {
		name, in string
		within   time.Duration
	}{
		{"slow header", "GET " + api.PathDescribe + " HTTP/1.1\r\nHost: q", time.Second},
		{"idle", "", 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			rs, _, closed := rawExchange(t, a.socket, tc.in, 5*time.Second)
			if len(rs) != 0 || !closed || time.Since(start) > tc.within {
				t.Errorf("%d answers, closed %v after %v; want none, closed within %v", len(rs), closed, time.Since(start), tc.within)
			}
		})
	}
}

// TestShutdownLetsRequestsFinish: Shutdown closes idle connections at
// once and lets a request at the device finish with its answer.
func TestShutdownLetsRequestsFinish(t *testing.T) {
	f := fakemod.New()
	f.Gate = make(chan struct{})
	a := startAgent(t, fakeSession(f), "", nil)
	idle, err := net.Dial("unix", a.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	busy := make(chan error, 1)
	go func() { _, err := a.client().ExtendPCR(context.Background(), 16, []byte("x")); busy <- err }()
	waitFor(t, "request at the device", func() bool { return f.Calls.Load() == 1 })

	done := make(chan error, 1)
	go func() { done <- a.srv.Shutdown(context.Background()) }()
	idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle connection during Shutdown: read %d, %v; want EOF", n, err)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown() = %v before the request at the device finished", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(f.Gate)
	if err := <-busy; err != nil {
		t.Errorf("ExtendPCR() during Shutdown = %v, want its answer", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown() = %v", err)
	}
}

// FuzzConnLoop sends arbitrary bytes to the agent's connection loop and
// then half-closes: the agent must neither panic nor hold the connection
// open once its client has nothing more to say.
func FuzzConnLoop(f *testing.F) {
	for _, s := range []string{
		"GET " + api.PathDescribe + " HTTP/1.1\r\nHost: qtsm\r\n\r\n",
		"POST " + api.PathAttestation + " HTTP/1.1\r\nHost: qtsm\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
		"POST " + api.PathRaw + " HTTP/1.1\r\nHost: qtsm\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"HEAD " + api.PathHealth + " HTTP/1.1\r\nHost: q\r\nConnection: keep-alive\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	panicked := make(chan string, 1)
	a := startAgent(f, fakeSession(fakemod.New()), "", func(c *agent.Config) {
		c.ReadHeaderTimeout = time.Second
		c.Logf = func(format string, args ...any) {
			if strings.Contains(format, "panic") {
				select {
				case panicked <- format:
				default:
				}
			}
		}
	})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("unix", a.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(in)
		c.(*net.UnixConn).CloseWrite()
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("agent kept the connection after the client's end: %v", err)
		}
		select {
		case p := <-panicked:
			t.Fatalf("agent panicked: %s", p)
		default:
		}
	})
}

// TestDeviceTimeOutlastsReadTimeout: the read limit bounds the arrival of
// a request, not the time its answer takes at the device: a request with
// a body that waits at the device longer than ReadTimeout is answered.
func TestDeviceTimeOutlastsReadTimeout(t *testing.T) {
	f := fakemod.New()
	f.Gate = make(chan struct{})
	a := startAgent(t, fakeSession(f), "", func(c *agent.Config) {
		c.ReadTimeout = 200 * time.Millisecond
		c.Timeout = 5 * time.Second
	})
	go func() { time.Sleep(800 * time.Millisecond); close(f.Gate) }()
	start := time.Now()
	if _, err := a.client().ExtendPCR(context.Background(), 16, []byte("slow device")); err != nil {
		t.Errorf("ExtendPCR() at a device slower than ReadTimeout = %v after %v, want its answer", err, time.Since(start))
	}
}
