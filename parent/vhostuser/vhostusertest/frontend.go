// Package vhostusertest plays QEMU's part of the vhost-user protocol (the
// front-end) so back-ends and devices can be tested without a VM: it shares
// memfd-backed guest memory, sets up virtqueues driven by virtqtest drivers
// and kicks/receives calls through real eventfds.
package vhostusertest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qtenclave/enclave/parent/virtq/virtqtest"
)

// Request numbers (from QEMU's docs/interop/vhost-user.rst).
const (
	GetFeatures         = 1
	SetFeatures         = 2
	SetOwner            = 3
	SetMemTable         = 5
	SetVringNum         = 8
	SetVringAddr        = 9
	SetVringBase        = 10
	GetVringBase        = 11
	SetVringKick        = 12
	SetVringCall        = 13
	GetProtocolFeatures = 15
	SetProtocolFeatures = 16
	GetQueueNum         = 17
	SetVringEnable      = 18
	GetConfig           = 24

	FlagVersion   = 1
	FlagReply     = 4
	FlagNeedReply = 8
)

// FrontEnd is one front-end connection with shared guest memory.
type FrontEnd struct {
	Conn  *net.UnixConn
	Guest *virtqtest.Guest
	memfd int
}

// New shares size bytes of memfd memory as guest memory over conn.
func New(conn *net.UnixConn, size int) (*FrontEnd, error) {
	fd, err := unix.MemfdCreate("vhostusertest", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, err
	}
	m, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &FrontEnd{Conn: conn, memfd: fd, Guest: &virtqtest.Guest{Mem: m, GuestBase: 0x100000, UserBase: 0x7f0000000000}}, nil
}

// Close closes the connection and the memory.
func (f *FrontEnd) Close() error {
	err := f.Conn.Close()
	unix.Munmap(f.Guest.Mem)
	unix.Close(f.memfd)
	return err
}

// Send writes one message with optional descriptors.
func (f *FrontEnd) Send(req, flags uint32, payload []byte, fds ...int) error {
	b := binary.NativeEndian.AppendUint32(nil, req)
	b = binary.NativeEndian.AppendUint32(b, flags|FlagVersion)
	b = binary.NativeEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err := f.Conn.WriteMsgUnix(b, oob, nil)
	return err
}

// Recv reads one reply for req and returns its payload.
func (f *FrontEnd) Recv(req uint32) ([]byte, error) {
	f.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer f.Conn.SetReadDeadline(time.Time{})
	h := make([]byte, 12)
	if _, err := io.ReadFull(f.Conn, h); err != nil {
		return nil, fmt.Errorf("reply to %d: %w", req, err)
	}
	r, fl, n := binary.NativeEndian.Uint32(h), binary.NativeEndian.Uint32(h[4:]), binary.NativeEndian.Uint32(h[8:])
	p := make([]byte, n)
	if _, err := io.ReadFull(f.Conn, p); err != nil {
		return nil, fmt.Errorf("reply to %d: %w", req, err)
	}
	if r != req || fl != FlagVersion|FlagReply {
		return p, fmt.Errorf("reply header request %d flags %#x, want %d %#x", r, fl, req, FlagVersion|FlagReply)
	}
	return p, nil
}

// Call sends a request and reads its reply.
func (f *FrontEnd) Call(req, flags uint32, payload []byte, fds ...int) ([]byte, error) {
	if err := f.Send(req, flags, payload, fds...); err != nil {
		return nil, err
	}
	return f.Recv(req)
}

// CallU64 sends a request and decodes a u64 reply.
func (f *FrontEnd) CallU64(req, flags uint32, payload []byte, fds ...int) (uint64, error) {
	p, err := f.Call(req, flags, payload, fds...)
	if err != nil {
		return 0, err
	}
	if len(p) != 8 {
		return 0, fmt.Errorf("reply to %d: %d bytes, want 8", req, len(p))
	}
	return binary.NativeEndian.Uint64(p), nil
}

// Ack sends a request with need-reply and requires a zero status.
func (f *FrontEnd) Ack(req uint32, payload []byte, fds ...int) error {
	v, err := f.CallU64(req, FlagNeedReply, payload, fds...)
	if err != nil {
		return err
	}
	if v != 0 {
		return fmt.Errorf("request %d: status %d", req, v)
	}
	return nil
}

// U64 encodes a u64 payload.
func U64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }

// State encodes a vring state payload.
func State(idx, num uint32) []byte {
	return binary.NativeEndian.AppendUint32(binary.NativeEndian.AppendUint32(nil, idx), num)
}

