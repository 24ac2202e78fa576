package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseAllowlist(t *testing.T) {
	b, err := os.ReadFile("testdata/vsock-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, err := ParseAllowlist(b)
	if err != nil {
		t.Fatalf("ParseAllowlist(testdata/vsock-proxy.yaml) = %v", err)
	}
	if len(a.Allowlist) != 4 || a.Allowlist[3] != (Endpoint{"localhost", 8443}) {
		t.Errorf("allowlist = %+v", a.Allowlist)
	}
	for _, c := range []struct{ in, msg string }{
		{"", `no "allowlist"`},
		{"allowlist:\n- {address: a.example, port: 0}\n", "port 0"},
		{"allowlist:\n- {address: a.example, port: 70000}\n", "port 70000"},
		{"allowlist:\n- {port: 443}\n", "address"},
		{"allowlist:\n- {address: a.example, port: 443, extra: 1}\n", "extra"},
		{"allowlists:\n- {address: a.example, port: 443}\n", "allowlists"},
		{"allowlist: [1, 2]\n", "allowlist"},
		{"allowlist:\n- {address: a.example, port: https}\n", "https"},
	} {
		if _, err := ParseAllowlist([]byte(c.in)); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("ParseAllowlist(%q) = %v, want an error mentioning %q", c.in, err, c.msg)
		}
	}
}

// fakeDNS resolves from a table.
func fakeDNS(table map[string][]string) Resolver {
	return func(ctx context.Context, host string) ([]netip.Addr, error) {
		var out []netip.Addr
		for _, s := range table[strings.ToLower(host)] {
			out = append(out, netip.MustParseAddr(s))
		}
		if out == nil {
			return nil, errors.New("no such host " + host)
		}
		return out, nil
	}
}

// TestAllows is vsock-proxy's rule: same port, and the same name or a
// shared address.
func TestAllows(t *testing.T) {
	a := &Allowlist{Allowlist: []Endpoint{{"kms.us-east-1.amazonaws.com", 443}, {"alias.example", 443}, {"v6only.example", 443}}}
	dns := fakeDNS(map[string][]string{
		"kms.us-east-1.amazonaws.com": {"192.0.2.10"},
		"alias.example":               {"192.0.2.20", "2001:db8::20"},
		"other-name.example":          {"192.0.2.20"},
		"unrelated.example":           {"192.0.2.99"},
		"v6only.example":              {"2001:db8::30"},
		"v6twin.example":              {"2001:db8::30"},
	})
	for _, c := range []struct {
		host string
		port int
		fam  Family
		ok   bool
	}{
		{"kms.us-east-1.amazonaws.com", 443, AnyFamily, true},
		{"KMS.us-east-1.amazonaws.com.", 443, AnyFamily, true},
		{"kms.us-east-1.amazonaws.com", 80, AnyFamily, false},
		{"other-name.example", 443, AnyFamily, true}, // shares 192.0.2.20 with alias.example
		{"192.0.2.20", 443, AnyFamily, true},
		{"unrelated.example", 443, AnyFamily, false},
		{"v6twin.example", 443, AnyFamily, true},
		{"v6twin.example", 443, IPv4Only, false}, // no IPv4 address
		{"nowhere.example", 443, AnyFamily, false},
	} {
		ok, why := a.Allows(context.Background(), dns, c.host, c.port, c.fam)
		if ok != c.ok {
			t.Errorf("Allows(%s:%d, family %d) = %v (%s), want %v", c.host, c.port, c.fam, ok, why, c.ok)
		}
	}
}

// TestFixed forwards raw connections to one destination, re-resolving the
// name for each connection, with the address family chosen.
func TestFixed(t *testing.T) {
	e := echo(t)
	port := e.Addr().(*net.TCPAddr).Port
	table := map[string][]string{"svc.example": {"127.0.0.1"}}
	var lookups atomic.Int32
	dns := func(ctx context.Context, host string) ([]netip.Addr, error) {
		lookups.Add(1)
		return fakeDNS(table)(ctx, host)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Fixed{Host: "svc.example", Port: port, Resolve: dns, Workers: 2}
	done := make(chan error, 1)
	go func() { done <- f.Serve(l) }()
	for i := range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, 256<<10)
		rand.Read(data)
		go func() { c.Write(data); c.(*net.TCPConn).CloseWrite() }()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("connection %d: %d bytes back, %v", i, len(got), err)
		}
	}
	if n := lookups.Load(); n != 3 {
		t.Errorf("%d lookups for 3 connections, want one each", n)
	}
	l.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	// IPv6 only, and the name has no IPv6 address: the connection closes.
	l6, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l6.Close()
	f6 := &Fixed{Host: "svc.example", Port: port, Resolve: dns, Family: IPv6Only}
	go f6.Serve(l6)
	c, err := net.Dial("tcp", l6.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("IPv6-only to an IPv4-only name: read %d, %v; want EOF", n, err)
	}
	c.Close()
}
