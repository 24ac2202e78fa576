// Package egress is the enclave's egress policy: which destinations the
// workload may reach through the egress proxy and the transparent
// forwards. The rules live in the launch manifest, so they are measured
// into PCR2 and an attestation proves them; both sides check them, the
// companion in the enclave before it opens a tunnel and the parent before
// it dials (the parent with its operator's allowlist as well). Stdlib only:
// init, the companion and the host tools import it.
//
// A rule is host[:port]:
//
//	api.example.com          that name, any port
//	api.example.com:443      that name, port 443
//	*.example.com:443        one label in place of the *
//	**.example.com           one or more leading labels
//	10.1.2.3:8443, [fd00::1]:443, 10.0.0.0/8, [fd00::/8]:443
//
// Names compare without regard to case (and a trailing dot). A port of *
// is any port. Deny rules win over allow rules, and what no rule allows is
// refused. A destination given by name is decided by the name rules; when
// the name has been resolved, an address that a deny rule covers refuses
// it too. A destination given as an address is decided by the address
// rules only: a name rule never allows an address, nor an address rule a
// name.
package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// MaxRules bounds a policy (each list); MaxRule bounds one rule's length.
const (
	MaxRules = 256
	MaxRule  = 300
)

// ErrRule wraps every rule syntax error.
var ErrRule = errors.New("egress rule")

// Rule is one parsed rule.
type Rule struct {
	text   string       // as written, host part lowercased
	labels []string     // name rules: the labels, "*" and "**" included
	prefix netip.Prefix // address rules (a single address is a /32 or /128)
	port   int          // 0: any port
}

// String is the rule as written (host lowercased).
func (r Rule) String() string { return r.text }

// IsAddress reports whether r is an address or network rule.
func (r Rule) IsAddress() bool { return r.prefix.IsValid() }

// ParseRule parses one rule.
func ParseRule(s string) (Rule, error) {
	bad := func(why string) (Rule, error) {
		return Rule{}, fmt.Errorf("%w %q: %s", ErrRule, s, why)
	}
	if s == "" {
		return bad("empty")
	}
	if len(s) > MaxRule {
		return bad(fmt.Sprintf("longer than %d bytes", MaxRule))
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return bad("no closing ]")
		}
		host, port = s[1:end], s[end+1:]
		if port != "" {
			if port[0] != ':' {
				return bad("text after ]")
			}
			port = port[1:]
			if port == "" {
				return bad("empty port")
			}
		}
		if !strings.Contains(host, ":") {
			return bad("brackets are for IPv6 addresses")
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		if strings.Count(s, ":") > 1 {
			return bad("an IPv6 address needs brackets: [addr] or [addr]:port")
		}
		host, port = s[:i], s[i+1:]
		if port == "" {
			return bad("empty port")
		}
	}
	r := Rule{}
	switch {
	case port == "" || port == "*":
	default:
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '0' || port[0] == '+' {
			return bad(fmt.Sprintf("port %q is not a number in 1..65535 or *", port))
		}
		r.port = n
	}
	if host == "" {
		return bad("empty host")
	}
	if p, err := parseAddress(host); err == nil {
		r.prefix = p
		host = p.String()
		if p.IsSingleIP() {
			host = p.Addr().String()
		}
	} else if looksNumeric(host) {
		return bad(err.Error())
	} else {
		labels, err := nameLabels(strings.TrimSuffix(strings.ToLower(host), "."), true)
		if err != nil {
			return bad(err.Error())
		}
		r.labels = labels
		host = strings.Join(labels, ".")
	}
	r.text = host
	if strings.Contains(host, ":") {
		r.text = "[" + host + "]"
	}
	if port != "" {
		r.text += ":" + port
	}
	return r, nil
}

// looksNumeric: digits, dots, slashes and colons only, or any colon: an
// address that did not parse, not a name.
func looksNumeric(h string) bool {
	if strings.Contains(h, ":") || strings.Contains(h, "/") {
		return true
	}
	return strings.Trim(h, "0123456789.") == ""
}

