package flatten

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"syscall"
	"time"
)

// maxLinks bounds the symbolic links followed resolving one path (the
// kernel's limit).
const maxLinks = 40

// maxRead bounds ReadFile (it is for /etc/passwd and /etc/group).
const maxRead = 16 << 20

// resolve finds the absolute path p in the tree as the enclave's kernel
// would inside its root: following symbolic links (absolute ones from the
// root; ".." stops at the root), follow tells whether a link at the last
// component is followed too.
func (t *Tree) resolve(p string, follow bool) (*node, error) {
	links := 0
	walk := func(stack []*node, rest []string) (*node, error) {
		for len(rest) > 0 {
			c := rest[0]
			rest = rest[1:]
			cur := stack[len(stack)-1]
			switch c {
			case "", ".":
				continue
			case "..":
				if len(stack) > 1 {
					stack = stack[:len(stack)-1]
				}
				continue
			}
			if cur.kind != kindDir {
				return nil, syscall.ENOTDIR
			}
			next := cur.children[c]
			if next == nil || next.kind == kindDropped {
				return nil, fs.ErrNotExist
			}
			if next.kind == kindSymlink && (len(rest) > 0 || follow) {
				links++
				if links > maxLinks {
					return nil, syscall.ELOOP
				}
				target := strings.Split(next.link, "/")
				if strings.HasPrefix(next.link, "/") {
					stack = stack[:1]
				}
				rest = append(target, rest...)
				continue
			}
			stack = append(stack, next)
		}
		return stack[len(stack)-1], nil
	}
	return walk([]*node{t.root}, strings.Split(path.Clean("/"+p), "/"))
}

// Stat is os.Stat inside the tree: symbolic links are followed; the
// FileInfo's Sys is a *syscall.Stat_t holding the owner.
func (t *Tree) Stat(name string) (fs.FileInfo, error) {
	n, err := t.resolve(name, true)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	fi := &fileInfo{name: path.Base(name)}
	switch n.kind {
	case kindDir:
		fi.mode = fs.ModeDir | fs.FileMode(n.mode&0o777)
		fi.st.Uid, fi.st.Gid = n.uid, n.gid
	case kindReg:
		fi.mode = fs.FileMode(n.ino.mode & 0o777)
		fi.size = n.ino.size
		fi.st.Uid, fi.st.Gid = n.ino.uid, n.ino.gid
	default:
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return fi, nil
}

// ReadFile reads a regular file of the tree (following symbolic links), up
// to 16 MiB.
func (t *Tree) ReadFile(name string) ([]byte, error) {
	n, err := t.resolve(name, true)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	if n.kind != kindReg {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("not a regular file")}
	}
	if n.ino.size > maxRead {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fmt.Errorf("%d bytes, more than %d", n.ino.size, maxRead)}
	}
	if t.spool == nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrClosed}
	}
	b := make([]byte, n.ino.size)
	if _, err := io.ReadFull(io.NewSectionReader(t.spool, n.ino.off, n.ino.size), b); err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	return b, nil
}

type fileInfo struct {
	name string
	mode fs.FileMode
	size int64
	st   syscall.Stat_t
}

func (f *fileInfo) Name() string       { return f.name }
func (f *fileInfo) Size() int64        { return f.size }
func (f *fileInfo) Mode() fs.FileMode  { return f.mode }
func (f *fileInfo) ModTime() time.Time { return time.Time{} }
func (f *fileInfo) IsDir() bool        { return f.mode.IsDir() }
func (f *fileInfo) Sys() any           { return &f.st }
