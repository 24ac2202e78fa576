package vsockdev

import (
	"context"
	"encoding/binary"
	"fmt"
	"github.com/qtenclave/enclave/proto/vsockports"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/qtenclave/enclave/parent/virtq"
)

// Well-known CIDs.
const (
	CIDHost   = 2
	CIDParent = vsockports.ParentCID
)

// Queue indexes handled by the device.
const (
	QueueRX = 0 // device to guest
	QueueTX = 1 // guest to device
)

// FeatureVersion1 is VIRTIO_F_VERSION_1, the only feature offered.
const FeatureVersion1 = 1 << 32

// Defaults.
const (
	DefaultBufAlloc     = 256 * 1024
	DefaultCloseTimeout = 8 * time.Second
	sendBufMax          = 64 * 1024 // per-connection bytes queued by Write
	maxControl          = 1024      // standalone RST packets queued
	backlog             = 32
	firstEphemeral      = 49152
)

// Config configures a Device.
type Config struct {
	GuestCID  uint32   // the guest's CID (>= 3), reported in the config space
	ParentCID uint32   // source CID of host-initiated connections (default 3)
	HostCIDs  []uint32 // CIDs the guest may connect to (default 2 and 3)
	BufAlloc  uint32   // receive buffer per connection (default 256 KiB)
	// CloseTimeout bounds how long a closed connection waits for the guest's
	// RST (default 8 s).
	CloseTimeout time.Duration
	Logf         func(format string, args ...any)
}

// Device is a virtio-vsock device. It implements vhostuser.Device.
type Device struct {
	cfg Config

	mu        sync.Mutex
	rx, tx    *virtq.Queue
	rxNotify  func()
	txNotify  func()
	conns     map[connKey]*Conn
	listeners map[uint32]*Listener
	ctl       []Header
	dirty     []*Conn
	nextPort  uint32
	closed    bool
	brokenLog map[int]bool
}

type connKey struct{ hostCID, hostPort, guestPort uint32 }

// New makes a device.
func New(cfg Config) (*Device, error) {
	if cfg.GuestCID < 3 || cfg.GuestCID == ^uint32(0) {
		return nil, fmt.Errorf("vsock: guest CID %d: want 3..%d", cfg.GuestCID, ^uint32(0)-1)
	}
	if cfg.ParentCID == 0 {
		cfg.ParentCID = CIDParent
	}
	if len(cfg.HostCIDs) == 0 {
		cfg.HostCIDs = []uint32{CIDHost, CIDParent}
	}
	for _, c := range cfg.HostCIDs {
		if c == cfg.GuestCID {
			return nil, fmt.Errorf("vsock: host CID %d equals the guest CID", c)
		}
	}
	if cfg.BufAlloc == 0 {
		cfg.BufAlloc = DefaultBufAlloc
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = DefaultCloseTimeout
	}
	return &Device{
		cfg:       cfg,
		conns:     map[connKey]*Conn{},
		listeners: map[uint32]*Listener{},
		nextPort:  firstEphemeral,
		brokenLog: map[int]bool{},
	}, nil
}

func (d *Device) logf(format string, args ...any) {
	if d.cfg.Logf != nil {
		d.cfg.Logf(format, args...)
	}
}

// GuestCID is the guest's CID.
func (d *Device) GuestCID() uint32 { return d.cfg.GuestCID }

// Features implements vhostuser.Device.
func (d *Device) Features() uint64 { return FeatureVersion1 }

// NumQueues implements vhostuser.Device: rx and tx (the event queue is QEMU's).
func (d *Device) NumQueues() int { return 2 }

// Config implements vhostuser.Device: struct virtio_vsock_config { le64 guest_cid }.
func (d *Device) Config() []byte {
	return binary.LittleEndian.AppendUint64(nil, uint64(d.cfg.GuestCID))
}

// StartQueue implements vhostuser.Device.
func (d *Device) StartQueue(idx int, q *virtq.Queue, notify func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch idx {
	case QueueRX:
		d.rx, d.rxNotify = q, notify
	case QueueTX:
		d.tx, d.txNotify = q, notify
	}
	delete(d.brokenLog, idx)
}

