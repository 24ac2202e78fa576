package netlo

import (
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/qtenclave/enclave/init/internal/nstest"
)

func TestResultString(t *testing.T) {
	for r, want := range map[Result]string{
		{true, true}:   "lo up 127.0.0.1/8 ::1/128",
		{true, false}:  "lo up 127.0.0.1/8 (no IPv6 in kernel)",
		{false, true}:  "lo up ::1/128 (no IPv4 in kernel)",
		{false, false}: "no IPv4 or IPv6 in kernel: loopback not configured",
	} {
		if got := r.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", r, got, want)
		}
	}
}

// TestIntegrationLoopback brings lo up in a fresh network namespace, where
// it starts down with no address, and talks over it.
func TestIntegrationLoopback(t *testing.T) {
	if nstest.Child(t.Name()) {
		childLoopback(t)
		return
	}
	nstest.Run(t, t.Name(), syscall.CLONE_NEWNET).MustPass(t)
}

func childLoopback(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if lo.Flags&net.FlagUp != 0 {
		t.Fatal("lo already up in a new network namespace")
	}
	var r Result
	for i := 0; i < 2; i++ { // idempotent
		if r, err = Up(); err != nil {
			t.Fatalf("Up (round %d) = %v", i, err)
		}
	}
	t.Logf("Up = %s", r)
	if !r.IPv4 {
		t.Fatalf("Up = %+v, want IPv4 on this host", r)
	}
	lo, _ = net.InterfaceByName("lo")
	if lo.Flags&net.FlagUp == 0 {
		t.Error("lo not up")
	}
	addrs, _ := lo.Addrs()
	var got []string
	for _, a := range addrs {
		got = append(got, a.String())
	}
	all := strings.Join(got, " ")
	if !strings.Contains(all, "127.0.0.1/8") {
		t.Errorf("lo addresses %q lack 127.0.0.1/8", all)
	}
	if r.IPv6 && !strings.Contains(all, "::1/128") {
		t.Errorf("lo addresses %q lack ::1/128", all)
	}
	for _, addr := range []string{"127.0.0.1:0", "127.0.0.2:0", "[::1]:0"} {
		if addr == "[::1]:0" && !r.IPv6 {
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listen %s: %v", addr, err)
			continue
		}
		go func() {
			if c, err := l.Accept(); err == nil {
				c.Write([]byte("ok"))
				c.Close()
			}
		}()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Errorf("dial %s: %v", l.Addr(), err)
		} else {
			b := make([]byte, 2)
			if _, err := c.Read(b); err != nil || string(b) != "ok" {
				t.Errorf("read over %s = %q, %v", l.Addr(), b, err)
			}
			c.Close()
		}
		l.Close()
	}
}

// TestIntegrationLoopbackExplicit checks the fallback that sets the
// addresses when the kernel did not: set, up, add, in a fresh namespace.
func TestIntegrationLoopbackExplicit(t *testing.T) {
	if nstest.Child(t.Name()) {
		childExplicit(t)
		return
	}
	nstest.Run(t, t.Name(), syscall.CLONE_NEWNET).MustPass(t)
}

func childExplicit(t *testing.T) {
	fd4, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		t.Skipf("no IPv4: %v", err)
	}
	defer syscall.Close(fd4)
	if has4(fd4) || has6() {
		t.Fatal("lo has an address before it is configured")
	}
	if err := setInet4(fd4); err != nil {
		t.Fatalf("setInet4: %v", err)
	}
	if err := setUp(fd4); err != nil {
		t.Fatalf("setUp: %v", err)
	}
	if !has4(fd4) {
		t.Error("lo has no IPv4 address after setInet4 and setUp")
	}
	fd6, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return // no IPv6 here
	}
	defer syscall.Close(fd6)
	if err := addInet6(fd6); err != nil { // EEXIST (added with lo) is fine
		t.Fatalf("addInet6: %v", err)
	}
	if !has6() {
		t.Error("::1 not bindable after addInet6")
	}
}
