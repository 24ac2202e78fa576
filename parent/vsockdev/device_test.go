package vsockdev

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// connect performs a guest-initiated connection to port and returns the
// accepted host side.
func connect(t *testing.T, f *fakeGuest, l *Listener, guestPort, port, bufAlloc uint32) *Conn {
	t.Helper()
	f.send(Header{DstCID: CIDParent, SrcPort: guestPort, DstPort: port, Op: OpRequest, BufAlloc: bufAlloc}, nil)
	p := f.expect(OpResponse)
	want := Header{SrcCID: CIDParent, DstCID: testCID, SrcPort: port, DstPort: guestPort, Type: TypeStream, Op: OpResponse, BufAlloc: f.dev.cfg.BufAlloc}
	if p.Header != want {
		t.Fatalf("response %v, want %v", p.Header, want)
	}
	c, err := l.AcceptVsock()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHeartbeatExchange(t *testing.T) {
	f := newFakeGuest(t, Config{})
	f.post(4)
	l, err := f.dev.Listen(9000)
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, f, l, 1025, 9000, 65536)
	if got, want := c.RemoteAddr().String(), "16:1025"; got != want {
		t.Errorf("RemoteAddr = %s, want %s", got, want)
	}
	f.send(Header{DstCID: CIDParent, SrcPort: 1025, DstPort: 9000, Op: OpRW, BufAlloc: 65536}, []byte{0xB7})
	b := make([]byte, 8)
	n, err := c.Read(b)
	if err != nil || n != 1 || b[0] != 0xB7 {
		t.Fatalf("Read = %x, %v; want b7", b[:n], err)
	}
	if _, err := c.Write([]byte{0xB7}); err != nil {
		t.Fatal(err)
	}
	p := f.expect(OpRW)
	if !bytes.Equal(p.payload, []byte{0xB7}) || p.FwdCnt != 1 || p.DstPort != 1025 {
		t.Fatalf("RW %v %x, want payload b7 fwd_cnt 1", p.Header, p.payload)
	}
	// The guest closes: SHUTDOWN both ways, the device confirms with RST.
	f.send(Header{DstCID: CIDParent, SrcPort: 1025, DstPort: 9000, Op: OpShutdown, Flags: 3, BufAlloc: 65536, FwdCnt: 1}, nil)
	f.expect(OpRST)
	if n, err := c.Read(b); n != 0 || err != io.EOF {
		t.Fatalf("Read after guest shutdown = %d, %v; want EOF", n, err)
	}
	if _, err := c.Write([]byte{1}); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("Write after guest shutdown = %v, want EPIPE", err)
	}
	if s := f.dev.Stats(); s.Conns != 0 {
		t.Errorf("Stats = %+v, want no connections", s)
	}
	c.Close()
	f.quiet()
}

func TestRST(t *testing.T) {
	tests := []struct {
		name string
		h    Header
		rst  bool
	}{
		{"no listener", Header{DstCID: CIDParent, SrcPort: 1, DstPort: 1234, Op: OpRequest}, true},
		{"data for unknown connection", Header{DstCID: CIDParent, SrcPort: 1, DstPort: 9000, Op: OpRW}, true},
		{"shutdown for unknown connection", Header{DstCID: CIDHost, SrcPort: 1, DstPort: 9000, Op: OpShutdown, Flags: 3}, true},
		{"rst for unknown connection", Header{DstCID: CIDParent, SrcPort: 1, DstPort: 9000, Op: OpRST}, false},
		{"unserved CID", Header{DstCID: 7, SrcPort: 1, DstPort: 9000, Op: OpRequest}, true},
		{"seqpacket", Header{DstCID: CIDParent, SrcPort: 1, DstPort: 9000, Op: OpRequest, Type: TypeSeqpacket}, true},
		{"spoofed source CID", Header{SrcCID: 99, DstCID: CIDParent, SrcPort: 1, DstPort: 9000, Op: OpRequest}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeGuest(t, Config{})
			f.post(2)
			if _, err := f.dev.Listen(9000); err != nil {
				t.Fatal(err)
			}
			f.send(tt.h, nil)
			if !tt.rst {
				f.quiet()
				return
			}
			p := f.expect(OpRST)
			if p.SrcPort != tt.h.DstPort || p.DstPort != tt.h.SrcPort || p.SrcCID != tt.h.DstCID || p.DstCID != testCID {
				t.Errorf("RST %v does not answer %v", p.Header, tt.h)
			}
			if s := f.dev.Stats(); s.Conns != 0 {
				t.Errorf("Stats = %+v, want no connections", s)
			}
		})
	}
}