// StopQueue implements vhostuser.Device.
func (d *Device) StopQueue(idx int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch idx {
	case QueueRX:
		d.rx, d.rxNotify = nil, nil
	case QueueTX:
		d.tx, d.txNotify = nil, nil
	}
}

// Kick implements vhostuser.Device.
func (d *Device) Kick(idx int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if idx == QueueTX {
		d.processTX()
	}
	d.flush()
}

// Reset implements vhostuser.Device: every connection is reset (the guest
// is gone or starting over); listeners stay.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resetAll()
}

func (d *Device) resetAll() {
	for _, c := range d.conns {
		c.reset = true
		d.remove(c)
		c.broadcast()
	}
	d.ctl, d.dirty = nil, nil
}

// Close resets all connections, closes all listeners and refuses new ones.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return net.ErrClosed
	}
	d.closed = true
	d.resetAll()
	for _, l := range d.listeners {
		l.closeLocked()
	}
	return nil
}

func (d *Device) isHostCID(cid uint64) bool {
	for _, c := range d.cfg.HostCIDs {
		if uint64(c) == cid {
			return true
		}
	}
	return false
}

// processTX consumes every packet the guest sent.
func (d *Device) processTX() {
	q := d.tx
	if q == nil {
		return
	}
	used := false
	for {
		c, err := q.Next()
		if c == nil {
			if err != nil && !d.brokenLog[QueueTX] {
				d.brokenLog[QueueTX] = true
				d.logf("vsock: tx queue: %v", err)
			}
			break
		}
		used = true
		if err != nil {
			d.logf("vsock: tx: %v", err)
			q.Push(c.Head, 0)
			continue
		}
		h, payload, err := ParsePacket(c)
		q.Push(c.Head, 0)
		if err != nil {
			d.logf("vsock: tx: %v", err)
			continue
		}
		d.handle(h, payload)
	}
	if used && d.txNotify != nil {
		d.txNotify()
	}
}

// handle processes one packet from the guest.
func (d *Device) handle(h Header, payload []byte) {
	if h.SrcCID != uint64(d.cfg.GuestCID) {
		d.logf("vsock: dropping packet from CID %d (guest is %d)", h.SrcCID, d.cfg.GuestCID)
		return
	}
	if !d.isHostCID(h.DstCID) || h.Type != TypeStream {
		d.replyRST(h)
		return
	}
	key := connKey{uint32(h.DstCID), h.DstPort, h.SrcPort}
	c := d.conns[key]
	if c == nil {
		if h.Op == OpRequest {
			d.accept(key, h)
		} else {
			d.replyRST(h)
		}
		return
	}
	if h.Op != OpRST {
		c.peerBufAlloc, c.peerFwdCnt = h.BufAlloc, h.FwdCnt
		c.creditRequested = false
	}
	switch h.Op {
	case OpResponse:
		if c.state != stateConnecting {
			d.resetConn(c)
			break
		}
		c.state = stateEstablished
		c.broadcast()
	case OpRW:
		if c.state != stateEstablished {
			d.resetConn(c)
			break
		}
		c.receive(payload)
	case OpCreditUpdate:
	case OpCreditRequest:
		c.needCreditUpdate = true
	case OpShutdown:
		c.peerShut |= h.Flags & (ShutdownRcv | ShutdownSend)
		if c.peerShut&ShutdownRcv != 0 {
			c.wbuf = nil
		}
		if c.peerShut == ShutdownRcv|ShutdownSend {
			// The guest closed: confirm with RST and forget the connection;
			// buffered data stays readable, then EOF.
			d.queueRST(c)
			d.remove(c)
		}
		c.broadcast()
	case OpRST:
		if c.state == stateConnecting {
			c.refused = true
		}
		c.reset = true
		d.remove(c)
		c.broadcast()
		return
	default: // a duplicate REQUEST or an unknown op
		d.resetConn(c)
		return
	}
	d.schedule(c)
}

