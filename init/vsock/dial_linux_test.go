package vsock

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestIntegrationLoopback dials a listener on the local CID (vsock
// loopback, CONFIG_VSOCKETS_LOOPBACK), which never leaves the machine. It
// skips where loopback is not available (the build host, typically).
func TestIntegrationLoopback(t *testing.T) {
	lfd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no AF_VSOCK here: %v", err)
	}
	defer unix.Close(lfd)
	if err := unix.Bind(lfd, &unix.SockaddrVM{CID: CIDLocal, Port: unix.VMADDR_PORT_ANY}); err != nil {
		t.Skipf("no vsock loopback here (bind CID 1: %v)", err)
	}
	if err := unix.Listen(lfd, 1); err != nil {
		t.Skipf("listen: %v", err)
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*unix.SockaddrVM).Port
	go func() {
		nfd, _, err := unix.Accept(lfd)
		if err != nil {
			return
		}
		f := os.NewFile(uintptr(nfd), "peer")
		defer f.Close()
		b := make([]byte, 1)
		f.Read(b)
		f.Write(b)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Kernel{}.Dial(ctx, CIDLocal, port)
	if err != nil {
		t.Fatalf("Dial(1:%d) = %v", port, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{0xB7}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil || b[0] != 0xB7 {
		t.Errorf("echo = %x, %v", b, err)
	}
	// Nobody listens on port+1: refused, not hung.
	start := time.Now()
	if _, err := (Kernel{}).Dial(ctx, CIDLocal, port+1); err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("Dial to a closed port = %v after %v", err, time.Since(start))
	}
}

func TestDialCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// No socket is even created: the context is checked first.
	if _, err := (Kernel{}).Dial(ctx, CIDLocal, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial with a cancelled context = %v, want context.Canceled", err)
	}
}