func TestCreditLimitsHostWrites(t *testing.T) {
	f := newFakeGuest(t, Config{})
	f.post(8)
	l, _ := f.dev.Listen(5000)
	c := connect(t, f, l, 2000, 5000, 100) // the guest offers 100 bytes
	data := bytes.Repeat([]byte("0123456789"), 30)
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	p := f.expect(OpRW)
	if len(p.payload) != 100 {
		t.Fatalf("first RW carries %d bytes, want 100 (the guest's credit)", len(p.payload))
	}
	// Out of credit: the device asks for an update and sends nothing more.
	f.expect(OpCreditRequest)
	f.quiet()
	// The guest consumed 100 bytes.
	f.send(Header{DstCID: CIDParent, SrcPort: 2000, DstPort: 5000, Op: OpCreditUpdate, BufAlloc: 100, FwdCnt: 100}, nil)
	p = f.expect(OpRW)
	if !bytes.Equal(p.payload, data[100:200]) {
		t.Fatalf("second RW = %q, want %q", p.payload, data[100:200])
	}
	f.expect(OpCreditRequest)
	// A bigger buffer lets the rest through.
	f.send(Header{DstCID: CIDParent, SrcPort: 2000, DstPort: 5000, Op: OpCreditUpdate, BufAlloc: 1 << 20, FwdCnt: 200}, nil)
	p = f.expect(OpRW)
	if !bytes.Equal(p.payload, data[200:]) {
		t.Fatalf("third RW = %q, want %q", p.payload, data[200:])
	}
	f.quiet()
}

func TestCreditUpdatesAsHostReads(t *testing.T) {
	f := newFakeGuest(t, Config{BufAlloc: 1000})
	f.post(4)
	l, _ := f.dev.Listen(5000)
	f.send(Header{DstCID: CIDParent, SrcPort: 7, DstPort: 5000, Op: OpRequest, BufAlloc: 4096}, nil)
	if p := f.expect(OpResponse); p.BufAlloc != 1000 {
		t.Fatalf("response buf_alloc %d, want 1000", p.BufAlloc)
	}
	c, _ := l.AcceptVsock()
	f.send(Header{DstCID: CIDParent, SrcPort: 7, DstPort: 5000, Op: OpRW, BufAlloc: 4096}, make([]byte, 400))
	f.send(Header{DstCID: CIDParent, SrcPort: 7, DstPort: 5000, Op: OpCreditRequest, BufAlloc: 4096}, nil)
	if p := f.expect(OpCreditUpdate); p.FwdCnt != 0 {
		t.Fatalf("credit update fwd_cnt %d before any read, want 0", p.FwdCnt)
	}
	f.send(Header{DstCID: CIDParent, SrcPort: 7, DstPort: 5000, Op: OpRW, BufAlloc: 4096}, make([]byte, 300))
	// 700 of 1000 in flight: reading half of it does not warrant an update
	// until the guest's view of free space falls under 500.
	buf := make([]byte, 700)
	if n, err := io.ReadFull(c, buf); n != 700 || err != nil {
		t.Fatalf("ReadFull = %d, %v", n, err)
	}
	p := f.expect(OpCreditUpdate)
	if p.FwdCnt != 700 {
		t.Fatalf("credit update fwd_cnt %d, want 700", p.FwdCnt)
	}
	// Overrunning the advertised buffer resets the connection.
	f.send(Header{DstCID: CIDParent, SrcPort: 7, DstPort: 5000, Op: OpRW, BufAlloc: 4096}, make([]byte, 1001))
	f.expect(OpRST)
	if _, err := c.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after overrun = %v, want ECONNRESET", err)
	}
}