// parseAddress parses an address or a network in canonical form.
func parseAddress(h string) (netip.Prefix, error) {
	if strings.Contains(h, "/") {
		p, err := netip.ParsePrefix(h)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("network %q: %v", h, err)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("network %q has host bits set (%s)", h, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("address %q: %v", h, err)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("address %q has a zone", h)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// nameLabels splits a lowercased DNS name into labels; with wild, "*" is
// allowed as any label and "**" as the first.
func nameLabels(h string, wild bool) ([]string, error) {
	if len(h) > 253 {
		return nil, fmt.Errorf("name longer than 253 bytes")
	}
	labels := strings.Split(h, ".")
	for i, l := range labels {
		switch {
		case wild && l == "*":
			continue
		case wild && l == "**":
			if i != 0 {
				return nil, fmt.Errorf("** must be the first label")
			}
			if len(labels) == 1 {
				return nil, fmt.Errorf("** alone would allow every name; list the names")
			}
			continue
		case l == "":
			return nil, fmt.Errorf("empty label")
		case len(l) > 63:
			return nil, fmt.Errorf("label longer than 63 bytes")
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' && j > 0 && j < len(l)-1
			if !ok {
				if c == '*' && wild {
					return nil, fmt.Errorf("* stands for a whole label, not part of one")
				}
				return nil, fmt.Errorf("character %q not allowed in a name", c)
			}
		}
	}
	return labels, nil
}

// matchName reports whether the rule's labels match name's (exact labels,
// "*" any one, leading "**" one or more).
func (r Rule) matchName(labels []string) bool {
	pat := r.labels
	if len(pat) > 0 && pat[0] == "**" {
		rest := pat[1:]
		if len(labels) <= len(rest) {
			return false
		}
		return equalLabels(rest, labels[len(labels)-len(rest):])
	}
	return len(pat) == len(labels) && equalLabels(pat, labels)
}

func equalLabels(pat, labels []string) bool {
	for i, p := range pat {
		if p != "*" && p != labels[i] {
			return false
		}
	}
	return true
}

func (r Rule) matchPort(port int) bool { return r.port == 0 || r.port == port }

// Policy is the allow and deny lists.
type Policy struct {
	Allow, Deny []Rule
}

// Parse parses the allow and deny lists.
func Parse(allow, deny []string) (*Policy, error) {
	p := &Policy{}
	for _, l := range []struct {
		name  string
		rules []string
		into  *[]Rule
	}{{"allow", allow, &p.Allow}, {"deny", deny, &p.Deny}} {
		if len(l.rules) > MaxRules {
			return nil, fmt.Errorf("%w: %d %s rules, at most %d", ErrRule, len(l.rules), l.name, MaxRules)
		}
		for _, s := range l.rules {
			r, err := ParseRule(s)
			if err != nil {
				return nil, err
			}
			*l.into = append(*l.into, r)
		}
	}
	return p, nil
}

// Strings returns the lists as written (normalised), for the manifest.
func (p *Policy) Strings() (allow, deny []string) {
	for _, r := range p.Allow {
		allow = append(allow, r.text)
	}
	for _, r := range p.Deny {
		deny = append(deny, r.text)
	}
	return allow, deny
}

// Decision is the answer for one destination.
type Decision struct {
	Allowed bool
	// Rule is what decided: "allow RULE", "deny RULE", or "default deny".
	Rule string
}

func (d Decision) String() string { return d.Rule }

var defaultDeny = Decision{Rule: "default deny"}

// Destination is a host (a name or an address literal) and a port, as a
// client asked for it.
type Destination struct {
	Host string
	Port int
}

// ParseDestination parses host:port (IPv6 in brackets), the form of a
// CONNECT request and of a tunnel's target. The name is lowercased and
// checked, without wildcards.
func ParseDestination(s string) (Destination, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return Destination{}, fmt.Errorf("destination %q: no port", s)
	}
	host, port := s[:i], s[i+1:]
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] == '0' || port[0] == '+' {
		return Destination{}, fmt.Errorf("destination %q: port %q is not in 1..65535", s, port)
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return Destination{}, fmt.Errorf("destination %q: not an IPv6 address in brackets", s)
		}
		return Destination{Host: a.String(), Port: n}, nil
	}
	if strings.Contains(host, ":") {
		return Destination{}, fmt.Errorf("destination %q: an IPv6 address needs brackets", s)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return Destination{Host: a.String(), Port: n}, nil
	}
	if looksNumeric(host) {
		return Destination{}, fmt.Errorf("destination %q: not an address", s)
	}
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if _, err := nameLabels(h, false); err != nil {
		return Destination{}, fmt.Errorf("destination %q: %v", s, err)
	}
	return Destination{Host: h, Port: n}, nil
}

// String is host:port, IPv6 in brackets.
func (d Destination) String() string {
	if strings.Contains(d.Host, ":") {
		return "[" + d.Host + "]:" + strconv.Itoa(d.Port)
	}
	return d.Host + ":" + strconv.Itoa(d.Port)
}

// Addr is the destination's address, when it was given as one.
func (d Destination) Addr() (netip.Addr, bool) {
	a, err := netip.ParseAddr(d.Host)
	return a, err == nil
}

// Check decides d: by the name rules for a name, by the address rules for
// an address. d must come from ParseDestination.
func (p *Policy) Check(d Destination) Decision {
	if a, ok := d.Addr(); ok {
		return p.CheckAddr(a, d.Port)
	}
	labels := strings.Split(d.Host, ".")
	for _, r := range p.Deny {
		if !r.IsAddress() && r.matchPort(d.Port) && r.matchName(labels) {
			return Decision{Rule: "deny " + r.text}
		}
	}
	for _, r := range p.Allow {
		if !r.IsAddress() && r.matchPort(d.Port) && r.matchName(labels) {
			return Decision{Allowed: true, Rule: "allow " + r.text}
		}
	}
	return defaultDeny
}

// CheckAddr decides an address by the address rules.
func (p *Policy) CheckAddr(a netip.Addr, port int) Decision {
	a = a.Unmap()
	for _, r := range p.Deny {
		if r.IsAddress() && r.matchPort(port) && r.prefix.Contains(a) {
			return Decision{Rule: "deny " + r.text}
		}
	}
	for _, r := range p.Allow {
		if r.IsAddress() && r.matchPort(port) && r.prefix.Contains(a) {
			return Decision{Allowed: true, Rule: "allow " + r.text}
		}
	}
	return defaultDeny
}

// CheckResolved decides a name destination once it resolved to addrs: the
// name must be allowed, and no address may be denied by an address rule.
// It returns the addresses that may be dialled.
func (p *Policy) CheckResolved(d Destination, addrs []netip.Addr) (Decision, []netip.Addr) {
	dec := p.Check(d)
	if !dec.Allowed {
		return dec, nil
	}
	if _, ok := d.Addr(); ok {
		return dec, addrs
	}
	ok := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		denied := false
		for _, r := range p.Deny {
			if r.IsAddress() && r.matchPort(d.Port) && r.prefix.Contains(a) {
				denied, dec = true, Decision{Rule: "deny " + r.text + " (" + d.Host + " is " + a.String() + ")"}
				break
			}
		}
		if !denied {
			ok = append(ok, a)
		}
	}
	if len(ok) == 0 {
		if len(addrs) == 0 {
			return Decision{Rule: "no address for " + d.Host}, nil
		}
		return dec, nil
	}
	return p.Check(d), ok
}
