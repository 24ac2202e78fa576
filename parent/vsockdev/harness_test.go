package vsockdev

import (
	"testing"
	"time"

	"github.com/qtenclave/enclave/parent/virtq/virtqtest"
)

const testCID = 16

// fakeGuest drives a Device as the guest's virtio-vsock driver would.
type fakeGuest struct {
	t      *testing.T
	g      *virtqtest.Guest
	rx, tx *virtqtest.Driver
	dev    *Device
	got    []packet
}

type packet struct {
	Header
	payload []byte
}

func newFakeGuest(t *testing.T, cfg Config) *fakeGuest {
	t.Helper()
	return newFakeGuestSize(t, cfg, 32<<20)
}

func newFakeGuestSize(t *testing.T, cfg Config, memSize int) *fakeGuest {
	t.Helper()
	if cfg.GuestCID == 0 {
		cfg.GuestCID = testCID
	}
	dev, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := virtqtest.NewGuest(memSize)
	fg := &fakeGuest{t: t, g: g, dev: dev, rx: virtqtest.NewDriver(g, 128), tx: virtqtest.NewDriver(g, 128)}
	mem := g.Memory()
	rxq, err := fg.rx.Queue(mem, 0)
	if err != nil {
		t.Fatal(err)
	}
	txq, err := fg.tx.Queue(mem, 0)
	if err != nil {
		t.Fatal(err)
	}
	dev.StartQueue(QueueRX, rxq, func() {})
	dev.StartQueue(QueueTX, txq, func() {})
	t.Cleanup(func() { dev.Close() })
	return fg
}

// post adds n receive buffers of 44+4096 bytes.
func (f *fakeGuest) post(n int) {
	for i := 0; i < n; i++ {
		if _, ok := f.rx.Add(nil, []int{HeaderSize + 4096}); !ok {
			f.t.Fatal("rx ring full")
		}
	}
	f.dev.Kick(QueueRX)
}

// send transmits one packet from the guest (src CID defaults to the guest's).
func (f *fakeGuest) send(h Header, payload []byte) {
	f.t.Helper()
	if h.SrcCID == 0 {
		h.SrcCID = testCID
	}
	if h.Type == 0 {
		h.Type = TypeStream
	}
	h.Len = uint32(len(payload))
	hb := make([]byte, HeaderSize)
	h.Marshal(hb)
	bufs := [][]byte{hb}
	if len(payload) > 0 {
		bufs = append(bufs, payload)
	}
	f.tx.TakeUsed()
	if _, ok := f.tx.Add(bufs, nil); !ok {
		f.t.Fatal("tx ring full")
	}
	f.dev.Kick(QueueTX)
}

// collect moves packets the device delivered into f.got, reposting buffers.
func (f *fakeGuest) collect() {
	used := f.rx.TakeUsed()
	for _, u := range used {
		h, err := ParseHeader(u.Written)
		if err != nil {
			f.t.Fatalf("device wrote %d bytes: %v", len(u.Written), err)
		}
		if int(h.Len) != len(u.Written)-HeaderSize {
			f.t.Fatalf("packet %v: used length %d", h, len(u.Written))
		}
		f.got = append(f.got, packet{h, append([]byte(nil), u.Written[HeaderSize:]...)})
	}
	if len(used) > 0 {
		f.post(len(used))
	}
}

// expect waits for the next packet and checks its op.
func (f *fakeGuest) expect(op uint16) packet {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(f.got) == 0 {
		if time.Now().After(deadline) {
			f.t.Fatalf("no packet from the device, want op %d", op)
		}
		f.collect()
		if len(f.got) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	p := f.got[0]
	f.got = f.got[1:]
	if p.Op != op {
		f.t.Fatalf("packet %v, want op %d", p.Header, op)
	}
	return p
}

// quiet checks that no packet arrives for a short while.
func (f *fakeGuest) quiet() {
	f.t.Helper()
	time.Sleep(20 * time.Millisecond)
	f.collect()
	if len(f.got) > 0 {
		f.t.Fatalf("unexpected packet %v", f.got[0].Header)
	}
}
