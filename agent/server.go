package agent

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/qtsm"
)

// Defaults for Config's zero values.
const (
	DefaultTimeout           = 30 * time.Second
	DefaultMaxQueue          = 1024
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultIdleTimeout       = 90 * time.Second
	DefaultMaxHeaderBytes    = 8 << 10
)

// Config configures a Server.
type Config struct {
	// Module is the secure module: a session over the device or the
	// simulator. The server owns it and closes it on Shutdown.
	Module *qtsm.Session
	// Device and Vendor describe the module in /v1/health and logs.
	Device string
	Vendor qtsm.Vendor
	// Policy decides who may extend and lock PCRs.
	Policy Policy
	// Timeout bounds every request, queueing included (default 30 s).
	Timeout time.Duration
	// MaxQueue is how many requests may wait for the device; beyond it the
	// agent answers 503 Busy (default 1024).
	MaxQueue int
	// HTTP server limits (defaults above).
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	// Logf logs one line (default log.Printf); nil-safe.
	Logf func(format string, args ...any)
	// KMSProxy is the egress proxy KMS requests go through (nil: direct,
	// for tests and development).
	KMSProxy *url.URL
}

// Server serves the secure module over HTTP/1.1 on a Unix socket.
type Server struct {
	cfg      Config
	q        *queue
	hs       *httpServer
	mux      http.Handler
	denied   atomic.Uint64
	shutting atomic.Bool
	keys     *keyPool
	kmsHTTP  *http.Client
}

// New returns a server for cfg; it starts the device worker at once.
func New(cfg Config) *Server {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	s := &Server{cfg: cfg, q: newQueue(cfg.MaxQueue), keys: newKeyPool(2), kmsHTTP: newKMSHTTP(cfg.KMSProxy)}
	s.mux = s.routes()
	s.hs = &httpServer{
		handler: s.mux,
		limits: httpLimits{
			readHeader: cfg.ReadHeaderTimeout,
			read:       cfg.ReadTimeout,
			// Writing must outlast the longest request, queueing included.
			write:          cfg.Timeout + cfg.ReadTimeout + 5*time.Second,
			idle:           cfg.IdleTimeout,
			maxHeaderBytes: cfg.MaxHeaderBytes,
		},
		request: cfg.Timeout,
		logf:    cfg.Logf,
		connContext: func(ctx context.Context, c net.Conn) context.Context {
			ctx = context.WithValue(ctx, connKey{}, c)
			p, err := PeerOf(c)
			if err != nil {
				return WithPeer(ctx, Peer{})
			}
			return WithPeer(ctx, p)
		},
	}
	return s
}

// Handler returns the HTTP handler (for tests that bring their own server;
// peers are then unknown unless the context carries one, see WithPeer).
func (s *Server) Handler() http.Handler { return s.mux }

// Serve accepts connections on l until Shutdown. It returns
// http.ErrServerClosed after Shutdown.
func (s *Server) Serve(l net.Listener) error { return s.hs.Serve(l) }

// Shutdown stops accepting connections, lets in-flight requests finish
// (until ctx ends), stops the device worker and closes the module.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutting.Store(true)
	err := s.hs.Shutdown(ctx)
	s.keys.stop()
	s.kmsHTTP.CloseIdleConnections()
	s.q.close()
	select {
	case <-s.q.stopped:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	if cerr := s.cfg.Module.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close module: %w", cerr)
	}
	return err
}

// Stats returns the request counters.
func (s *Server) Stats() api.Stats {
	return api.Stats{
		Queued:   s.q.len(),
		Accepted: s.q.accepted.Load(),
		Executed: s.q.executed.Load(),
		Dropped:  s.q.dropped.Load(),
		Rejected: s.q.rejected.Load(),
		Denied:   s.denied.Load(),

		DeviceNanos: s.q.deviceNanos.Load(),
	}
}

// do runs fn on the device, in queue order, on behalf of the request's
// peer, within the configured timeout.
func (s *Server) do(r *http.Request, fn func(ctx context.Context) (any, error)) (any, error) {
	bodyRead(r.Context())
	ctx, cancel := s.bounded(r.Context())
	defer cancel()
	return s.q.do(ctx, PeerFrom(ctx).PID, func(ctx context.Context) (any, error) { return s.runDevice(ctx, fn) })
}

// bounded is a request's context within the configured timeout: as it
// is when the agent's own loop serves the request (its janitor ends it
// then), else with a timer of its own (a server of the caller's, Handler).
func (s *Server) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if clocked(ctx) {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// call is do with fn's own result type: the one place the device's answer
// is taken out of the queue's any.
func call[T any](s *Server, r *http.Request, fn func(ctx context.Context) (T, error)) (T, error) {
	v, err := s.do(r, func(ctx context.Context) (any, error) { return fn(ctx) })
	if err != nil {
		var zero T
		return zero, err
	}
	return v.(T), nil
}

// exchange checks and encodes req once, before it queues (a bad request
// never waits for the device), then sends it and returns the answer of its
// own type.
func exchange[T qtsm.Response](s *Server, r *http.Request, req qtsm.Request) (T, error) {
	p, err := qtsm.Prepare(req, maxDeviceRequest)
	if err != nil {
		var zero T
		return zero, err
	}
	return call(s, r, func(ctx context.Context) (T, error) {
		resp, err := s.cfg.Module.Send(ctx, p)
		t, _ := resp.(T) // Send answers req's own variant or an error
		return t, err
	})
}

type connKey struct{}

// timeoutAnswer is written straight to the connection of a request whose
// deadline passed while the device was working on it.
var timeoutAnswer = func() []byte {
	body := `{"error":"` + api.ErrTimeout + `","detail":"the device did not answer within the request's deadline; the request may still take effect"}` + "\n"
	return []byte("HTTP/1.1 504 Gateway Timeout\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// runDevice calls fn on this goroutine with a context that never ends, so
// that a qtsm.Session makes the device call inline: no goroutine per call,
// which on a busy machine costs more than the HTTP exchange itself. The
// device call cannot be interrupted anyway; the request's deadline is kept
// by a watchdog instead: if ctx ends while the device works, the client is
// answered 504 on the raw connection, which is then closed, and the answer
// of the device, when it comes, is dropped.
func (s *Server) runDevice(ctx context.Context, fn func(ctx context.Context) (any, error)) (any, error) {
	conn, _ := ctx.Value(connKey{}).(net.Conn)
	var (
		mu        sync.Mutex
		finished  bool
		abandoned bool
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		if finished {
			mu.Unlock()
			return
		}
		abandoned = true
		mu.Unlock()
		if conn == nil {
			return
		}
		// The handler is inside the device call and has written nothing
		// of its answer: the connection is ours to answer and close.
		if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
			conn.SetWriteDeadline(time.Now().Add(time.Second))
			conn.Write(timeoutAnswer)
		}
		conn.Close()
	})
	v, err := fn(context.WithoutCancel(ctx))
	stop()
	mu.Lock()
	finished = true
	gone := abandoned
	mu.Unlock()
	if gone {
		return nil, context.Cause(ctx)
	}
	return v, err
}
