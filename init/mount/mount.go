// Package mount sets up the enclave's file systems: devtmpfs before anything
// else, the switch into /rootfs in the move-mount form, the standard mounts
// inside the new root and the /dev symlinks.
//
// All work goes through Mounter, so the sequence is unit-tested with a
// recording fake; Sys is the real thing.
package mount

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"golang.org/x/sys/unix"
)

// Mounter is the set of system calls the package uses.
type Mounter interface {
	Mount(source, target, fstype string, flags uintptr, data string) error
	Unmount(target string, flags int) error
	MkdirAll(path string, perm fs.FileMode) error
	Symlink(oldname, newname string) error
	Chdir(dir string) error
	Chroot(dir string) error
}

// Point is one mount.
type Point struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
	// Optional mounts only warn when they fail: the kernel may lack the
	// file system (sysfs, devpts and cgroup2 are configurable).
	Optional bool
	// BusyOK treats EBUSY as "already mounted".
	BusyOK bool
}

func (p Point) String() string {
	var opts []string
	for _, f := range []struct {
		bit  uintptr
		name string
	}{{unix.MS_RDONLY, "ro"}, {unix.MS_NOSUID, "nosuid"}, {unix.MS_NODEV, "nodev"}, {unix.MS_NOEXEC, "noexec"}} {
		if p.Flags&f.bit != 0 {
			opts = append(opts, f.name)
		}
	}
	if p.Data != "" {
		opts = append(opts, p.Data)
	}
	s := p.FSType + " on " + p.Target
	if len(opts) > 0 {
		s += " (" + strings.Join(opts, ",") + ")"
	}
	return s
}

const (
	nosuid = unix.MS_NOSUID
	nodev  = unix.MS_NODEV
	noexec = unix.MS_NOEXEC
)

// Dev is devtmpfs on /dev, the first mount in the bootstrap root and again
// in the new root.
func Dev() Point {
	return Point{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Flags: nosuid | noexec, Data: "mode=0755", BusyOK: true}
}

// Proc is procfs on /proc.
func Proc() Point {
	return Point{Source: "proc", Target: "/proc", FSType: "proc", Flags: nosuid | nodev | noexec}
}

// Options adjusts Table.
type Options struct {
	// TmpNoexec mounts /tmp noexec (AWS's behaviour). The default allows
	// exec, which dlopen of extracted libraries needs.
	TmpNoexec bool
}

// Table is the mounts inside the new root, in order.
func Table(o Options) []Point {
	tmp := uintptr(nosuid | nodev)
	if o.TmpNoexec {
		tmp |= noexec
	}
	return []Point{
		Dev(),
		Proc(),
		{Source: "sysfs", Target: "/sys", FSType: "sysfs", Flags: nosuid | nodev | noexec, Optional: true},
		{Source: "devpts", Target: "/dev/pts", FSType: "devpts", Flags: nosuid | noexec, Data: "newinstance,ptmxmode=0666,mode=0620", Optional: true},
		{Source: "shm", Target: "/dev/shm", FSType: "tmpfs", Flags: nosuid | nodev | noexec, Data: "mode=1777"},
		{Source: "tmpfs", Target: "/run", FSType: "tmpfs", Flags: nosuid | nodev, Data: "mode=0755"},
		{Source: "tmpfs", Target: "/tmp", FSType: "tmpfs", Flags: tmp, Data: "mode=1777"},
		{Source: "cgroup2", Target: "/sys/fs/cgroup", FSType: "cgroup2", Flags: nosuid | nodev | noexec, Optional: true},
	}
}

// Link is a symbolic link to create.
type Link struct{ Target, Name string }

// Links are the /dev symlinks devtmpfs does not provide.
func Links() []Link {
	return []Link{
		{"/proc/self/fd", "/dev/fd"},
		{"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"},
		{"/proc/self/fd/2", "/dev/stderr"},
	}
}

// Error is a failed mount operation.
type Error struct {
	Op    string // "mount", "mkdir", "symlink", "switch root"
	Point string
	Err   error
}

func (e *Error) Error() string { return e.Op + " " + e.Point + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Do creates p's mount point and mounts p.
func Do(m Mounter, p Point) error {
	if err := m.MkdirAll(p.Target, 0o755); err != nil {
		return &Error{"mkdir", p.String(), err}
	}
	err := m.Mount(p.Source, p.Target, p.FSType, p.Flags, p.Data)
	if err != nil && p.BusyOK && errors.Is(err, unix.EBUSY) {
		return nil
	}
	if err != nil {
		return &Error{"mount", p.String(), err}
	}
	return nil
}

// All mounts pts in order. An optional mount that fails is passed to warn
// and skipped; any other failure stops and is returned.
func All(m Mounter, pts []Point, warn func(error)) error {
	for _, p := range pts {
		if err := Do(m, p); err != nil {
			if p.Optional {
				if warn != nil {
					warn(err)
				}
				continue
			}
			return err
		}
	}
	return nil
}

// Symlinks creates links; an existing name is left alone.
func Symlinks(m Mounter, links []Link) error {
	for _, l := range links {
		if err := m.Symlink(l.Target, l.Name); err != nil && !errors.Is(err, fs.ErrExist) {
			return &Error{"symlink", l.Name + " -> " + l.Target, err}
		}
	}
	return nil
}

// SwitchRoot makes dir the root: bind-mount dir on itself, chdir into it,
// move it over "/" and chroot there. This is the move-mount form the
// reference init uses (pivot_root does not work from an initramfs, and the
// move keeps user namespaces working inside the enclave). The old root stays
// mounted underneath and unreachable.
func SwitchRoot(m Mounter, dir string) error {
	steps := []struct {
		what string
		do   func() error
	}{
		{"bind " + dir, func() error { return m.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, "") }},
		{"chdir " + dir, func() error { return m.Chdir(dir) }},
		{"move " + dir + " to /", func() error { return m.Mount(".", "/", "", unix.MS_MOVE, "") }},
		{"chroot " + dir, func() error { return m.Chroot(".") }},
		{"chdir /", func() error { return m.Chdir("/") }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return &Error{"switch root", s.what, err}
		}
	}
	return nil
}

// Sys is the real Mounter.
type Sys struct{}

// Mount implements Mounter.
func (Sys) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}

// Unmount implements Mounter.
func (Sys) Unmount(target string, flags int) error { return unix.Unmount(target, flags) }

// MkdirAll implements Mounter.
func (Sys) MkdirAll(path string, perm fs.FileMode) error { return mkdirAll(path, perm) }

// Symlink implements Mounter.
func (Sys) Symlink(oldname, newname string) error { return unix.Symlink(oldname, newname) }

// Chdir implements Mounter.
func (Sys) Chdir(dir string) error { return unix.Chdir(dir) }

// Chroot implements Mounter.
func (Sys) Chroot(dir string) error { return unix.Chroot(dir) }

func mkdirAll(path string, perm fs.FileMode) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err == nil {
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("%s: %w", path, unix.ENOTDIR)
		}
		return nil
	}
	if i := strings.LastIndexByte(path, '/'); i > 0 {
		if err := mkdirAll(path[:i], perm); err != nil {
			return err
		}
	}
	err := unix.Mkdir(path, uint32(perm.Perm()))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}
