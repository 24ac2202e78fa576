// Package listen creates qtsm-agent's listening socket for socket
// activation.
//
// init creates /run/qtsm.sock, already listening and with its final mode
// and group, before it starts the agent, and hands the agent the descriptor
// (qtsm-agent --listen-fd). A client may connect from that moment on: its
// connection waits in the kernel's backlog until the agent accepts it. So
// the workload starts without waiting for the agent, and no connection is
// refused while the agent restarts: init keeps the socket and gives the
// same one to every instance.
package listen

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Backlog is how many connections may wait for the agent to accept them
// (the kernel caps it at net.core.somaxconn, 4096 by default).
const Backlog = 4096

// Unix creates a listening Unix stream socket at path with mode and, when
// gid >= 0, group gid. The socket is bound under a temporary name, given its
// mode and group, set listening, then renamed into place, so path appears
// only when a client can connect to it, with its final permissions. An
// existing path is an error. The returned file is close-on-exec; pass it to
// a child to share the socket.
func Unix(path string, mode fs.FileMode, gid int) (*os.File, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("listen %s: %w", path, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("listen %s: socket: %w", path, err)
	}
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".init")
	unix.Unlink(tmp)
	fail := func(op string, err error) (*os.File, error) {
		unix.Close(fd)
		unix.Unlink(tmp)
		return nil, fmt.Errorf("listen %s: %s: %w", path, op, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: tmp}); err != nil {
		return fail("bind", err)
	}
	if gid >= 0 {
		if err := unix.Lchown(tmp, -1, gid); err != nil {
			return fail("chown", err)
		}
	}
	if err := unix.Chmod(tmp, uint32(mode.Perm())); err != nil {
		return fail("chmod", err)
	}
	if err := unix.Listen(fd, Backlog); err != nil {
		return fail("listen", err)
	}
	if err := unix.Rename(tmp, path); err != nil {
		return fail("rename", err)
	}
	return os.NewFile(uintptr(fd), path), nil
}
