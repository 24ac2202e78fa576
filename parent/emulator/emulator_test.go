package emulator

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/qtenclave/enclave/parent/vhostuser"
	"github.com/qtenclave/enclave/parent/vhostuser/vhostusertest"
	"github.com/qtenclave/enclave/parent/vsockdev"
	"github.com/qtenclave/enclave/proto/logstream"
)

// guest is a minimal guest-side vsock driver speaking to the parent through
// a real vhost-user connection (what QEMU and the guest kernel do together).
type guest struct {
	t       *testing.T
	fe      *vhostusertest.FrontEnd
	rx, tx  *vhostusertest.Queue
	cid     uint64
	pending []packet
}

type packet struct {
	vsockdev.Header
	payload []byte
}

func boot(t *testing.T, cfg Config) (*Parent, *guest) {
	t.Helper()
	cfg.Logf = t.Logf
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: dir + "/vsock.sock", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.ServeVhostUser(ctx, l) }()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: dir + "/vsock.sock", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	fe, err := vhostusertest.New(c, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	cfgSpace, err := fe.Call(vhostusertest.GetConfig, 0, append(make([]byte, 4), 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
	if err != nil || len(cfgSpace) != 20 {
		t.Fatalf("GET_CONFIG = %x, %v", cfgSpace, err)
	}
	_, qs, err := fe.Setup(2, 64, vhostuser.FeatureVersion1)
	if err != nil {
		t.Fatal(err)
	}
	g := &guest{t: t, fe: fe, rx: qs[0], tx: qs[1], cid: uint64(cfgSpace[12]) | uint64(cfgSpace[13])<<8}
	for i := 0; i < 32; i++ {
		g.rx.Driver.Add(nil, []int{vsockdev.HeaderSize + 4096})
	}
	g.rx.KickNow()
	t.Cleanup(func() {
		fe.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ServeVhostUser = %v", err)
		}
		p.Close()
	})
	return p, g
}

func (g *guest) send(h vsockdev.Header, payload []byte) {
	g.t.Helper()
	h.SrcCID, h.DstCID, h.Type, h.Len = g.cid, 3, vsockdev.TypeStream, uint32(len(payload))
	if h.BufAlloc == 0 {
		h.BufAlloc = 65536
	}
	hb := make([]byte, vsockdev.HeaderSize)
	h.Marshal(hb)
	bufs := [][]byte{hb}
	if len(payload) > 0 {
		bufs = append(bufs, payload)
	}
	g.tx.Driver.TakeUsed()
	if _, ok := g.tx.Driver.Add(bufs, nil); !ok {
		g.t.Fatal("tx ring full")
	}
	if err := g.tx.KickNow(); err != nil {
		g.t.Fatal(err)
	}
}

// recv returns the next packet the parent sent, which must have op.
func (g *guest) recv(op uint16) packet {
	g.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(g.pending) == 0 && time.Now().Before(deadline) {
		used := g.rx.Driver.TakeUsed()
		if len(used) == 0 {
			g.rx.WaitCall(50 * time.Millisecond)
			continue
		}
		for _, u := range used {
			h, err := vsockdev.ParseHeader(u.Written)
			if err != nil {
				g.t.Fatal(err)
			}
			g.pending = append(g.pending, packet{h, append([]byte(nil), u.Written[vsockdev.HeaderSize:]...)})
			g.rx.Driver.Add(nil, []int{vsockdev.HeaderSize + 4096})
		}
		g.rx.KickNow()
	}
	if len(g.pending) == 0 {
		g.t.Fatalf("no packet, want op %d", op)
	}
	p := g.pending[0]
	g.pending = g.pending[1:]
	if p.Op != op {
		g.t.Fatalf("packet %v, want op %d", p.Header, op)
	}
	return p
}

func TestHeartbeatAndStatusOverVhostUser(t *testing.T) {
	p, g := boot(t, Config{GuestCID: 21})
	if g.cid != 21 {
		t.Fatalf("config space guest CID %d, want 21", g.cid)
	}
	// Heartbeat: connect, write 0xB7, read 0xB7.
	g.send(vsockdev.Header{SrcPort: 1024, DstPort: 9000, Op: vsockdev.OpRequest}, nil)
	g.recv(vsockdev.OpResponse)
	g.send(vsockdev.Header{SrcPort: 1024, DstPort: 9000, Op: vsockdev.OpRW}, []byte{0xB7})
	if pk := g.recv(vsockdev.OpRW); string(pk.payload) != "\xb7" {
		t.Fatalf("heartbeat answer %x, want b7", pk.payload)
	}
	select {
	case <-p.Heartbeat():
	case <-time.After(5 * time.Second):
		t.Fatal("Heartbeat not signalled")
	}
	g.recv(vsockdev.OpShutdown) // the parent closes after answering
	g.send(vsockdev.Header{SrcPort: 1024, DstPort: 9000, Op: vsockdev.OpRST}, nil)

	// Exit status.
	g.send(vsockdev.Header{SrcPort: 1025, DstPort: 9001, Op: vsockdev.OpRequest}, nil)
	g.recv(vsockdev.OpResponse)
	g.send(vsockdev.Header{SrcPort: 1025, DstPort: 9001, Op: vsockdev.OpRW}, []byte("SIGNAL 9\n"))
	g.send(vsockdev.Header{SrcPort: 1025, DstPort: 9001, Op: vsockdev.OpShutdown, Flags: 3}, nil)
	select {
	case s := <-p.Status():
		if s.Code != 137 || s.Signal != 9 {
			t.Fatalf("status %+v, want code 137 signal 9", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no status")
	}
}

func TestBadHeartbeatIsNotAnswered(t *testing.T) {
	p, g := boot(t, Config{})
	g.send(vsockdev.Header{SrcPort: 1024, DstPort: 9000, Op: vsockdev.OpRequest}, nil)
	g.recv(vsockdev.OpResponse)
	g.send(vsockdev.Header{SrcPort: 1024, DstPort: 9000, Op: vsockdev.OpRW}, []byte{0x00})
	g.recv(vsockdev.OpShutdown)
	select {
	case <-p.Heartbeat():
		t.Fatal("Heartbeat signalled for byte 0x00")
	default:
	}
}

func TestForward(t *testing.T) {
	p, g := boot(t, Config{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Forward(ctx, l, 8000)
	hc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	req := g.recv(vsockdev.OpRequest)
	if req.DstPort != 8000 || req.SrcCID != 3 {
		t.Fatalf("request %v", req.Header)
	}
	g.send(vsockdev.Header{SrcPort: 8000, DstPort: req.SrcPort, Op: vsockdev.OpResponse}, nil)
	hc.Write([]byte("hello enclave"))
	if pk := g.recv(vsockdev.OpRW); string(pk.payload) != "hello enclave" {
		t.Fatalf("enclave got %q", pk.payload)
	}
	g.send(vsockdev.Header{SrcPort: 8000, DstPort: req.SrcPort, Op: vsockdev.OpRW}, []byte("hello host"))
	g.send(vsockdev.Header{SrcPort: 8000, DstPort: req.SrcPort, Op: vsockdev.OpShutdown, Flags: 3}, nil)
	hc.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(hc)
	if err != nil || string(got) != "hello host" {
		t.Fatalf("host got %q, %v", got, err)
	}
}

// TestLogStreamOverVhostUser: records reach OnLog in order, whatever the
// packet boundaries, and the parent closes its side (the acknowledgement)
// only after the guest's end of the stream.
func TestLogStreamOverVhostUser(t *testing.T) {
	got := make(chan string, 16)
	_, g := boot(t, Config{LogPort: 9002, OnLog: func(r logstream.Record) {
		got <- fmt.Sprintf("%v more=%v %q", r.Source, r.More, r.Text)
	}})
	g.send(vsockdev.Header{SrcPort: 1030, DstPort: 9002, Op: vsockdev.OpRequest}, nil)
	g.recv(vsockdev.OpResponse)
	g.send(vsockdev.Header{SrcPort: 1030, DstPort: 9002, Op: vsockdev.OpRW}, []byte(logstream.Header+"init init: start\nstdout+ab"))
	g.send(vsockdev.Header{SrcPort: 1030, DstPort: 9002, Op: vsockdev.OpRW}, []byte("c\nstdout def\n"))
	want := []string{`init more=false "init: start"`, `stdout more=true "abc"`, `stdout more=false "def"`}
	for _, w := range want {
		select {
		case s := <-got:
			if s != w {
				t.Errorf("record %s, want %s", s, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no record, want %s", w)
		}
	}
	// Not acknowledged before the end of the stream...
	g.send(vsockdev.Header{SrcPort: 1030, DstPort: 9002, Op: vsockdev.OpShutdown, Flags: vsockdev.ShutdownSend}, nil)
	// ...and acknowledged after it.
	g.recv(vsockdev.OpShutdown)
}
