package vhostuser

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qtenclave/enclave/parent/virtq"
)

// Device is what the virtqueues carry. The back-end calls its methods from
// the control connection's goroutine and from one goroutine per running
// ring (Kick); the device serialises them itself.
type Device interface {
	// Features are the virtio feature bits offered to the driver.
	Features() uint64
	// NumQueues is the number of queues the back-end handles.
	NumQueues() int
	// Config is the device configuration space.
	Config() []byte
	// StartQueue hands a running queue to the device; notify signals the
	// driver that used buffers are available.
	StartQueue(idx int, q *virtq.Queue, notify func())
	// StopQueue takes the queue back: when it returns the device no longer
	// touches it.
	StopQueue(idx int)
	// Kick tells the device that the driver made buffers available.
	Kick(idx int)
	// Reset drops all device state that depends on the driver (connections);
	// called on RESET_DEVICE, RESET_OWNER and when the front-end disconnects.
	Reset()
}

// Backend serves the vhost-user protocol for one Device.
type Backend struct {
	Device Device
	// Logf, if set, receives diagnostics.
	Logf func(format string, args ...any)
	// PollInterval is how often a ring without a kick descriptor is polled
	// (default 10 ms).
	PollInterval time.Duration
}

func (b *Backend) logf(format string, args ...any) {
	if b.Logf != nil {
		b.Logf(format, args...)
	}
}

// Serve accepts front-end connections on l, one at a time, until ctx is done
// or l is closed. It returns nil after ctx is cancelled.
func (b *Backend) Serve(ctx context.Context, l *net.UnixListener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("vhost-user accept: %w", err)
		}
		cstop := context.AfterFunc(ctx, func() { c.Close() })
		err = b.ServeConn(c)
		cstop()
		if err != nil && ctx.Err() == nil {
			b.logf("vhost-user: %v", err)
		}
	}
}

// ServeConn serves one front-end connection until it is closed (nil error)
// or breaks the protocol. It closes c.
func (b *Backend) ServeConn(c *net.UnixConn) error {
	s := &session{b: b, conn: c}
	for i := 0; i < b.Device.NumQueues(); i++ {
		s.rings = append(s.rings, &ring{idx: i})
	}
	defer s.close()
	for {
		h, p, fds, err := s.read()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if err := s.handle(h, p, fds); err != nil {
			return fmt.Errorf("request %d: %w", h.Request, err)
		}
	}
}

type session struct {
	b         *Backend
	conn      *net.UnixConn
	features  uint64
	protocol  uint64
	mem       *virtq.Memory
	mappings  [][]byte
	rings     []*ring
	writeMu   sync.Mutex
	closeOnce sync.Once
}

type ring struct {
	idx     int
	num     uint16
	base    uint16
	addr    vringAddr
	addrSet bool
	kick    *os.File
	poll    bool // started without a kick descriptor
	enabled bool

	callMu sync.Mutex
	call   *os.File
	errFD  *os.File

	q       *virtq.Queue
	running bool
	stop    chan struct{}
	done    chan struct{}
}

func (s *session) read() (header, []byte, []int, error) {
	hb := make([]byte, headerSize)
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	n, oobn, _, _, err := s.conn.ReadMsgUnix(hb, oob)
	if err != nil {
		return header{}, nil, nil, err
	}
	if n == 0 {
		return header{}, nil, nil, io.EOF
	}
	fds, ferr := parseFDs(oob[:oobn])
	fail := func(err error) (header, []byte, []int, error) {
		closeFDs(fds)
		return header{}, nil, nil, err
	}
	if ferr != nil {
		return fail(ferr)
	}
	if n < headerSize {
		if _, err := io.ReadFull(s.conn, hb[n:]); err != nil {
			return fail(fmt.Errorf("short header: %w", err))
		}
	}
	h, err := parseHeader(hb)
	if err != nil {
		return fail(err)
	}
	p := make([]byte, h.Size)
	if _, err := io.ReadFull(s.conn, p); err != nil {
		return fail(fmt.Errorf("request %d: payload: %w", h.Request, err))
	}
	return h, p, fds, nil
}

func parseFDs(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		f, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		fds = append(fds, f...)
	}
	return fds, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func (s *session) reply(h header, payload []byte) error {
	r := header{Request: h.Request, Flags: flagVersion | flagReply, Size: uint32(len(payload))}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_, err := s.conn.Write(append(r.marshal(), payload...))
	return err
}

