package egress

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseRule(t *testing.T) {
	for _, c := range []struct {
		in, want string // want "" means an error
	}{
		{"api.example.com", "api.example.com"},
		{"API.Example.COM.:443", "api.example.com:443"},
		{"*.example.com:*", "*.example.com:*"},
		{"**.example.com", "**.example.com"},
		{"a.*.example.com:8443", "a.*.example.com:8443"},
		{"10.1.2.3", "10.1.2.3"},
		{"10.1.2.3:8443", "10.1.2.3:8443"},
		{"10.0.0.0/8:443", "10.0.0.0/8:443"},
		{"[fd00::1]:443", "[fd00::1]:443"},
		{"[fd00::/8]", "[fd00::/8]"},
		{"[::ffff:10.1.2.3]", "10.1.2.3"}, // mapped: the IPv4 address
		{"kms_internal.local", "kms_internal.local"},
		{"", ""},
		{"example.com:", ""},
		{"example.com:0", ""},
		{"example.com:65536", ""},
		{"example.com:0443", ""},
		{"example.com:+443", ""},
		{"example.com:https", ""},
		{"fd00::1", ""},           // IPv6 without brackets
		{"[example.com]:443", ""}, // brackets for names
		{"[fd00::1]x", ""},        // text after ]
		{"[fd00::1", ""},          // no ]
		{"10.0.0.1/8", ""},        // host bits
		{"10.0.0.0/33", ""},       // bad prefix
		{"300.1.2.3", ""},         // not an address, not a name
		{"a.**.example.com", ""},  // ** not first
		{"**", ""},                // everything
		{"api-*.example.com", ""}, // partial wildcard
		{"-api.example.com", ""},  // leading hyphen
		{"api..example.com", ""},  // empty label
		{"api example.com", ""},   // space
		{"exa\x00mple.com", ""},   // NUL
		{strings.Repeat("a", 64) + ".com", ""},
		{strings.Repeat("a.", 150) + "com", ""},
	} {
		r, err := ParseRule(c.in)
		switch {
		case c.want == "" && err == nil:
			t.Errorf("ParseRule(%q) = %q, want an error", c.in, r)
		case c.want == "" && !errors.Is(err, ErrRule):
			t.Errorf("ParseRule(%q) error %v does not wrap ErrRule", c.in, err)
		case c.want != "" && err != nil:
			t.Errorf("ParseRule(%q) = %v, want %q", c.in, err, c.want)
		case c.want != "" && r.String() != c.want:
			t.Errorf("ParseRule(%q) = %q, want %q", c.in, r, c.want)
		}
	}
}

func TestCheck(t *testing.T) {
	p, err := Parse(
		[]string{"api.example.com:443", "*.svc.example.com", "**.amazonaws.com:443", "10.0.0.0/8:8443", "[fd00::/8]:443", "Mixed.Case.Example:80"},
		[]string{"secret.svc.example.com", "10.9.0.0/16", "kms.eu-west-1.amazonaws.com:443"},
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dest string
		want string
	}{
		{"api.example.com:443", "allow api.example.com:443"},
		{"API.EXAMPLE.COM.:443", "allow api.example.com:443"},
		{"api.example.com:80", "default deny"},
		{"x.api.example.com:443", "default deny"},
		{"a.svc.example.com:1", "allow *.svc.example.com"},
		{"a.b.svc.example.com:1", "default deny"},                     // * is one label
		{"svc.example.com:1", "default deny"},                         // * is not zero labels
		{"secret.svc.example.com:443", "deny secret.svc.example.com"}, // deny wins
		{"s3.amazonaws.com:443", "allow **.amazonaws.com:443"},
		{"a.b.c.amazonaws.com:443", "allow **.amazonaws.com:443"},
		{"amazonaws.com:443", "default deny"}, // ** is one or more
		{"kms.eu-west-1.amazonaws.com:443", "deny kms.eu-west-1.amazonaws.com:443"},
		{"10.1.2.3:8443", "allow 10.0.0.0/8:8443"},
		{"10.1.2.3:443", "default deny"},
		{"10.9.1.1:8443", "deny 10.9.0.0/16"},
		{"11.1.2.3:8443", "default deny"},
		{"[fd12::5]:443", "allow [fd00::/8]:443"},
		{"[fe80::1]:443", "default deny"},
		{"mixed.case.example:80", "allow mixed.case.example:80"},
	} {
		d, err := ParseDestination(c.dest)
		if err != nil {
			t.Errorf("ParseDestination(%q) = %v", c.dest, err)
			continue
		}
		got := p.Check(d)
		if got.Rule != c.want || got.Allowed != strings.HasPrefix(c.want, "allow ") {
			t.Errorf("Check(%s) = %+v, want %q", c.dest, got, c.want)
		}
	}
}