// accept handles a connection request from the guest.
func (d *Device) accept(key connKey, h Header) {
	l := d.listeners[h.DstPort]
	if l == nil || d.closed || len(l.ch) >= cap(l.ch) {
		d.replyRST(h)
		return
	}
	c := d.newConn(key)
	c.state = stateEstablished
	c.peerBufAlloc, c.peerFwdCnt = h.BufAlloc, h.FwdCnt
	c.needResponse = true
	d.conns[key] = c
	l.ch <- c
	d.schedule(c)
}

// replyRST answers a packet that has no connection.
func (d *Device) replyRST(h Header) {
	if h.Op == OpRST {
		return
	}
	if len(d.ctl) >= maxControl {
		return
	}
	d.ctl = append(d.ctl, Header{
		SrcCID: h.DstCID, DstCID: h.SrcCID, SrcPort: h.DstPort, DstPort: h.SrcPort,
		Type: h.Type, Op: OpRST,
	})
}

// queueRST sends RST for connection c (which is being forgotten).
func (d *Device) queueRST(c *Conn) {
	if len(d.ctl) < maxControl {
		d.ctl = append(d.ctl, c.header(OpRST))
	}
}

// resetConn resets c locally and tells the guest.
func (d *Device) resetConn(c *Conn) {
	d.queueRST(c)
	c.reset = true
	d.remove(c)
	c.broadcast()
}

func (d *Device) remove(c *Conn) {
	if d.conns[c.key] == c {
		delete(d.conns, c.key)
	}
	if c.closeTimer != nil {
		c.closeTimer.Stop()
		c.closeTimer = nil
	}
	c.gone = true
	c.wbuf = nil
}

// schedule queues c for sending if it has something to send.
func (d *Device) schedule(c *Conn) {
	if c.gone {
		return
	}
	if c.state == stateEstablished && len(c.wbuf) > 0 && c.credit() == 0 && !c.creditRequested && c.peerShut&ShutdownRcv == 0 {
		c.needCreditRequest, c.creditRequested = true, true
	}
	if !c.queued && c.hasWork() {
		c.queued = true
		d.dirty = append(d.dirty, c)
	}
}

// nextConn returns the first queued connection with work, dropping the
// ones that have none any more.
func (d *Device) nextConn() *Conn {
	for len(d.dirty) > 0 {
		c := d.dirty[0]
		if !c.gone && c.hasWork() {
			return c
		}
		c.queued = false
		d.dirty = d.dirty[1:]
	}
	return nil
}

// flush fills the guest's receive buffers with pending packets.
func (d *Device) flush() {
	q := d.rx
	if q == nil {
		return
	}
	used := false
	var hb [HeaderSize]byte
	for len(d.ctl) > 0 || d.nextConn() != nil {
		chain, err := q.Next()
		if chain == nil {
			if err != nil && !d.brokenLog[QueueRX] {
				d.brokenLog[QueueRX] = true
				d.logf("vsock: rx queue: %v", err)
			}
			break
		}
		used = true
		if err != nil {
			d.logf("vsock: rx: %v", err)
			q.Push(chain.Head, 0)
			continue
		}
		room := chain.WritableLen() - HeaderSize
		if room < 0 {
			d.logf("vsock: rx buffer of %d bytes cannot hold a header", chain.WritableLen())
			q.Push(chain.Head, 0)
			continue
		}
		var h Header
		var payload []byte
		if len(d.ctl) > 0 {
			h = d.ctl[0]
			d.ctl = d.ctl[1:]
		} else {
			c := d.dirty[0]
			d.dirty = d.dirty[1:]
			c.queued = false
			h, payload = c.nextPacket(min(room, MaxPayload))
			d.schedule(c)
		}
		h.Len = uint32(len(payload))
		h.Marshal(hb[:])
		chain.Scatter(hb[:], 0)
		chain.Scatter(payload, HeaderSize)
		q.Push(chain.Head, uint32(HeaderSize+len(payload)))
	}
	if used && d.rxNotify != nil {
		d.rxNotify()
	}
}

// Listener accepts guest connections to one port.
type Listener struct {
	d    *Device
	port uint32
	ch   chan *Conn
	done chan struct{}
}

