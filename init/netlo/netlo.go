// Package netlo brings up the loopback interface: lo up with 127.0.0.1/8 and
// ::1/128, using ioctls (no netlink, no package net).
//
// Linux gives lo both addresses itself when it comes up, so Up sets the flag
// and then checks each address; only an address
// that is missing is set explicitly.
//
// Enclave kernels may be built without IPv4 or IPv6 (vsock needs neither);
// a missing address family is reported in Result, not as an error.
package netlo

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Result says what was configured.
type Result struct {
	IPv4 bool // 127.0.0.1/8 set
	IPv6 bool // ::1/128 present
}

func (r Result) String() string {
	switch {
	case r.IPv4 && r.IPv6:
		return "lo up 127.0.0.1/8 ::1/128"
	case r.IPv4:
		return "lo up 127.0.0.1/8 (no IPv6 in kernel)"
	case r.IPv6:
		return "lo up ::1/128 (no IPv4 in kernel)"
	}
	return "no IPv4 or IPv6 in kernel: loopback not configured"
}

const name = "lo"

// Up configures lo. It is idempotent.
func Up() (Result, error) {
	var r Result
	fd4, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	switch {
	case err == nil:
		defer unix.Close(fd4)
	case errors.Is(err, unix.EAFNOSUPPORT):
		fd4 = -1
	default:
		return r, fmt.Errorf("socket AF_INET: %w", err)
	}
	fd6, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	switch {
	case err == nil:
		defer unix.Close(fd6)
	case errors.Is(err, unix.EAFNOSUPPORT):
		fd6 = -1
	default:
		return r, fmt.Errorf("socket AF_INET6: %w", err)
	}
	ctl := fd4
	if ctl < 0 {
		ctl = fd6
	}
	if ctl < 0 {
		return r, nil
	}
	if err := setUp(ctl); err != nil {
		return r, err
	}
	if fd4 >= 0 {
		if !has4(fd4) {
			if err := setInet4(fd4); err != nil {
				return r, err
			}
		}
		r.IPv4 = true
	}
	if fd6 >= 0 {
		if !has6() {
			if err := addInet6(fd6); err != nil {
				return r, err
			}
		}
		r.IPv6 = true
	}
	return r, nil
}

// has4 reports whether lo has an IPv4 address (binding is no test: Linux
// lets a socket bind 127.0.0.1 even on a down lo without one).
func has4(fd int) bool {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return false
	}
	return unix.IoctlIfreq(fd, unix.SIOCGIFADDR, ifr) == nil
}

// has6 reports whether lo has ::1: a socket can be bound to it.
func has6() bool {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.Bind(fd, &unix.SockaddrInet6{Addr: [16]byte{15: 1}}) == nil
}

func setInet4(fd int) error {
	for _, a := range []struct {
		req  uint
		addr []byte
		what string
	}{
		{unix.SIOCSIFADDR, []byte{127, 0, 0, 1}, "address 127.0.0.1"},
		{unix.SIOCSIFNETMASK, []byte{255, 0, 0, 0}, "netmask 255.0.0.0"},
	} {
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		if err := ifr.SetInet4Addr(a.addr); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, a.req, ifr); err != nil {
			return fmt.Errorf("set lo %s: %w", a.what, err)
		}
	}
	return nil
}

func setUp(fd int) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// in6Ifreq is struct in6_ifreq.
type in6Ifreq struct {
	Addr      [16]byte
	Prefixlen uint32
	Ifindex   int32
}

func addInet6(fd int) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return fmt.Errorf("get lo index: %w", err)
	}
	req := in6Ifreq{Prefixlen: 128, Ifindex: int32(ifr.Uint32())}
	req.Addr[15] = 1
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCSIFADDR, uintptr(unsafe.Pointer(&req)))
	if errno != 0 && errno != unix.EEXIST {
		return fmt.Errorf("add ::1 to lo: %w", errno)
	}
	return nil
}
