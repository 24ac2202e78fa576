package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/device"
)

// ListenInherited serves socket activation: it takes the listening Unix
// stream socket inherited as descriptor fd (init created it at name, with
// its mode and group, and keeps it, so connections made before the agent
// is ready, or while it restarts, wait in its backlog).
func ListenInherited(fd int, name string) (*net.UnixListener, error) {
	if fd < 3 {
		return nil, fmt.Errorf("--listen-fd %d: want a descriptor above 2", fd)
	}
	f := os.NewFile(uintptr(fd), name)
	if f == nil {
		return nil, fmt.Errorf("--listen-fd %d: not a descriptor", fd)
	}
	defer f.Close() // FileListener has its own copy
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("--listen-fd %d: %w", fd, err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("--listen-fd %d: not a Unix stream socket (%s)", fd, l.Addr().Network())
	}
	ul.SetUnlinkOnClose(false)
	return ul, nil
}

// RejectPending accepts and closes the connections waiting on l, so that
// clients of an agent that cannot start get an error at once rather than a
// wait; it returns how many there were.
func RejectPending(l *net.UnixListener) int {
	// A deadline already passed would not even try: a short one takes what
	// is queued now.
	l.SetDeadline(time.Now().Add(20 * time.Millisecond))
	n := 0
	for {
		conn, err := l.Accept()
		if err != nil {
			return n
		}
		conn.Close()
		n++
	}
}

// SignalReady writes "ready\n" to descriptor fd and closes it: how the
// agent tells init it accepts connections.
func SignalReady(fd int) error {
	f := os.NewFile(uintptr(fd), "ready-fd")
	if f == nil {
		return fmt.Errorf("--ready-fd %d: not a descriptor", fd)
	}
	defer f.Close()
	if _, err := f.Write([]byte("ready\n")); err != nil {
		return fmt.Errorf("--ready-fd %d: %w", fd, err)
	}
	return nil
}

// OpenDevice opens the secure-module device at path, or with path "auto"
// the first of the known devices to appear within wait (qtsm/device's
// table). A path with another name is opened with Nitro's sizes.
func OpenDevice(ctx context.Context, path string, wait time.Duration) (*qtsm.Device, qtsm.DeviceSpec, error) {
	var spec qtsm.DeviceSpec
	if path == "auto" {
		deadline := time.Now().Add(wait)
		for {
			var err error
			if spec, err = qtsm.DetectDevice(); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return nil, spec, fmt.Errorf("%w (waited %v; looked for %v)", err, wait, device.Paths())
			}
			select {
			case <-ctx.Done():
				return nil, spec, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	} else {
		spec = qtsm.NitroDevice
		if s, ok := device.ByPath(path); ok && s.Name == device.Qingtian.Name {
			spec = qtsm.QingtianDevice
		}
		spec.Path = path
	}
	d, err := qtsm.OpenDevice(spec)
	if err != nil {
		return nil, spec, err
	}
	return d, spec, nil
}