// Listen accepts guest connections to port on any host CID.
func (d *Device) Listen(port uint32) (*Listener, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, net.ErrClosed
	}
	if d.listeners[port] != nil {
		return nil, fmt.Errorf("vsock listen on port %d: %w", port, syscall.EADDRINUSE)
	}
	l := &Listener{d: d, port: port, ch: make(chan *Conn, backlog), done: make(chan struct{})}
	d.listeners[port] = l
	return l, nil
}

// Accept waits for the next connection.
func (l *Listener) Accept() (net.Conn, error) { return l.AcceptVsock() }

// AcceptVsock is Accept with the concrete type.
func (l *Listener) AcceptVsock() (*Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		// Prefer connections that arrived before the close.
		select {
		case c := <-l.ch:
			return c, nil
		default:
		}
		return nil, net.ErrClosed
	}
}

// Close stops listening and resets connections not yet accepted.
func (l *Listener) Close() error {
	l.d.mu.Lock()
	defer l.d.mu.Unlock()
	if l.d.listeners[l.port] != l {
		return net.ErrClosed
	}
	l.closeLocked()
	l.d.flush()
	return nil
}

func (l *Listener) closeLocked() {
	delete(l.d.listeners, l.port)
	close(l.done)
	for {
		select {
		case c := <-l.ch:
			if !c.gone {
				l.d.resetConn(c)
			}
		default:
			return
		}
	}
}

// Addr is the listening address (CID 0 stands for any host CID).
func (l *Listener) Addr() net.Addr { return Addr{CID: 0, Port: l.port} }

// ErrRefused is wrapped when the guest refuses a connection.
var ErrRefused = syscall.ECONNREFUSED

// Dial connects to port on the guest from the parent CID.
func (d *Device) Dial(ctx context.Context, port uint32) (*Conn, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, net.ErrClosed
	}
	hp, ok := d.ephemeral(port)
	if !ok {
		d.mu.Unlock()
		return nil, fmt.Errorf("vsock dial %d:%d: %w", d.cfg.GuestCID, port, syscall.EADDRNOTAVAIL)
	}
	c := d.newConn(connKey{d.cfg.ParentCID, hp, port})
	c.state = stateConnecting
	c.needRequest = true
	d.conns[c.key] = c
	d.schedule(c)
	d.flush()
	for c.state == stateConnecting && !c.gone {
		ch := c.notify
		d.mu.Unlock()
		select {
		case <-ch:
			d.mu.Lock()
		case <-ctx.Done():
			d.mu.Lock()
			if c.state == stateConnecting && !c.gone {
				d.resetConn(c)
				d.flush()
				d.mu.Unlock()
				return nil, fmt.Errorf("vsock dial %d:%d: %w", d.cfg.GuestCID, port, ctx.Err())
			}
		}
	}
	defer d.mu.Unlock()
	if c.state != stateEstablished || c.gone {
		if c.refused {
			return nil, fmt.Errorf("vsock dial %d:%d: %w", d.cfg.GuestCID, port, ErrRefused)
		}
		return nil, fmt.Errorf("vsock dial %d:%d: %w", d.cfg.GuestCID, port, syscall.ECONNRESET)
	}
	return c, nil
}

// ephemeral picks a free host port for a connection to guestPort.
func (d *Device) ephemeral(guestPort uint32) (uint32, bool) {
	for i := 0; i < 1<<16; i++ {
		p := d.nextPort
		d.nextPort++
		if d.nextPort == 0 || d.nextPort > 0xffff {
			d.nextPort = 1024
		}
		if d.listeners[p] != nil {
			continue
		}
		if d.conns[connKey{d.cfg.ParentCID, p, guestPort}] != nil {
			continue
		}
		return p, true
	}
	return 0, false
}

// Stats is a snapshot for tests and diagnostics.
type Stats struct {
	Conns, Listeners, QueuedControl int
}

// Stats reports the number of live connections, listeners and queued RSTs.
func (d *Device) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Stats{len(d.conns), len(d.listeners), len(d.ctl)}
}
