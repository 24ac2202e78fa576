package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"

	"github.com/qtenclave/enclave/internal/splice"
	"github.com/qtenclave/enclave/proto/egress"
	"github.com/qtenclave/enclave/proto/tunnel"
)

// Defaults.
const (
	DefaultHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout   = 10 * time.Minute
	DefaultDialTimeout   = 30 * time.Second
)

// OpenFunc opens a raw connection to the parent's tunnel port.
type OpenFunc func(ctx context.Context) (net.Conn, error)

// Dial opens a tunnel to d through a connection from open: the handshake
// of proto/tunnel, bounded by ctx. A refusal is a *tunnel.Refusal.
func Dial(ctx context.Context, open OpenFunc, d egress.Destination) (net.Conn, error) {
	c, err := open(ctx)
	if err != nil {
		return nil, fmt.Errorf("tunnel to the parent: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	err = tunnel.WriteRequest(c, d)
	if err == nil {
		err = tunnel.ReadAnswer(c)
	}
	if !stop() && err != nil {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// Proxy is the workload's HTTP proxy.
type Proxy struct {
	Policy *egress.Policy // the image's policy; nil refuses everything
	Open   OpenFunc       // the parent's tunnel port
	// HeaderTimeout bounds reading a request's head; IdleTimeout ends a
	// tunnel or keep-alive connection nothing moves on; DialTimeout bounds
	// opening a tunnel.
	HeaderTimeout, IdleTimeout, DialTimeout time.Duration
	Logf                                    func(format string, args ...any)
	// Conns counts the open tunnels (nil: not counted), so that a
	// stopping companion can let them finish.
	Conns *splice.Group
}

func (p *Proxy) logf(format string, args ...any) {
	if p.Logf != nil {
		p.Logf(format, args...)
	}
}

func or(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// Serve serves the proxy on l until l is closed.
func (p *Proxy) Serve(l net.Listener) error {
	tr := &http.Transport{
		DialContext:           p.dialAddr,
		Proxy:                 nil,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
	}
	defer tr.CloseIdleConnections()
	fwd := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL = r.In.URL
			r.Out.Host = r.In.Host
		},
		Transport:    tr,
		ErrorHandler: p.forwardError,
	}
	s := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.serveHTTP(w, r, fwd) }),
		ReadHeaderTimeout: or(p.HeaderTimeout, DefaultHeaderTimeout),
		IdleTimeout:       or(p.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          nil,
	}
	err := s.Serve(l)
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// check decides a destination by the image's policy.
func (p *Proxy) check(d egress.Destination) egress.Decision {
	if p.Policy == nil {
		return egress.Decision{Rule: "no egress policy"}
	}
	return p.Policy.Check(d)
}

// refuse answers 403 naming the rule, and logs it.
func (p *Proxy) refuse(w http.ResponseWriter, what string, d egress.Destination, why string) {
	p.logf("egress: refused %s %s: %s", what, d, why)
	http.Error(w, fmt.Sprintf("egress to %s refused: %s", d, why), http.StatusForbidden)
}

func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request, fwd *httputil.ReverseProxy) {
	if r.Method == http.MethodConnect {
		p.connect(w, r)
		return
	}
	if !r.URL.IsAbs() || r.URL.Scheme != "http" {
		http.Error(w, "this is the enclave's egress proxy: send CONNECT host:port, or an absolute http:// URL", http.StatusBadRequest)
		return
	}
	port := r.URL.Port()
	if port == "" {
		port = "80"
	}
	d, err := egress.ParseDestination(joinHostPort(r.URL.Hostname(), port))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if dec := p.check(d); !dec.Allowed {
		p.refuse(w, r.Method, d, dec.Rule)
		return
	}
	fwd.ServeHTTP(w, r)
}

func joinHostPort(h, port string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]:" + port
	}
	return h + ":" + port
}

// dialAddr is the forwarding transport's dialer: a tunnel, after the
// policy (checked again: a redirect or keep-alive reuse must not widen it).
func (p *Proxy) dialAddr(ctx context.Context, _, addr string) (net.Conn, error) {
	d, err := egress.ParseDestination(addr)
	if err != nil {
		return nil, err
	}
	if dec := p.check(d); !dec.Allowed {
		return nil, fmt.Errorf("egress to %s refused: %s", d, dec.Rule)
	}
	ctx, cancel := context.WithTimeout(ctx, or(p.DialTimeout, DefaultDialTimeout))
	defer cancel()
	return Dial(ctx, p.Open, d)
}

func (p *Proxy) forwardError(w http.ResponseWriter, r *http.Request, err error) {
	var ref *tunnel.Refusal
	status := http.StatusBadGateway
	if errors.As(err, &ref) && ref.Code == tunnel.Denied {
		status = http.StatusForbidden
	}
	p.logf("egress: %s %s: %v", r.Method, r.URL.Redacted(), err)
	http.Error(w, err.Error(), status)
}

// connect serves CONNECT host:port: a tunnel, then the bytes both ways.
func (p *Proxy) connect(w http.ResponseWriter, r *http.Request) {
	d, err := egress.ParseDestination(r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if self(r, d) {
		p.logf("egress: refused CONNECT %s: that is this proxy", d)
		http.Error(w, fmt.Sprintf("CONNECT %s: that is this proxy's own address", d), http.StatusBadRequest)
		return
	}
	if dec := p.check(d); !dec.Allowed {
		p.refuse(w, "CONNECT", d, dec.Rule)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), or(p.DialTimeout, DefaultDialTimeout))
	out, err := Dial(ctx, p.Open, d)
	cancel()
	if err != nil {
		var ref *tunnel.Refusal
		if errors.As(err, &ref) && ref.Code == tunnel.Denied {
			p.refuse(w, "CONNECT", d, "the parent: "+ref.Text)
			return
		}
		p.logf("egress: CONNECT %s: %v", d, err)
		http.Error(w, fmt.Sprintf("egress to %s failed: %v", d, err), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		out.Close()
		http.Error(w, "cannot take over the connection", http.StatusInternalServerError)
		return
	}
	in, buf, err := hj.Hijack()
	if err != nil {
		out.Close()
		return
	}
	if _, err := io.WriteString(in, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		in.Close()
		out.Close()
		return
	}
	// Bytes the client sent after its request head (a pipelined TLS hello)
	// go first.
	if n := buf.Reader.Buffered(); n > 0 {
		b, _ := buf.Reader.Peek(n)
		if _, err := out.Write(b); err != nil {
			in.Close()
			out.Close()
			return
		}
	}
	in.SetDeadline(time.Time{}) // the server's header deadline is ours to clear
	join(p.Conns, in, out, or(p.IdleTimeout, DefaultIdleTimeout))
}

// join joins a and b, counted in g when there is one.
func join(g *splice.Group, a, b net.Conn, idle time.Duration) {
	if g != nil {
		g.Join(a, b, idle)
		return
	}
	splice.Join(a, b, idle)
}

// self reports whether d names the proxy itself: its own listening
// address, or localhost at its port (a loop, never a destination).
func self(r *http.Request, d egress.Destination) bool {
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	host, port, err := net.SplitHostPort(la.String())
	if err != nil || port != fmt.Sprint(d.Port) {
		return false
	}
	return d.Host == host || d.Host == "localhost" || d.Host == "127.0.0.1" || d.Host == "::1"
}