// MemTable is the SET_MEM_TABLE payload describing the whole guest memory
// as one region (pass the memfd with it, see MemFD).
func (f *FrontEnd) MemTable() []byte {
	e := binary.NativeEndian
	b := e.AppendUint32(nil, 1)
	b = e.AppendUint32(b, 0)
	b = e.AppendUint64(b, f.Guest.GuestBase)
	b = e.AppendUint64(b, uint64(len(f.Guest.Mem)))
	b = e.AppendUint64(b, f.Guest.UserBase)
	return e.AppendUint64(b, 0)
}

// MemFD is the descriptor of the guest memory.
func (f *FrontEnd) MemFD() int { return f.memfd }

// Queue is one virtqueue set up through the front-end.
type Queue struct {
	Index  int
	Driver *virtqtest.Driver
	Kick   *os.File // write to notify the device
	Call   *os.File // readable when the device used buffers
}

// KickNow notifies the device.
func (q *Queue) KickNow() error {
	_, err := q.Kick.Write(U64(1))
	return err
}

// WaitCall waits up to d for a call notification.
func (q *Queue) WaitCall(d time.Duration) error {
	q.Call.SetReadDeadline(time.Now().Add(d))
	b := make([]byte, 8)
	_, err := q.Call.Read(b)
	return err
}

func eventfd() (*os.File, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "eventfd"), nil
}

// Setup runs the handshake QEMU does for a vhost-user device with n queues
// of the given size: features (acking want & offered), protocol features,
// owner, memory table, then each ring's size, base, addresses, kick, call
// and enable. It returns the negotiated features.
func (f *FrontEnd) Setup(n int, size uint16, want uint64) (uint64, []*Queue, error) {
	feat, err := f.CallU64(GetFeatures, 0, nil)
	if err != nil {
		return 0, nil, err
	}
	if feat&(1<<30) == 0 {
		return 0, nil, errors.New("back-end lacks VHOST_USER_F_PROTOCOL_FEATURES")
	}
	proto, err := f.CallU64(GetProtocolFeatures, 0, nil)
	if err != nil {
		return 0, nil, err
	}
	if err := f.Send(SetProtocolFeatures, 0, U64(proto&(1<<3|1<<9|1))); err != nil {
		return 0, nil, err
	}
	if err := f.Ack(SetOwner, nil); err != nil {
		return 0, nil, err
	}
	acked := feat & (want | 1<<30)
	if err := f.Ack(SetFeatures, U64(acked)); err != nil {
		return 0, nil, err
	}
	if err := f.Ack(SetMemTable, f.MemTable(), f.memfd); err != nil {
		return 0, nil, err
	}
	var qs []*Queue
	for i := 0; i < n; i++ {
		d := virtqtest.NewDriver(f.Guest, size)
		q := &Queue{Index: i, Driver: d}
		if q.Kick, err = eventfd(); err != nil {
			return 0, nil, err
		}
		if q.Call, err = eventfd(); err != nil {
			return 0, nil, err
		}
		g := f.Guest
		addr := binary.NativeEndian.AppendUint32(nil, uint32(i))
		addr = binary.NativeEndian.AppendUint32(addr, 0)
		addr = binary.NativeEndian.AppendUint64(addr, g.UserAddr(d.DescAddr))
		addr = binary.NativeEndian.AppendUint64(addr, g.UserAddr(d.UsedAddr))
		addr = binary.NativeEndian.AppendUint64(addr, g.UserAddr(d.AvailAddr))
		addr = binary.NativeEndian.AppendUint64(addr, 0)
		steps := []struct {
			req uint32
			p   []byte
			fd  []int
		}{
			{SetVringNum, State(uint32(i), uint32(size)), nil},
			{SetVringBase, State(uint32(i), 0), nil},
			{SetVringAddr, addr, nil},
			{SetVringKick, U64(uint64(i)), []int{int(q.Kick.Fd())}},
			{SetVringCall, U64(uint64(i)), []int{int(q.Call.Fd())}},
			{SetVringEnable, State(uint32(i), 1), nil},
		}
		for _, s := range steps {
			if err := f.Ack(s.req, s.p, s.fd...); err != nil {
				return 0, nil, err
			}
		}
		qs = append(qs, q)
	}
	return acked, qs, nil
}

// Pair returns two connected unix stream sockets.
func Pair() (*net.UnixConn, *net.UnixConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	conns := make([]*net.UnixConn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, nil, err
		}
		conns[i] = c.(*net.UnixConn)
	}
	return conns[0], conns[1], nil
}
