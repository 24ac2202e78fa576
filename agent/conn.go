package agent

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qtenclave/enclave/internal/splice"
)

// The agent answers its local peers with its own HTTP/1.1 connection loop
// instead of net/http's Server. Requests are still parsed by net/http
// (http.ReadRequest, the standard library's parser) and routed by the
// same http.Handler; what differs is the loop around them. net/http starts
// a goroutine per request to watch the connection while the handler runs
// and stops it when the handler returns: goroutine wake-ups on another
// thread that cost a GetRandom call ~100 µs through the agent against
// ~65 µs with this loop, and a bare socket server ~50 µs (TestLoad, which
// measures both the agent and such a bare server). Here a request runs on the
// connection's goroutine from the first byte to the last, and the
// connection is watched only while a request waits in the device queue,
// the one place where a hang-up must stop it (a request whose client went
// away never reaches the device).
//
// Nor does the loop arm a timer per request. A deadline (SetReadDeadline,
// context.WithTimeout) is a runtime timer, and adding one that falls before
// the network poller's sleep wakes a thread to re-arm it: a few per
// request, ~0.15 of the attestation ratio in BenchmarkAttestationOverhead.
// Each connection instead notes when it must end (an atomic store), and
// one janitor per server closes connections, and ends request contexts,
// whose time has passed, up to a few times a second.

// httpLimits are the connection loop's timeouts and sizes.
type httpLimits struct {
	readHeader, read, write, idle time.Duration
	maxHeaderBytes                int
}

// httpServer is the connection loop: one goroutine per connection, one
// request at a time on it, in order (pipelined requests are answered in
// turn).
type httpServer struct {
	handler http.Handler
	limits  httpLimits
	// request bounds a request's context, queueing included.
	request time.Duration
	logf    func(string, ...any)
	// connContext gives each connection its context (the peer).
	connContext func(context.Context, net.Conn) context.Context

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*serverConn]struct{}
	shutting  bool
	drained   chan struct{} // closed when shutting and no connection is left
	janitor   sync.Once
}

// serverConn is one connection; active is true from a request's first
// byte to the end of its answer, and is guarded by httpServer.mu.
type serverConn struct {
	c      net.Conn
	active bool
	// closeAt is when the janitor closes the connection (UnixNano; 0:
	// never): the end of the phase it is in (idle, header, body, answer).
	closeAt atomic.Int64
	// req is the request in progress, whose context the janitor ends
	// (cause context.DeadlineExceeded) when its time is up.
	req atomic.Pointer[requestClock]
}

// Serve accepts connections on l until Shutdown, then returns
// http.ErrServerClosed. Accept errors that pass (out of descriptors) are
// waited out (splice.Accept).
func (s *httpServer) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		l.Close()
		return http.ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = make(map[*net.Listener]struct{})
		s.conns = make(map[*serverConn]struct{})
	}
	s.listeners[&l] = struct{}{}
	s.mu.Unlock()
	s.janitor.Do(func() { go s.sweep() })
	defer func() {
		s.mu.Lock()
		delete(s.listeners, &l)
		s.mu.Unlock()
	}()
	onRetry := func(err error, wait time.Duration) { s.logf("agent: accept: %v; retrying in %v", err, wait) }
	for {
		c, err := splice.Accept(l, onRetry)
		if err != nil {
			if s.isShutting() {
				return http.ErrServerClosed
			}
			return err
		}
		sc := &serverConn{c: c}
		if !s.track(sc) {
			c.Close()
			return http.ErrServerClosed
		}
		go s.serveConn(sc)
	}
}

func (s *httpServer) isShutting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutting
}

func (s *httpServer) track(sc *serverConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting {
		return false
	}
	s.conns[sc] = struct{}{}
	return true
}

func (s *httpServer) untrack(sc *serverConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, sc)
	if s.shutting && len(s.conns) == 0 && s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
}

// setActive marks sc busy with a request; it fails once shutting down,
// so that a connection between requests takes no new one.
func (s *httpServer) setActive(sc *serverConn, active bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc.active = active
	return !s.shutting
}

// Shutdown closes the listeners and the idle connections, lets the
// requests in progress finish, and returns when every connection is
// closed or ctx ends.
func (s *httpServer) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutting = true
	for l := range s.listeners {
		(*l).Close()
	}
	drained := make(chan struct{})
	if len(s.conns) == 0 {
		close(drained)
	} else {
		s.drained = drained
	}
	for sc := range s.conns {
		if !sc.active {
			sc.c.Close()
		}
	}
	s.mu.Unlock()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// headerSlack is read beyond MaxHeaderBytes before a header counts as too
// large (net/http allows the same 4 KiB).
const headerSlack = 4 << 10

// bodyDrain is how much of a request body the handler left unread the
// loop reads away to keep the connection; beyond it the connection closes.
const bodyDrain = 256 << 10

