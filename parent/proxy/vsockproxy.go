package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/qtenclave/enclave/internal/splice"
	"github.com/qtenclave/enclave/internal/strictyaml"
)

// This file is the drop-in for AWS's vsock-proxy: "vsock-proxy LOCALPORT
// HOST PORT [--config FILE] [-4|-6] [-w N]" forwards every connection on
// the vsock port to one TCP destination, after checking it against the
// allowlist file. Enclave programs that connect to 3:LOCALPORT and speak
// TLS themselves (AWS's kmstool-enclave-cli, Huawei's kms_*_with_proxy
// functions) work unchanged.

// Endpoint is one allowlist entry.
type Endpoint struct {
	Address string `yaml:"address"`
	Port    int    `yaml:"port"`
}

// Allowlist is vsock-proxy's configuration file: a top-level "allowlist"
// of {address, port} entries.
type Allowlist struct {
	Allowlist []Endpoint `yaml:"allowlist"`
}

// MaxAllowlist bounds the configuration file.
const MaxAllowlist = 1 << 20

// ParseAllowlist reads the file's YAML strictly: unknown keys, a missing
// address or an out-of-range port are errors, not entries that match
// nothing.
func ParseAllowlist(b []byte) (*Allowlist, error) {
	var a Allowlist
	if err := strictyaml.Decode(b, MaxAllowlist, &a); err != nil {
		return nil, fmt.Errorf("allowlist: %w", err)
	}
	if a.Allowlist == nil {
		return nil, errors.New(`allowlist: no "allowlist" list`)
	}
	for i, e := range a.Allowlist {
		if e.Address == "" || strings.ContainsAny(e.Address, " \t\r\n") {
			return nil, fmt.Errorf("allowlist entry %d: address %q", i, e.Address)
		}
		if e.Port < 1 || e.Port > 65535 {
			return nil, fmt.Errorf("allowlist entry %d (%s): port %d is not in 1..65535", i, e.Address, e.Port)
		}
	}
	return &a, nil
}

// Family restricts the addresses dialled (vsock-proxy's -4 and -6).
type Family int

// Families.
const (
	AnyFamily Family = iota
	IPv4Only
	IPv6Only
)

func (f Family) keep(a netip.Addr) bool {
	switch f {
	case IPv4Only:
		return a.Unmap().Is4()
	case IPv6Only:
		return a.Is6() && !a.Is4In6()
	}
	return true
}

// Resolver looks names up; net.DefaultResolver's LookupNetIP is one.
type Resolver func(ctx context.Context, host string) ([]netip.Addr, error)

func defaultResolve(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// resolveFamily resolves host (or takes it as an address) and keeps the
// family's addresses.
func resolveFamily(ctx context.Context, r Resolver, host string, f Family) ([]netip.Addr, error) {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		if r == nil {
			r = defaultResolve
		}
		if addrs, err = r(ctx, host); err != nil {
			return nil, err
		}
	}
	var out []netip.Addr
	for _, a := range addrs {
		if f.keep(a) {
			out = append(out, a.Unmap())
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no address of the wanted family", host)
	}
	return out, nil
}

// Allows reports whether host:port is allowed as vsock-proxy decides it:
// an entry with the same port whose address is host itself
// (case-insensitive), or resolves to an address host resolves to.
func (a *Allowlist) Allows(ctx context.Context, r Resolver, host string, port int, f Family) (bool, string) {
	var mine []netip.Addr
	for _, e := range a.Allowlist {
		if e.Port != port {
			continue
		}
		if strings.EqualFold(strings.TrimSuffix(e.Address, "."), strings.TrimSuffix(host, ".")) {
			return true, fmt.Sprintf("allowlist entry %s:%d", e.Address, e.Port)
		}
		if mine == nil {
			var err error
			if mine, err = resolveFamily(ctx, r, host, f); err != nil {
				return false, err.Error()
			}
		}
		theirs, err := resolveFamily(ctx, r, e.Address, f)
		if err != nil {
			continue
		}
		for _, x := range theirs {
			for _, y := range mine {
				if x == y {
					return true, fmt.Sprintf("allowlist entry %s:%d (both are %s)", e.Address, e.Port, x)
				}
			}
		}
	}
	return false, fmt.Sprintf("%s:%d is not in the allowlist", host, port)
}

// Fixed forwards every connection to one destination (vsock-proxy).
type Fixed struct {
	Host   string
	Port   int
	Family Family
	// Resolve looks Host up again for every connection: a name's
	// addresses are never older than their TTL (default: the system
	// resolver).
	Resolve Resolver
	Dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	// Workers bounds the connections served at once (vsock-proxy's -w;
	// default 4); more wait in the listener's backlog.
	Workers                  int
	DialTimeout, IdleTimeout time.Duration
	Logf                     func(format string, args ...any)
}

// Serve forwards the connections l accepts until l is closed, then waits
// for the open ones to end.
func (f *Fixed) Serve(l net.Listener) error {
	return splice.Serve(l, or(f.Workers, 4), f.handle)
}

func (f *Fixed) handle(c net.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), or(f.DialTimeout, DefaultDialTimeout))
	defer cancel()
	addrs, err := resolveFamily(ctx, f.Resolve, f.Host, f.Family)
	if err != nil {
		f.logf("vsock-proxy: %s: %v", f.Host, err)
		c.Close()
		return
	}
	dial := f.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	var out net.Conn
	var errs []error
	for _, a := range addrs {
		if out, err = dial(ctx, "tcp", net.JoinHostPort(a.String(), strconv.Itoa(f.Port))); err == nil {
			break
		}
		errs = append(errs, err)
	}
	if out == nil {
		f.logf("vsock-proxy: %s:%d: %v", f.Host, f.Port, errors.Join(errs...))
		c.Close()
		return
	}
	splice.Join(c, out, or(f.IdleTimeout, DefaultIdleTimeout))
}

func (f *Fixed) logf(format string, args ...any) {
	if f.Logf != nil {
		f.Logf(format, args...)
	}
}
