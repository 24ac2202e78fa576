package vsockdev

import (
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// Addr is a vsock address.
type Addr struct{ CID, Port uint32 }

// Network is "vsock".
func (Addr) Network() string { return "vsock" }

func (a Addr) String() string { return fmt.Sprintf("%d:%d", a.CID, a.Port) }

type connState int

const (
	stateConnecting connState = iota
	stateEstablished
)

// Conn is one stream connection. It implements net.Conn. All fields are
// guarded by the device's mutex.
type Conn struct {
	d     *Device
	key   connKey
	state connState

	// Receive side (guest to host).
	rbuf        []byte
	rxCnt       uint32 // bytes received
	fwdCnt      uint32 // bytes consumed by Read
	lastFwdSent uint32 // fwd_cnt last told to the guest
	bufAlloc    uint32

	// Send side (host to guest).
	wbuf         []byte
	txCnt        uint32 // bytes sent
	peerBufAlloc uint32
	peerFwdCnt   uint32

	peerShut  uint32 // shutdown flags received
	localShut uint32 // shutdown flags requested locally
	shutSent  uint32 // shutdown flags sent

	needRequest, needResponse           bool
	needCreditUpdate, needCreditRequest bool
	creditRequested                     bool

	reset       bool // RST received or sent
	refused     bool // RST in answer to our request
	gone        bool // removed from the table
	closedLocal bool // Close called
	queued      bool // in the device's send list
	closeTimer  *time.Timer

	readDeadline, writeDeadline time.Time
	notify                      chan struct{}
}

func (d *Device) newConn(key connKey) *Conn {
	return &Conn{d: d, key: key, bufAlloc: d.cfg.BufAlloc, notify: make(chan struct{})}
}

func (c *Conn) broadcast() {
	close(c.notify)
	c.notify = make(chan struct{})
}

// wait releases the device lock until something changes or deadline passes.
func (c *Conn) wait(deadline time.Time) {
	ch := c.notify
	c.d.mu.Unlock()
	if deadline.IsZero() {
		<-ch
	} else {
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
	c.d.mu.Lock()
}

func expired(t time.Time) bool { return !t.IsZero() && !time.Now().Before(t) }

// credit is how many bytes the guest can take now.
func (c *Conn) credit() uint32 {
	inFlight := c.txCnt - c.peerFwdCnt
	if inFlight >= c.peerBufAlloc {
		return 0
	}
	return c.peerBufAlloc - inFlight
}

func (c *Conn) header(op uint16) Header {
	return Header{
		SrcCID: uint64(c.key.hostCID), DstCID: uint64(c.d.cfg.GuestCID),
		SrcPort: c.key.hostPort, DstPort: c.key.guestPort,
		Type: TypeStream, Op: op, BufAlloc: c.bufAlloc, FwdCnt: c.fwdCnt,
	}
}

func (c *Conn) hasWork() bool {
	if c.gone {
		return false
	}
	return c.needRequest || c.needResponse ||
		(c.state == stateEstablished && len(c.wbuf) > 0 && c.credit() > 0) ||
		(c.state == stateEstablished && c.localShut&^c.shutSent != 0 && len(c.wbuf) == 0) ||
		c.needCreditUpdate || c.needCreditRequest
}

// nextPacket builds the next packet for the guest, with at most max bytes
// of payload. Only called when hasWork.
func (c *Conn) nextPacket(max int) (Header, []byte) {
	var h Header
	var payload []byte
	switch {
	case c.needRequest:
		c.needRequest = false
		h = c.header(OpRequest)
	case c.needResponse:
		c.needResponse = false
		h = c.header(OpResponse)
	case c.state == stateEstablished && len(c.wbuf) > 0 && c.credit() > 0:
		n := min(len(c.wbuf), int(min(c.credit(), uint32(max))))
		payload = c.wbuf[:n:n]
		c.wbuf = c.wbuf[n:]
		if len(c.wbuf) == 0 {
			c.wbuf = nil
		}
		c.txCnt += uint32(n)
		h = c.header(OpRW)
		c.broadcast() // room for writers
	case c.localShut&^c.shutSent != 0 && len(c.wbuf) == 0:
		h = c.header(OpShutdown)
		h.Flags = c.localShut
		c.shutSent = c.localShut
		if c.shutSent == ShutdownRcv|ShutdownSend {
			c.startCloseTimer()
		}
	case c.needCreditUpdate:
		h = c.header(OpCreditUpdate)
	default:
		c.needCreditRequest = false
		h = c.header(OpCreditRequest)
	}
	// Every packet carries buf_alloc and fwd_cnt.
	c.needCreditUpdate = false
	c.lastFwdSent = c.fwdCnt
	return h, payload
}

// startCloseTimer forgets the connection if the guest does not answer our
// full shutdown with RST in time.
func (c *Conn) startCloseTimer() {
	if c.closeTimer != nil {
		return
	}
	d := c.d
	c.closeTimer = time.AfterFunc(d.cfg.CloseTimeout, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if !c.gone {
			d.resetConn(c)
			d.flush()
		}
	})
}

// receive appends guest data.
func (c *Conn) receive(p []byte) {
	n := uint32(len(p))
	if n == 0 {
		return
	}
	if c.localShut&ShutdownRcv != 0 {
		// Nobody will read it: count it as consumed.
		c.rxCnt += n
		c.fwdCnt += n
		c.maybeCreditUpdate()
		return
	}
	if uint64(len(c.rbuf))+uint64(n) > uint64(c.bufAlloc) {
		c.d.logf("vsock: %v: guest sent %d bytes beyond the advertised buffer", c.RemoteAddr(), n)
		c.d.resetConn(c)
		return
	}
	c.rbuf = append(c.rbuf, p...)
	c.rxCnt += n
	c.broadcast()
}

func (c *Conn) maybeCreditUpdate() {
	if c.fwdCnt != c.lastFwdSent && c.rxCnt-c.lastFwdSent > c.bufAlloc/2 {
		c.needCreditUpdate = true
	}
}

// Read reads guest data.
func (c *Conn) Read(p []byte) (int, error) {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		switch {
		case c.closedLocal:
			return 0, c.opErr("read", net.ErrClosed)
		case len(c.rbuf) > 0:
			if len(p) == 0 {
				return 0, nil
			}
			n := copy(p, c.rbuf)
			c.rbuf = c.rbuf[n:]
			if len(c.rbuf) == 0 {
				c.rbuf = nil
			}
			c.fwdCnt += uint32(n)
			c.maybeCreditUpdate()
			d.schedule(c)
			d.flush()
			return n, nil
		case c.peerShut&ShutdownSend != 0 || c.localShut&ShutdownRcv != 0:
			return 0, io.EOF
		case c.reset:
			return 0, c.opErr("read", syscall.ECONNRESET)
		case expired(c.readDeadline):
			return 0, c.opErr("read", os.ErrDeadlineExceeded)
		}
		c.wait(c.readDeadline)
	}
}

