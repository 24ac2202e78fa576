package qemu

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseHost(t *testing.T) {
	hosts := map[string][]netip.Addr{}
	for _, s := range []string{"Egress.Test=127.0.0.1", "egress.test=::1", "v4mapped.test=::ffff:10.0.0.1"} {
		if err := ParseHost(s, hosts); err != nil {
			t.Errorf("ParseHost(%q) = %v", s, err)
		}
	}
	if got := hosts["egress.test"]; !slices.Equal(got, []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}) {
		t.Errorf("egress.test = %v", got)
	}
	if got := hosts["v4mapped.test"]; !slices.Equal(got, []netip.Addr{netip.MustParseAddr("10.0.0.1")}) {
		t.Errorf("v4mapped.test = %v", got)
	}
	for _, c := range []struct{ in, msg string }{
		{"egress.test", "want NAME=IP"},
		{"egress.test=localhost", "ParseAddr"},
		{"10.0.0.1=10.0.0.2", "is an address, not a name"},
		{"*.test=10.0.0.1", "not allowed in a name"},
		{"=10.0.0.1", "--egress-host"},
	} {
		if err := ParseHost(c.in, hosts); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("ParseHost(%q) = %v, want an error saying %q", c.in, err, c.msg)
		}
	}
}