func TestDial(t *testing.T) {
	f := newFakeGuest(t, Config{})
	f.post(4)
	type result struct {
		c   *Conn
		err error
	}
	dial := func(ctx context.Context, port uint32) chan result {
		ch := make(chan result, 1)
		go func() {
			c, err := f.dev.Dial(ctx, port)
			ch <- result{c, err}
		}()
		return ch
	}

	// Accepted.
	ch := dial(context.Background(), 8080)
	req := f.expect(OpRequest)
	if req.SrcCID != CIDParent || req.DstPort != 8080 || req.SrcPort < firstEphemeral || req.BufAlloc != DefaultBufAlloc {
		t.Fatalf("request %v", req.Header)
	}
	f.send(Header{DstCID: CIDParent, SrcPort: 8080, DstPort: req.SrcPort, Op: OpResponse, BufAlloc: 4096}, nil)
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	if _, err := r.c.Write([]byte("GET /")); err != nil {
		t.Fatal(err)
	}
	if p := f.expect(OpRW); string(p.payload) != "GET /" {
		t.Fatalf("RW %q", p.payload)
	}
	f.send(Header{DstCID: CIDParent, SrcPort: 8080, DstPort: req.SrcPort, Op: OpRW, BufAlloc: 4096, FwdCnt: 5}, []byte("200 OK"))
	b := make([]byte, 16)
	if n, err := r.c.Read(b); string(b[:n]) != "200 OK" || err != nil {
		t.Fatalf("Read = %q, %v", b[:n], err)
	}

	// Refused.
	ch = dial(context.Background(), 8081)
	req = f.expect(OpRequest)
	f.send(Header{DstCID: CIDParent, SrcPort: 8081, DstPort: req.SrcPort, Op: OpRST}, nil)
	if r := <-ch; !errors.Is(r.err, syscall.ECONNREFUSED) {
		t.Fatalf("Dial refused = %v, want ECONNREFUSED", r.err)
	}

	// No answer: the context ends the attempt and the device resets it.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	ch = dial(ctx, 8082)
	req = f.expect(OpRequest)
	if r := <-ch; !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("Dial without answer = %v, want deadline exceeded", r.err)
	}
	if p := f.expect(OpRST); p.SrcPort != req.SrcPort {
		t.Fatalf("RST %v for request %v", p.Header, req.Header)
	}
	if s := f.dev.Stats(); s.Conns != 1 {
		t.Errorf("Stats = %+v, want 1 connection (the accepted one)", s)
	}
}

func TestCloseSendsDataThenShutdown(t *testing.T) {
	f := newFakeGuest(t, Config{CloseTimeout: 50 * time.Millisecond})
	f.post(4)
	l, _ := f.dev.Listen(9001)
	c := connect(t, f, l, 3000, 9001, 4096)
	c.Write([]byte("bye"))
	c.Close()
	if p := f.expect(OpRW); string(p.payload) != "bye" {
		t.Fatalf("RW %q, want bye", p.payload)
	}
	if p := f.expect(OpShutdown); p.Flags != ShutdownRcv|ShutdownSend {
		t.Fatalf("shutdown flags %d, want 3", p.Flags)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close = %v, want net.ErrClosed", err)
	}
	// The guest's RST ends it.
	f.send(Header{DstCID: CIDParent, SrcPort: 3000, DstPort: 9001, Op: OpRST}, nil)
	f.quiet()
	if s := f.dev.Stats(); s.Conns != 0 {
		t.Fatalf("Stats = %+v after RST, want none", s)
	}

	// A guest that never answers: RST after CloseTimeout.
	c = connect(t, f, l, 3001, 9001, 4096)
	c.Close()
	f.expect(OpShutdown)
	if p := f.expect(OpRST); p.DstPort != 3001 {
		t.Fatalf("RST %v", p.Header)
	}
	if s := f.dev.Stats(); s.Conns != 0 {
		t.Fatalf("Stats = %+v after close timeout, want none", s)
	}
}

func TestHalfClose(t *testing.T) {
	f := newFakeGuest(t, Config{})
	f.post(4)
	l, _ := f.dev.Listen(9001)
	c := connect(t, f, l, 3000, 9001, 4096)
	// The guest is done sending (like init after writing its status line).
	f.send(Header{DstCID: CIDParent, SrcPort: 3000, DstPort: 9001, Op: OpRW, BufAlloc: 4096}, []byte("EXIT 3\n"))
	f.send(Header{DstCID: CIDParent, SrcPort: 3000, DstPort: 9001, Op: OpShutdown, Flags: ShutdownSend, BufAlloc: 4096}, nil)
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "EXIT 3\n" {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
	// The host can still answer.
	c.Write([]byte("ok"))
	if p := f.expect(OpRW); string(p.payload) != "ok" {
		t.Fatalf("RW %q", p.payload)
	}
	c.CloseWrite()
	if p := f.expect(OpShutdown); p.Flags != ShutdownSend {
		t.Fatalf("shutdown flags %d, want %d", p.Flags, ShutdownSend)
	}
}

func TestDeadlinesAndReset(t *testing.T) {
	f := newFakeGuest(t, Config{})
	f.post(4)
	l, _ := f.dev.Listen(9001)
	c := connect(t, f, l, 3000, 9001, 4096)
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past deadline = %v, want timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	f.dev.Reset()
	select {
	case err := <-done:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("Read across Reset = %v, want ECONNRESET", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read not woken by Reset")
	}
}

func TestListenerClose(t *testing.T) {
	f := newFakeGuest(t, Config{})
	f.post(4)
	l, _ := f.dev.Listen(9000)
	if _, err := f.dev.Listen(9000); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second Listen = %v, want EADDRINUSE", err)
	}
	f.send(Header{DstCID: CIDParent, SrcPort: 5, DstPort: 9000, Op: OpRequest, BufAlloc: 10}, nil)
	f.expect(OpResponse)
	l.Close() // the connection was never accepted
	f.expect(OpRST)
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v", err)
	}
	f.send(Header{DstCID: CIDParent, SrcPort: 6, DstPort: 9000, Op: OpRequest, BufAlloc: 10}, nil)
	f.expect(OpRST)
}

