package proxy

import (
	"fmt"
	"net/netip"

	"github.com/qtenclave/enclave/proto/egress"
	"github.com/qtenclave/enclave/proto/launch"
)

// ForImage prepares the tunnels of an image whose launch manifest is m:
// nil when it opens no egress. The operator's allowlist is operator, or,
// when empty, exactly the image's policy; hosts resolves names without DNS.
func ForImage(m *launch.Manifest, operator []string, hosts map[string][]netip.Addr) (*Tunnels, error) {
	if m == nil || m.Egress == nil {
		return nil, nil
	}
	img, err := egress.Parse(m.Egress.Allow, m.Egress.Deny)
	if err != nil {
		return nil, fmt.Errorf("the image's egress policy: %w", err)
	}
	t := &Tunnels{Image: img, Hosts: hosts}
	if len(operator) > 0 {
		if t.Operator, err = egress.Parse(operator, nil); err != nil {
			return nil, fmt.Errorf("the operator's allowlist: %w", err)
		}
	}
	return t, nil
}
