package vsock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultConnectTimeout bounds a connect when the context has no deadline.
const DefaultConnectTimeout = 2 * time.Second

// Kernel dials through the kernel's AF_VSOCK sockets.
type Kernel struct{}

// Dial connects to cid:port. The connection is non-blocking underneath, so
// SetDeadline works through the runtime poller.
func (Kernel) Dial(ctx context.Context, cid, port uint32) (Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w", err)
	}
	if err := connect(ctx, fd, cid, port); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock connect %d:%d: %w", cid, port, err)
	}
	return FileConn{os.NewFile(uintptr(fd), fmt.Sprintf("vsock:%d:%d", cid, port))}, nil
}

// FileConn is a connected stream socket (AF_VSOCK here; a socketpair in
// tests) as a Conn with CloseWrite.
type FileConn struct{ *os.File }

// CloseWrite shuts the sending half down: the peer reads EOF, and can
// still answer.
func (c FileConn) CloseWrite() error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_WR) }); err != nil {
		return err
	}
	return serr
}

func connect(ctx context.Context, fd int, cid, port uint32) error {
	err := unix.Connect(fd, &unix.SockaddrVM{CID: cid, Port: port})
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINPROGRESS) && !errors.Is(err, unix.EINTR) {
		return err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultConnectTimeout)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return unix.ETIMEDOUT
		}
		// Poll in short slices so a cancelled context is noticed.
		ms := int(min(left, 50*time.Millisecond) / time.Millisecond)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(fds, max(ms, 1))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			continue
		}
		soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return err
		}
		if soerr != 0 {
			return unix.Errno(soerr)
		}
		return nil
	}
}