func TestNoRXBuffersQueuesPackets(t *testing.T) {
	f := newFakeGuest(t, Config{})
	// No receive buffers yet: the RST waits.
	f.send(Header{DstCID: CIDParent, SrcPort: 1, DstPort: 1, Op: OpRequest}, nil)
	f.quiet()
	if s := f.dev.Stats(); s.QueuedControl != 1 {
		t.Fatalf("Stats = %+v, want 1 queued RST", s)
	}
	f.post(1)
	f.expect(OpRST)
}

func TestMalformedTX(t *testing.T) {
	f := newFakeGuest(t, Config{})
	f.post(2)
	l, _ := f.dev.Listen(9000)
	// Header claims 100 bytes of payload, chain holds 10.
	hb := make([]byte, HeaderSize)
	(&Header{SrcCID: testCID, DstCID: CIDParent, SrcPort: 1, DstPort: 9000, Type: TypeStream, Op: OpRequest, Len: 100}).Marshal(hb)
	f.tx.Add([][]byte{hb, make([]byte, 10)}, nil)
	// Short header.
	f.tx.Add([][]byte{hb[:20]}, nil)
	// Payload over the maximum.
	big := make([]byte, HeaderSize)
	(&Header{SrcCID: testCID, DstCID: CIDParent, Len: MaxPayload + 1, Type: TypeStream, Op: OpRW}).Marshal(big)
	f.tx.Add([][]byte{big}, nil)
	// Descriptor outside guest memory.
	f.tx.SetDesc(100, 0xdead_0000_0000, 64, 0, 0)
	f.tx.Publish(100)
	// A loop.
	f.tx.SetDesc(101, f.g.GuestBase, 8, 1, 102)
	f.tx.SetDesc(102, f.g.GuestBase, 8, 1, 101)
	f.tx.Publish(101)
	f.dev.Kick(QueueTX)
	f.quiet()
	if s := f.dev.Stats(); s.Conns != 0 {
		t.Fatalf("Stats = %+v", s)
	}
	// The queue still works.
	c := connect(t, f, l, 9, 9000, 10)
	c.Close()
}

func TestBulkBothWays(t *testing.T) {
	f := newFakeGuest(t, Config{BufAlloc: 64 * 1024})
	f.post(64)
	l, _ := f.dev.Listen(7000)
	c := connect(t, f, l, 4000, 7000, 32*1024)
	const size = 1 << 20
	src := make([]byte, size)
	for i := range src {
		src[i] = byte(i * 7)
	}
	// Host to guest: the guest acknowledges what it received, like Linux.
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(src)
		werr <- err
	}()
	var got []byte
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < size && time.Now().Before(deadline) {
		f.collect()
		if len(f.got) == 0 {
			time.Sleep(100 * time.Microsecond)
			continue
		}
		for _, p := range f.got {
			switch p.Op {
			case OpRW:
				got = append(got, p.payload...)
			case OpCreditRequest:
			default:
				t.Fatalf("unexpected %v", p.Header)
			}
		}
		f.got = nil
		f.send(Header{DstCID: CIDParent, SrcPort: 4000, DstPort: 7000, Op: OpCreditUpdate, BufAlloc: 32 * 1024, FwdCnt: uint32(len(got))}, nil)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, src) {
		t.Fatalf("guest received %d bytes, want the %d sent", len(got), size)
	}

	// Guest to host, respecting the device's credit.
	rerr := make(chan error, 1)
	var recv []byte
	go func() {
		b := make([]byte, size)
		_, err := io.ReadFull(c, b)
		recv = b
		rerr <- err
	}()
	var sent, peerFwd uint32
	peerBuf := uint32(64 * 1024)
	for sent < size {
		f.collect()
		for _, p := range f.got {
			peerFwd, peerBuf = p.FwdCnt, p.BufAlloc
		}
		f.got = nil
		credit := peerBuf - (sent - peerFwd)
		n := min(credit, 4096, size-sent)
		if n == 0 {
			time.Sleep(100 * time.Microsecond)
			continue
		}
		f.send(Header{DstCID: CIDParent, SrcPort: 4000, DstPort: 7000, Op: OpRW, BufAlloc: 32 * 1024, FwdCnt: size}, src[sent:sent+n])
		sent += n
	}
	if err := <-rerr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(recv, src) {
		t.Fatal("host received different bytes")
	}
}
