package vsock

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Listen listens on port for connections from any CID (the parent's stop
// requests). Accept waits through the runtime poller, so Close ends it.
func (Kernel) Listen(port uint32) (Listener, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock bind port %d: %w", port, err)
	}
	if err := unix.Listen(fd, 4); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock listen port %d: %w", port, err)
	}
	return &listener{f: os.NewFile(uintptr(fd), fmt.Sprintf("vsock:*:%d", port))}, nil
}

type listener struct{ f *os.File }

func (l *listener) Accept() (Conn, error) {
	rc, err := l.f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var aerr error
	if err := rc.Read(func(fd uintptr) bool {
		nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		return !errors.Is(aerr, unix.EAGAIN)
	}); err != nil {
		return nil, err
	}
	if aerr != nil {
		return nil, aerr
	}
	return FileConn{os.NewFile(uintptr(nfd), "vsock:accepted")}, nil
}

func (l *listener) Close() error { return l.f.Close() }