// hasReply lists requests whose reply is part of the protocol.
func hasReply(req uint32) bool {
	switch req {
	case reqGetFeatures, reqGetProtocolFeatures, reqGetVringBase, reqGetQueueNum,
		reqGetConfig, reqGetMaxMemSlots, reqGetStatus:
		return true
	}
	return false
}

// handle processes one message. A returned error ends the session; errors
// the front-end can be told about are acknowledged with a non-zero status
// when it asked for a reply.
func (s *session) handle(h header, p []byte, fds []int) error {
	res, err := s.dispatch(h, p, &fds)
	closeFDs(fds) // whatever the handler did not take
	var status uint64
	if errors.Is(err, errRefused) {
		s.b.logf("vhost-user: %v", err)
		res, status, err = nil, 1, nil
	}
	if err != nil {
		return err
	}
	if hasReply(h.Request) {
		return s.reply(h, res)
	}
	if h.Flags&flagNeedReply != 0 {
		return s.reply(h, putU64(status))
	}
	return nil
}

// errRefused is a request the back-end refuses without ending the session:
// the front-end gets a non-zero status when it asked for a reply.
var errRefused = errors.New("request refused")

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errRefused, fmt.Sprintf(format, args...))
}

// dispatch returns the reply payload for requests with a reply, nil for
// success of others; an error wrapping errRefused is a soft failure, any
// other error ends the session. A handler that keeps a descriptor removes
// it from *fds.
func (s *session) dispatch(h header, p []byte, fds *[]int) ([]byte, error) {
	dev := s.b.Device
	switch h.Request {
	case reqGetFeatures:
		return putU64(dev.Features() | FeatureProtocolFeatures), nil
	case reqSetFeatures:
		v, err := u64(p)
		if err != nil {
			return nil, err
		}
		s.features = v & (dev.Features() | FeatureProtocolFeatures)
		if v != s.features {
			s.b.logf("vhost-user: front-end set unoffered features %#x", v&^s.features)
		}
		return nil, nil
	case reqGetProtocolFeatures:
		return putU64(supportedProtocol), nil
	case reqSetProtocolFeatures:
		v, err := u64(p)
		if err != nil {
			return nil, err
		}
		s.protocol = v & supportedProtocol
		return nil, nil
	case reqSetOwner:
		return nil, nil
	case reqResetOwner, reqResetDevice:
		s.stopAll(false)
		for _, r := range s.rings {
			r.enabled, r.addrSet, r.base = false, false, 0
		}
		dev.Reset()
		return nil, nil
	case reqGetQueueNum:
		return putU64(uint64(dev.NumQueues())), nil
	case reqGetMaxMemSlots:
		return putU64(maxRegions), nil
	case reqGetConfig:
		c, err := parseConfig(p)
		if err != nil {
			return nil, err
		}
		cfg := dev.Config()
		if uint64(c.Offset)+uint64(c.Size) > uint64(len(cfg)) || len(p) != configHdrSize+int(c.Size) {
			return []byte{}, nil // zero-length payload: error
		}
		out := append([]byte(nil), p[:configHdrSize]...)
		return append(out, cfg[c.Offset:c.Offset+c.Size]...), nil
	case reqSetConfig:
		return nil, refused("SET_CONFIG: the configuration space is read-only")
	case reqSetMemTable:
		return s.setMemTable(p, fds)
	case reqSetLogBase, reqSetLogFD, reqSetBackendReqFD, reqAddMemReg, reqRemMemReg, reqSetStatus:
		// Not offered; descriptors are closed by handle.
		if h.Request == reqSetBackendReqFD {
			s.b.logf("vhost-user: ignoring request %d", h.Request)
			return nil, nil
		}
		return nil, refused("request %d not offered", h.Request)
	case reqGetStatus:
		return putU64(0), nil
	}

	// Ring requests.
	var idx uint32
	switch h.Request {
	case reqSetVringKick, reqSetVringCall, reqSetVringErr:
		v, err := u64(p)
		if err != nil {
			return nil, err
		}
		idx = uint32(v & vringIndexMask)
		if int(idx) >= len(s.rings) {
			return nil, fmt.Errorf("ring %d of %d", idx, len(s.rings))
		}
		r := s.rings[idx]
		var f *os.File
		if v&vringNoFD == 0 {
			if len(*fds) != 1 {
				return nil, fmt.Errorf("ring %d: %d descriptors, want 1", idx, len(*fds))
			}
			fd := (*fds)[0]
			*fds = nil
			unix.SetNonblock(fd, true)
			f = os.NewFile(uintptr(fd), fmt.Sprintf("vring%d-%d", idx, h.Request))
		}
		switch h.Request {
		case reqSetVringKick:
			s.stopRing(r, false)
			if r.kick != nil {
				r.kick.Close()
			}
			r.kick, r.poll = f, f == nil
			s.update(r)
		case reqSetVringCall:
			r.callMu.Lock()
			old := r.call
			r.call = f
			r.callMu.Unlock()
			if old != nil {
				old.Close()
			}
		case reqSetVringErr:
			if r.errFD != nil {
				r.errFD.Close()
			}
			r.errFD = f
		}
		return nil, nil
	case reqSetVringAddr:
		a, err := parseAddr(p)
		if err != nil {
			return nil, err
		}
		if int(a.Index) >= len(s.rings) {
			return nil, fmt.Errorf("ring %d of %d", a.Index, len(s.rings))
		}
		r := s.rings[a.Index]
		running := r.running
		s.stopRing(r, false)
		r.addr, r.addrSet = a, true
		if running {
			s.update(r)
		}
		return nil, nil
	}

	switch h.Request {
	case reqSetVringNum, reqSetVringBase, reqGetVringBase, reqSetVringEnable:
	default:
		return nil, refused("unknown request %d", h.Request)
	}
	st, err := parseState(p)
	if err != nil {
		return nil, err
	}
	if int(st.Index) >= len(s.rings) {
		return nil, fmt.Errorf("ring %d of %d", st.Index, len(s.rings))
	}
	switch h.Request {
	case reqSetVringNum:
		r := s.rings[st.Index]
		if st.Num == 0 || st.Num&(st.Num-1) != 0 || st.Num > virtq.MaxSize {
			return nil, refused("ring %d: size %d is not a power of two up to %d", st.Index, st.Num, virtq.MaxSize)
		}
		s.stopRing(r, false)
		r.num = uint16(st.Num)
		return nil, nil
	case reqSetVringBase:
		r := s.rings[st.Index]
		s.stopRing(r, false)
		r.base = uint16(st.Num)
		return nil, nil
	case reqGetVringBase:
		r := s.rings[st.Index]
		s.stopRing(r, true)
		// The ring stays stopped until a new kick descriptor arrives.
		if r.kick != nil {
			r.kick.Close()
			r.kick = nil
		}
		r.poll = false
		return vringState{Index: st.Index, Num: uint32(r.base)}.marshal(), nil
	case reqSetVringEnable:
		r := s.rings[st.Index]
		if st.Num == 0 {
			s.stopRing(r, true)
		}
		r.enabled = st.Num != 0
		s.update(r)
		return nil, nil
	}
	return nil, refused("request %d", h.Request)
}