// TestCheckResolved: a name decides by name rules, and its addresses by
// the address deny rules; an allowed address never lets a denied name
// through.
func TestCheckResolved(t *testing.T) {
	p, err := Parse([]string{"good.example:443", "10.0.0.0/8"}, []string{"10.9.0.0/16", "bad.example"})
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr
	for _, c := range []struct {
		name    string
		dest    string
		addrs   []netip.Addr
		allowed bool
		rule    string
		dial    int
	}{
		{"allowed name, plain address", "good.example:443", []netip.Addr{addr("192.0.2.1")}, true, "allow good.example:443", 1},
		{"allowed name, one address denied", "good.example:443", []netip.Addr{addr("10.9.1.1"), addr("192.0.2.1")}, true, "allow good.example:443", 1},
		{"allowed name, all addresses denied", "good.example:443", []netip.Addr{addr("10.9.1.1")}, false, "deny 10.9.0.0/16 (good.example is 10.9.1.1)", 0},
		{"denied name resolving to an allowed address", "bad.example:443", []netip.Addr{addr("10.1.1.1")}, false, "deny bad.example", 0},
		{"unlisted name resolving to an allowed address", "other.example:443", []netip.Addr{addr("10.1.1.1")}, false, "default deny", 0},
		{"no address", "good.example:443", nil, false, "no address for good.example", 0},
	} {
		d, err := ParseDestination(c.dest)
		if err != nil {
			t.Fatal(err)
		}
		dec, dial := p.CheckResolved(d, c.addrs)
		if dec.Allowed != c.allowed || dec.Rule != c.rule || len(dial) != c.dial {
			t.Errorf("%s: CheckResolved(%s, %v) = %+v, %v; want allowed %v, %q, %d to dial", c.name, c.dest, c.addrs, dec, dial, c.allowed, c.rule, c.dial)
		}
	}
}

func TestParseDestination(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Example.COM:443", "example.com:443"},
		{"example.com.:443", "example.com:443"},
		{"10.1.2.3:80", "10.1.2.3:80"},
		{"[FD00::1]:443", "[fd00::1]:443"},
		{"example.com", ""},
		{"example.com:0", ""},
		{"example.com:99999", ""},
		{"*.example.com:443", ""},
		{"fd00::1:443", ""},
		{"[fe80::1%eth0]:443", ""},
		{"[10.1.2.3]:443", ""},
		{"999.1.2.3:443", ""},
		{":443", ""},
		{"a b:443", ""},
	} {
		d, err := ParseDestination(c.in)
		if c.want == "" {
			if err == nil {
				t.Errorf("ParseDestination(%q) = %v, want an error", c.in, d)
			}
			continue
		}
		if err != nil || d.String() != c.want {
			t.Errorf("ParseDestination(%q) = %v, %v; want %s", c.in, d, err, c.want)
		}
	}
}

func TestLimits(t *testing.T) {
	many := make([]string, MaxRules+1)
	for i := range many {
		many[i] = "a.example"
	}
	if _, err := Parse(many, nil); !errors.Is(err, ErrRule) {
		t.Errorf("Parse(%d rules) = %v, want ErrRule", len(many), err)
	}
	if _, err := ParseRule(strings.Repeat("a", MaxRule+1)); !errors.Is(err, ErrRule) {
		t.Errorf("ParseRule(%d bytes) = %v, want ErrRule", MaxRule+1, err)
	}
}

// FuzzPolicy: parsing never panics; a parsed rule prints a rule that
// parses to itself; a destination that parses is decided without panic,
// and an allowed one is allowed by a rule that is not a deny rule.
func FuzzPolicy(f *testing.F) {
	for _, s := range []string{"api.example.com:443", "**.a.b", "*.x:*", "10.0.0.0/8:1", "[fd00::/8]:443", "[::1]", "a..b", "[x]:1"} {
		f.Add(s, "api.example.com:443")
	}
	f.Fuzz(func(t *testing.T, rule, dest string) {
		r, err := ParseRule(rule)
		if err != nil {
			return
		}
		r2, err := ParseRule(r.String())
		if err != nil || r2.String() != r.String() {
			t.Fatalf("ParseRule(%q) = %q, which parses to %q, %v", rule, r, r2, err)
		}
		d, err := ParseDestination(dest)
		if err != nil {
			return
		}
		d2, err := ParseDestination(d.String())
		if err != nil || d2 != d {
			t.Fatalf("ParseDestination(%q) = %v, which parses to %v, %v", dest, d, d2, err)
		}
		for _, p := range []*Policy{{Allow: []Rule{r}}, {Deny: []Rule{r}}, {Allow: []Rule{r}, Deny: []Rule{r}}} {
			dec := p.Check(d)
			if dec.Allowed && len(p.Deny) > 0 {
				t.Fatalf("rule %q both allows and denies %v, and Check allowed it", r, d)
			}
		}
	})
}