// Write queues data for the guest; it blocks while the send buffer is full.
func (c *Conn) Write(p []byte) (int, error) {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	total := 0
	for {
		switch {
		case c.closedLocal:
			return total, c.opErr("write", net.ErrClosed)
		case c.localShut&ShutdownSend != 0 || c.peerShut&ShutdownRcv != 0:
			return total, c.opErr("write", syscall.EPIPE)
		case c.reset || c.gone:
			return total, c.opErr("write", syscall.ECONNRESET)
		case len(p) == 0:
			return total, nil
		case expired(c.writeDeadline):
			return total, c.opErr("write", os.ErrDeadlineExceeded)
		}
		if room := sendBufMax - len(c.wbuf); room > 0 {
			n := min(room, len(p))
			c.wbuf = append(c.wbuf, p[:n]...)
			p = p[n:]
			total += n
			d.schedule(c)
			d.flush()
			continue
		}
		c.wait(c.writeDeadline)
	}
}

func (c *Conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "vsock", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// shutdown requests SHUTDOWN flags (sent once queued data is out).
func (c *Conn) shutdown(flags uint32) {
	c.localShut |= flags
	if flags&ShutdownRcv != 0 {
		// Unread data is dropped and credited back.
		c.fwdCnt += uint32(len(c.rbuf))
		c.rbuf = nil
	}
	c.broadcast()
	c.d.schedule(c)
	c.d.flush()
}

// Close shuts the connection down in both directions. Queued data is still
// sent; the guest's RST (or CloseTimeout) ends the connection.
func (c *Conn) Close() error {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.closedLocal {
		return c.opErr("close", net.ErrClosed)
	}
	c.closedLocal = true
	if c.gone {
		c.broadcast()
		return nil
	}
	c.shutdown(ShutdownRcv | ShutdownSend)
	return nil
}

// CloseWrite tells the guest no more data follows (it reads EOF).
func (c *Conn) CloseWrite() error { return c.closeHalf(ShutdownSend) }

// CloseRead tells the guest no more data will be read.
func (c *Conn) CloseRead() error { return c.closeHalf(ShutdownRcv) }

func (c *Conn) closeHalf(how uint32) error {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.closedLocal {
		return c.opErr("close", net.ErrClosed)
	}
	if !c.gone {
		c.shutdown(how)
	}
	return nil
}

// LocalAddr is the host side.
func (c *Conn) LocalAddr() net.Addr { return Addr{c.key.hostCID, c.key.hostPort} }

// RemoteAddr is the guest side.
func (c *Conn) RemoteAddr() net.Addr { return Addr{c.d.cfg.GuestCID, c.key.guestPort} }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	c.readDeadline, c.writeDeadline = t, t
	c.broadcast()
	return nil
}

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	c.readDeadline = t
	c.broadcast()
	return nil
}

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	c.writeDeadline = t
	c.broadcast()
	return nil
}
