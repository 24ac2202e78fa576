package qemu

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/qtenclave/enclave/image"
	"github.com/qtenclave/enclave/image/eif"
	"github.com/qtenclave/enclave/kms/fakekms"
	"github.com/qtenclave/enclave/parent/emulator"
	"github.com/qtenclave/enclave/parent/proxy"
	"github.com/qtenclave/enclave/proto/egress"
	"github.com/qtenclave/enclave/proto/vsockports"
)

// ParseHost parses --egress-host NAME=IP (as docker's --add-host).
func ParseHost(s string, into map[string][]netip.Addr) error {
	name, ip, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("--egress-host %q: want NAME=IP", s)
	}
	d, err := egress.ParseDestination(name + ":1")
	if err != nil {
		return fmt.Errorf("--egress-host %q: %v", s, err)
	}
	if _, isAddr := d.Addr(); isAddr {
		return fmt.Errorf("--egress-host %q: %q is an address, not a name", s, name)
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return fmt.Errorf("--egress-host %q: %v", s, err)
	}
	into[d.Host] = append(into[d.Host], a.Unmap())
	return nil
}

// egressTunnels prepares the parent's side of the image's egress: nil when
// the image's launch manifest opens none. The operator's allowlist is
// o.EgressAllow, or, when empty, exactly the image's policy.
func egressTunnels(o *Options, f *eif.File, stderr io.Writer, logf func(string, ...any)) (*proxy.Tunnels, error) {
	m, err := image.LaunchManifest(f)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // a legacy image: /cmd and /env, no egress
	}
	if err != nil {
		return nil, err
	}
	if m.Egress == nil {
		if len(o.EgressAllow) > 0 {
			fmt.Fprintf(stderr, "qtenclave run: --egress-allow given, but the image opens no egress (qtenclave build --egress-allow)\n")
		}
		return nil, nil
	}
	t, err := proxy.ForImage(m, o.EgressAllow, o.EgressHosts)
	if err != nil {
		return nil, err
	}
	t.Logf = func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		if strings.HasPrefix(line, "egress: refused") || logf != nil {
			fmt.Fprintf(stderr, "qtenclave run: %s\n", line)
		}
	}
	return t, nil
}

// serveEgress serves t on the parent's egress port of the emulated device.
// stop closes the port; open tunnels end when the device does.
func serveEgress(p *emulator.Parent, t *proxy.Tunnels) (stop func(), err error) {
	l, err := p.Device.Listen(vsockports.Egress)
	if err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	go t.Serve(l)
	return func() { l.Close() }, nil
}

// serveFakeKMS serves the fake KMS that the policy file describes, on its
// listen address, until stop.
func serveFakeKMS(path string, stderr io.Writer) (stop func(), err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--fake-kms: %w", err)
	}
	s, addr, err := fakekms.LoadPolicy(b)
	if err != nil {
		return nil, fmt.Errorf("--fake-kms %s: %w", path, err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--fake-kms: %w", err)
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(l)
	fmt.Fprintf(stderr, "qtenclave run: fake KMS on http://%s\n", l.Addr())
	return func() { hs.Close() }, nil
}