func (s *session) setMemTable(p []byte, fds *[]int) ([]byte, error) {
	regions, err := parseMemTable(p)
	if err != nil {
		return nil, err
	}
	if len(*fds) != len(regions) {
		return nil, fmt.Errorf("memory table: %d regions, %d descriptors", len(regions), len(*fds))
	}
	page := uint64(unix.Getpagesize())
	var vr []virtq.Region
	var maps [][]byte
	for i, r := range regions {
		fd := (*fds)[i]
		start := r.MmapOffset &^ (page - 1)
		lead := r.MmapOffset - start
		size := lead + r.Size
		if size < r.Size || size > 1<<46 || int64(start) < 0 {
			unmapAll(maps)
			return nil, fmt.Errorf("memory region %d: size %#x offset %#x", i, r.Size, r.MmapOffset)
		}
		m, err := unix.Mmap(fd, int64(start), int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			unmapAll(maps)
			return nil, fmt.Errorf("mmap memory region %d (%#x bytes): %w", i, r.Size, err)
		}
		maps = append(maps, m)
		vr = append(vr, virtq.Region{GuestAddr: r.GuestAddr, UserAddr: r.UserAddr, Data: m[lead:]})
	}
	mem, err := virtq.NewMemory(vr...)
	if err != nil {
		unmapAll(maps)
		return nil, fmt.Errorf("memory table: %w", err)
	}
	// Running rings point into the old mappings: stop them, swap, restart.
	var restart []*ring
	for _, r := range s.rings {
		if r.running {
			s.stopRing(r, false)
			restart = append(restart, r)
		}
	}
	unmapAll(s.mappings)
	s.mem, s.mappings = mem, maps
	for _, r := range restart {
		s.update(r)
	}
	return nil, nil
}

