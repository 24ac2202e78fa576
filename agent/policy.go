package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Peer is the process at the other end of a connection, as the kernel saw it
// when it connected (SO_PEERCRED and SO_PEERGROUPS).
type Peer struct {
	// Known is false when the connection is not a Unix socket or the
	// kernel would not tell; such peers get read-only access.
	Known    bool
	PID      int32
	UID, GID uint32
	// Groups are the peer's supplementary groups at connect time.
	Groups []uint32
}

func (p Peer) String() string {
	if !p.Known {
		return "unknown peer"
	}
	return fmt.Sprintf("pid %d uid %d gid %d", p.PID, p.UID, p.GID)
}

type peerKey struct{}

// WithPeer returns ctx carrying p; http.Server.ConnContext uses it.
func WithPeer(ctx context.Context, p Peer) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

// PeerFrom returns the peer stored in ctx (zero Peer if none).
func PeerFrom(ctx context.Context) Peer {
	p, _ := ctx.Value(peerKey{}).(Peer)
	return p
}

// PeerOf reads the credentials of c's peer. c must be a Unix socket.
func PeerOf(c net.Conn) (Peer, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Peer{}, fmt.Errorf("peer credentials: %T is not a socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", err)
	}
	var (
		cred   *unix.Ucred
		groups []uint32
		cerr   error
		gerr   error
	)
	err = raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if cerr == nil {
			groups, gerr = peerGroups(int(fd))
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return Peer{}, fmt.Errorf("peer credentials: SO_PEERCRED: %w", err)
	}
	p := Peer{Known: true, PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}
	if gerr == nil {
		p.Groups = groups
	}
	return p, nil
}

// peerGroups reads SO_PEERGROUPS (Linux 4.13+): the peer's supplementary
// groups at connect time, free of the PID-reuse race of /proc/PID/status.
func peerGroups(fd int) ([]uint32, error) {
	n := 64
	for range 4 {
		buf := make([]uint32, n)
		size := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno == unix.ERANGE {
			n = int(size/4) + 1
			continue
		}
		if errno != 0 {
			return nil, errno
		}
		return buf[:size/4], nil
	}
	return nil, errors.New("SO_PEERGROUPS: group list keeps growing")
}

// Policy decides who may do what. Read-only operations (describe, reading
// PCRs, attestation, random, health) are open to every peer that can
// connect; extending and locking PCRs needs uid 0 or membership (primary or
// supplementary) of one of Groups.
type Policy struct {
	Groups []uint32
}

// MayModify reports whether p may extend and lock PCRs.
func (pol Policy) MayModify(p Peer) bool {
	if !p.Known {
		return false
	}
	if p.UID == 0 {
		return true
	}
	for _, g := range pol.Groups {
		if p.GID == g || slices.Contains(p.Groups, g) {
			return true
		}
	}
	return false
}
