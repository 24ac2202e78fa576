// Package unixsock creates listening Unix stream sockets atomically: the
// socket appears at its path only once it is listening, with its final mode
// and group, so whoever waits for the path may connect at once. It is the
// one implementation for init (which creates qtsm-agent's socket and hands
// it over: socket activation) and qtsm-agent (when it creates its own).
//
// The socket is bound inside a new private directory (mode 0700, random
// name) next to its path, then renamed into place: no other user can
// predict, pre-create or swap the temporary name, even in a world-writable
// directory.
package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Backlog is how many connections may wait to be accepted (the kernel
// caps it at net.core.somaxconn, 4096 by default): with socket activation,
// every connection made before the agent is ready waits there.
const Backlog = 4096

// Listen creates a listening Unix stream socket at path with mode and,
// when gid >= 0, group gid. An existing path is an error (fs.ErrExist). The
// returned file is close-on-exec; pass it to a child to share the socket,
// or make a net.Listener of it with net.FileListener.
func Listen(path string, mode fs.FileMode, gid int) (*os.File, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("listen %s: %w", path, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	private, err := os.MkdirTemp(dir, "."+filepath.Base(path)+".")
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	defer os.RemoveAll(private)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("listen %s: socket: %w", path, err)
	}
	tmp := filepath.Join(private, "s")
	fail := func(op string, err error) (*os.File, error) {
		unix.Close(fd)
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