func unmapAll(maps [][]byte) {
	for _, m := range maps {
		unix.Munmap(m)
	}
}

// update starts or stops r according to its state.
func (s *session) update(r *ring) {
	protocol := s.features&FeatureProtocolFeatures != 0
	want := s.mem != nil && r.addrSet && r.num > 0 && (r.kick != nil || r.poll) && (r.enabled || !protocol)
	if want && !r.running {
		s.startRing(r)
	} else if !want && r.running {
		s.stopRing(r, false)
	}
}

func (s *session) startRing(r *ring) {
	n := r.num
	desc, err := s.mem.User(r.addr.Desc, virtq.DescSize(n))
	if err == nil {
		var avail, used []byte
		if avail, err = s.mem.User(r.addr.Avail, virtq.AvailSize(n)); err == nil {
			if used, err = s.mem.User(r.addr.Used, virtq.UsedSize(n)); err == nil {
				r.q, err = virtq.New(s.mem, n, desc, avail, used, r.base)
			}
		}
	}
	if err != nil {
		s.b.logf("vhost-user: ring %d not started: %v", r.idx, err)
		s.signalErr(r)
		return
	}
	r.running = true
	r.stop, r.done = make(chan struct{}), make(chan struct{})
	s.b.Device.StartQueue(r.idx, r.q, func() { s.notify(r) })
	go s.kickLoop(r, r.kick, r.stop, r.done)
}

// stopRing stops r. With drain, the device first takes whatever the
// front-end made available and did not get to kick: when the front-end
// stops a ring (QEMU disables and then stops every ring as the guest
// reboots) or goes away, a guest's last words sent just before it powers
// off (init's exit status) are not lost.
func (s *session) stopRing(r *ring, drain bool) {
	if !r.running {
		return
	}
	close(r.stop)
	if r.kick != nil {
		r.kick.SetReadDeadline(time.Unix(1, 0))
	}
	<-r.done
	if r.kick != nil {
		r.kick.SetReadDeadline(time.Time{})
	}
	if drain && s.mem != nil {
		s.b.Device.Kick(r.idx)
	}
	s.b.Device.StopQueue(r.idx)
	r.base = r.q.LastAvail()
	r.q, r.running = nil, false
}

func (s *session) stopAll(drain bool) {
	for _, r := range s.rings {
		s.stopRing(r, drain)
	}
}

func (s *session) kickLoop(r *ring, kick *os.File, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	dev := s.b.Device
	dev.Kick(r.idx) // buffers made available before the ring started
	if kick == nil {
		iv := s.b.PollInterval
		if iv <= 0 {
			iv = 10 * time.Millisecond
		}
		t := time.NewTicker(iv)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				dev.Kick(r.idx)
			}
		}
	}
	buf := make([]byte, 8)
	for {
		_, err := kick.Read(buf)
		select {
		case <-stop:
			return
		default:
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			s.b.logf("vhost-user: ring %d kick: %v", r.idx, err)
			<-stop
			return
		}
		dev.Kick(r.idx)
	}
}

func (s *session) notify(r *ring) {
	r.callMu.Lock()
	defer r.callMu.Unlock()
	if r.call != nil {
		var b [8]byte
		binary.NativeEndian.PutUint64(b[:], 1)
		r.call.Write(b[:])
	}
}

func (s *session) signalErr(r *ring) {
	if r.errFD != nil {
		var b [8]byte
		binary.NativeEndian.PutUint64(b[:], 1)
		r.errFD.Write(b[:])
	}
}

func (s *session) close() {
	s.closeOnce.Do(func() {
		s.stopAll(true) // the guest's memory is still mapped
		s.b.Device.Reset()
		for _, r := range s.rings {
			for _, f := range []*os.File{r.kick, r.call, r.errFD} {
				if f != nil {
					f.Close()
				}
			}
		}
		unmapAll(s.mappings)
		s.mem, s.mappings = nil, nil
		s.conn.Close()
	})
}
