package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/qtenclave/enclave/internal/splice"
	"github.com/qtenclave/enclave/proto/egress"
	"github.com/qtenclave/enclave/proto/tunnel"
)

// Defaults.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDialTimeout      = 10 * time.Second
	DefaultIdleTimeout      = 10 * time.Minute
	DefaultMaxTunnels       = 1024
)

// Tunnels serves egress tunnels.
type Tunnels struct {
	// Image is the image's policy (from its launch manifest); nil refuses
	// everything.
	Image *egress.Policy
	// Operator is the operator's allowlist; nil means the image's policy
	// (qtenclave run's default).
	Operator *egress.Policy
	// Hosts resolves these names without DNS (qtenclave run --egress-host,
	// like docker's --add-host).
	Hosts map[string][]netip.Addr
	// Resolve looks a name up (default net.DefaultResolver, "ip").
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// Dial dials one address (default a net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	HandshakeTimeout, DialTimeout, IdleTimeout time.Duration
	// MaxTunnels bounds the tunnels open at once; more wait in the
	// listener's backlog.
	MaxTunnels int
	Logf       func(format string, args ...any)
}

// Serve accepts tunnels on l until it fails (Close it to stop), then
// waits for the open tunnels to end.
func (t *Tunnels) Serve(l net.Listener) error {
	return splice.Serve(l, or(t.MaxTunnels, DefaultMaxTunnels), t.Handle)
}

func (t *Tunnels) logf(format string, args ...any) {
	if t.Logf != nil {
		t.Logf(format, args...)
	}
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Handle serves one tunnel on c and closes it.
func (t *Tunnels) Handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(or(t.HandshakeTimeout, DefaultHandshakeTimeout)))
	d, err := tunnel.ReadRequest(c)
	if err != nil {
		if errors.Is(err, tunnel.ErrMalformed) {
			tunnel.WriteRefusal(c, tunnel.BadRequest, err.Error())
		}
		t.logf("egress: tunnel request: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), or(t.DialTimeout, DefaultDialTimeout))
	out, code, why := t.open(ctx, d)
	cancel()
	if out == nil {
		t.logf("egress: refused %s: %s: %s", d, code, why)
		tunnel.WriteRefusal(c, code, why)
		return
	}
	if err := tunnel.WriteOK(c); err != nil {
		out.Close()
		return
	}
	c.SetDeadline(time.Time{})
	up, down := splice.Join(c, out, or(t.IdleTimeout, DefaultIdleTimeout))
	t.logf("egress: %s closed (%d bytes out, %d in)", d, up, down)
}

// Decide checks d against both policies (names before resolution).
func (t *Tunnels) Decide(d egress.Destination) (bool, string) {
	if t.Image == nil {
		return false, "image policy: no egress"
	}
	if dec := t.Image.Check(d); !dec.Allowed {
		return false, "image policy: " + dec.Rule
	}
	if t.Operator != nil {
		if dec := t.Operator.Check(d); !dec.Allowed {
			return false, "operator allowlist: " + dec.Rule
		}
	}
	return true, ""
}

// open decides, resolves and dials d; on a refusal it returns the code
// and the reason.
func (t *Tunnels) open(ctx context.Context, d egress.Destination) (net.Conn, tunnel.Code, string) {
	if ok, why := t.Decide(d); !ok {
		return nil, tunnel.Denied, why
	}
	var addrs []netip.Addr
	if a, ok := d.Addr(); ok {
		addrs = []netip.Addr{a}
	} else {
		var err error
		if addrs, err = t.lookup(ctx, d.Host); err != nil || len(addrs) == 0 {
			return nil, tunnel.NoAddress, fmt.Sprintf("%s: %v", d.Host, errOr(err, "no address"))
		}
		// The resolved addresses against both policies' address rules.
		for _, p := range []struct {
			name string
			pol  *egress.Policy
		}{{"image policy", t.Image}, {"operator allowlist", t.Operator}} {
			if p.pol == nil {
				continue
			}
			dec, ok := p.pol.CheckResolved(d, addrs)
			if !dec.Allowed {
				return nil, tunnel.Denied, p.name + ": " + dec.Rule
			}
			addrs = ok
		}
	}
	dial := t.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	var errs []error
	for _, a := range addrs {
		c, err := dial(ctx, "tcp", net.JoinHostPort(a.String(), strconv.Itoa(d.Port)))
		if err == nil {
			return c, "", ""
		}
		errs = append(errs, err)
	}
	return nil, tunnel.Unreached, errors.Join(errs...).Error()
}

func errOr(err error, s string) any {
	if err != nil {
		return err
	}
	return s
}

func (t *Tunnels) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, ok := t.Hosts[host]; ok {
		return a, nil
	}
	if t.Resolve != nil {
		return t.Resolve(ctx, host)
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}