func (s *httpServer) serveConn(sc *serverConn) {
	c := sc.c
	defer s.untrack(sc)
	defer c.Close()
	defer func() {
		if v := recover(); v != nil {
			s.logf("agent: panic serving %s: %v\n%s", c.RemoteAddr(), v, debug.Stack())
		}
	}()
	ctx := context.Background()
	if s.connContext != nil {
		ctx = s.connContext(ctx, c)
	}
	// The header's bound, as net/http's MaxHeaderBytes (N is set per request).
	lr := &io.LimitedReader{R: c}
	br := bufio.NewReaderSize(lr, 4<<10)
	bw := bufio.NewWriterSize(c, 4<<10)
	for {
		// Between requests: wait for the next one's first byte.
		sc.until(time.Now().Add(s.limits.idle))
		lr.N = math.MaxInt64
		if _, err := br.Peek(1); err != nil {
			return
		}
		if !s.setActive(sc, true) {
			return
		}
		start := time.Now()
		sc.until(start.Add(s.limits.readHeader))
		lr.N = int64(s.limits.maxHeaderBytes) + headerSlack - int64(br.Buffered())
		req, err := http.ReadRequest(br)
		if err != nil {
			switch {
			case lr.N <= 0:
				writeStatus(c, http.StatusRequestHeaderFieldsTooLarge, "431 Request Header Fields Too Large")
			case errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				// gone or too slow: nothing to answer
			default:
				writeStatus(c, http.StatusBadRequest, "400 Bad Request")
			}
			return
		}
		lr.N = math.MaxInt64
		if msg := checkRequest(req); msg != "" {
			writeStatus(c, http.StatusBadRequest, "400 Bad Request: "+msg)
			return
		}
		// The body has until start+read to arrive; once it has (or when
		// there is none), the request has until start+write for its
		// answer. A handler's Close of the body must not read the rest of
		// it (the body of http.ReadRequest does): the loop decides below.
		answerBy := start.Add(s.limits.write)
		var body *bodyClock
		if req.ContentLength != 0 {
			sc.until(start.Add(s.limits.read))
			body = &bodyClock{r: req.Body, sc: sc, then: answerBy}
			req.Body = body
		} else {
			sc.until(answerBy)
			req.Body = quietBody{req.Body}
		}
		var ask *continueReader
		if e := req.Header.Get("Expect"); e != "" {
			if !strings.EqualFold(e, "100-continue") {
				writeStatus(c, http.StatusExpectationFailed, "417 Expectation Failed")
				return
			}
			if req.ContentLength != 0 {
				// Ask for the body only when the handler reads it.
				ask = &continueReader{body: req.Body, bw: bw}
				req.Body = ask
			}
		}
		keep := s.serveRequest(ctx, sc, req, body, ask)
		if !keep || !s.setActive(sc, false) {
			return
		}
	}
}

// checkRequest is what net/http's server refuses before a handler sees a
// request; it returns why, or "".
func checkRequest(req *http.Request) string {
	if req.ProtoMajor != 1 {
		return "unsupported protocol version"
	}
	// http.ReadRequest moved the Host header to req.Host (and refused two).
	if req.ProtoAtLeast(1, 1) && req.Host == "" && req.Method != http.MethodConnect {
		return "missing required Host header"
	}
	for i := 0; i < len(req.Host); i++ {
		if !validHostByte(req.Host[i]) {
			return "malformed Host header"
		}
	}
	for _, vv := range req.Header {
		for _, v := range vv {
			for i := 0; i < len(v); i++ {
				if b := v[i]; b < ' ' && b != '\t' || b == 0x7f {
					return "invalid header value"
				}
			}
		}
	}
	return ""
}

// validHostByte is the set of bytes a Host header may hold: a host name,
// an IP literal in brackets, a port, a zone or percent-encoding.
func validHostByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
		strings.IndexByte("!$%&'()*+,-.:;=[]_~", b) >= 0
}

// serveRequest runs the handler for req and writes its answer; it reports
// whether the connection may take another request.
func (s *httpServer) serveRequest(connCtx context.Context, sc *serverConn, req *http.Request, body *bodyClock, ask *continueReader) (keep bool) {
	c := sc.c
	ctx, cancel := context.WithCancelCause(connCtx)
	defer cancel(nil)
	sc.req.Store(&requestClock{at: time.Now().Add(s.request).UnixNano(), cancel: cancel})
	defer sc.req.Store(nil)
	ctx = context.WithValue(ctx, servedKey{}, &served{body: body, conn: c, hangUp: func() { cancel(nil) }})
	req = req.WithContext(ctx)
	req.RemoteAddr = c.RemoteAddr().String()
	w := &responseWriter{header: make(http.Header), req: req}
	s.handler.ServeHTTP(w, req)

	// http.ReadRequest set Close for "Connection: close" and for HTTP/1.0
	// without keep-alive.
	keep = !req.Close && !strings.EqualFold(w.header.Get("Connection"), "close")
	if ask != nil && !ask.asked {
		keep = false // the client may still send the body it was not asked for
	}
	if keep {
		// Read what the handler left of the body, within reason.
		sc.until(time.Now().Add(s.limits.read))
		n, err := io.CopyN(io.Discard, req.Body, bodyDrain+1)
		if n > bodyDrain || err != nil && err != io.EOF {
			keep = false
		}
	}
	sc.until(time.Now().Add(s.limits.write))
	// The head and the body leave in one writev: a client must not wake
	// for a head whose body is still to come.
	head := w.head(keep, req.ProtoAtLeast(1, 1))
	answer := w.body
	if req.Method == http.MethodHead {
		answer = nil
	}
	out := net.Buffers{head, answer}
	_, err := out.WriteTo(c)
	return err == nil && keep
}
