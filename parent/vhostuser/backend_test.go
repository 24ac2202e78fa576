package vhostuser_test

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/qtenclave/enclave/parent/vhostuser"
	"github.com/qtenclave/enclave/parent/vhostuser/vhostusertest"
	"github.com/qtenclave/enclave/parent/virtq"
)

// echoDevice copies every readable chain of queue 1 into the next writable
// chain of queue 0 and records what the back-end tells it.
type echoDevice struct {
	mu      sync.Mutex
	queues  map[int]*virtq.Queue
	notify  map[int]func()
	events  []string
	kicks   chan int
	pending [][]byte
}

func newEcho() *echoDevice {
	return &echoDevice{queues: map[int]*virtq.Queue{}, notify: map[int]func(){}, kicks: make(chan int, 100)}
}

func (d *echoDevice) Features() uint64 { return vhostuser.FeatureVersion1 }
func (d *echoDevice) NumQueues() int   { return 2 }
func (d *echoDevice) Config() []byte   { return binary.LittleEndian.AppendUint64(nil, 42) }
func (d *echoDevice) event(s string) {
	d.mu.Lock()
	d.events = append(d.events, s)
	d.mu.Unlock()
}
func (d *echoDevice) StartQueue(i int, q *virtq.Queue, n func()) {
	d.mu.Lock()
	d.queues[i], d.notify[i] = q, n
	d.events = append(d.events, "start")
	d.mu.Unlock()
}
func (d *echoDevice) StopQueue(i int) {
	d.mu.Lock()
	delete(d.queues, i)
	d.events = append(d.events, "stop")
	d.mu.Unlock()
}
func (d *echoDevice) Reset() { d.event("reset") }
func (d *echoDevice) Kick(i int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if tx := d.queues[1]; tx != nil {
		for {
			c, err := tx.Next()
			if c == nil {
				break
			}
			if err == nil {
				b := make([]byte, c.ReadableLen())
				c.Gather(b, 0)
				d.pending = append(d.pending, b)
			}
			tx.Push(c.Head, 0)
		}
		d.notify[1]()
	}
	if rx := d.queues[0]; rx != nil {
		for len(d.pending) > 0 {
			c, err := rx.Next()
			if c == nil {
				break
			}
			var n int
			if err == nil {
				n = c.Scatter(d.pending[0], 0)
				d.pending = d.pending[1:]
			}
			rx.Push(c.Head, uint32(n))
			d.notify[0]()
		}
	}
	d.kicks <- i
}

func start(t *testing.T, dev vhostuser.Device) (*vhostusertest.FrontEnd, chan error) {
	t.Helper()
	a, b, err := vhostusertest.Pair()
	if err != nil {
		t.Fatal(err)
	}
	fe, err := vhostusertest.New(a, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	be := &vhostuser.Backend{Device: dev, Logf: t.Logf}
	go func() { done <- be.ServeConn(b) }()
	t.Cleanup(func() { fe.Close() })
	return fe, done
}

func TestHandshakeAndData(t *testing.T) {
	dev := newEcho()
	fe, done := start(t, dev)

	if n, err := fe.CallU64(vhostusertest.GetQueueNum, 0, nil); err != nil || n != 2 {
		t.Fatalf("GET_QUEUE_NUM = %d, %v; want 2", n, err)
	}
	feat, qs, err := fe.Setup(2, 16, vhostuser.FeatureVersion1)
	if err != nil {
		t.Fatal(err)
	}
	if feat != vhostuser.FeatureVersion1|vhostuser.FeatureProtocolFeatures {
		t.Errorf("negotiated features %#x", feat)
	}
	cfg, err := fe.Call(vhostusertest.GetConfig, 0, append(make([]byte, 4), 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
	if err != nil || len(cfg) != 20 || binary.LittleEndian.Uint64(cfg[12:]) != 42 {
		t.Fatalf("GET_CONFIG = %x, %v; want 12-byte header + le64 42", cfg, err)
	}
	bad, err := fe.Call(vhostusertest.GetConfig, 0, append(make([]byte, 4), 200, 0, 0, 0, 0, 0, 0, 0))
	if err != nil || len(bad) != 0 {
		t.Fatalf("GET_CONFIG(size 200) = %x, %v; want empty payload", bad, err)
	}

	rx, tx := qs[0], qs[1]
	for i := 0; i < 3; i++ {
		rx.Driver.Add(nil, []int{64})
	}
	rx.KickNow()
	tx.Driver.Add([][]byte{[]byte("ping "), []byte("pong")}, nil)
	if err := tx.KickNow(); err != nil {
		t.Fatal(err)
	}
	if err := rx.WaitCall(5 * time.Second); err != nil {
		t.Fatalf("no call on rx: %v", err)
	}
	var got []virtqtestUsed
	deadline := time.Now().Add(5 * time.Second)
	for len(got) == 0 && time.Now().Before(deadline) {
		for _, u := range rx.Driver.TakeUsed() {
			got = append(got, virtqtestUsed{u.Len, string(u.Written)})
		}
		time.Sleep(time.Millisecond)
	}
	if len(got) != 1 || got[0].s != "ping pong" {
		t.Fatalf("rx used = %+v, want one chain holding %q", got, "ping pong")
	}

	// GET_VRING_BASE stops the ring and reports how far the device got.
	p, err := fe.Call(vhostusertest.GetVringBase, 0, vhostusertest.State(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if idx, num := binary.NativeEndian.Uint32(p), binary.NativeEndian.Uint32(p[4:]); idx != 1 || num != 1 {
		t.Errorf("GET_VRING_BASE(1) = %d, %d; want 1, 1", idx, num)
	}
	dev.mu.Lock()
	_, txRunning := dev.queues[1]
	dev.mu.Unlock()
	if txRunning {
		t.Error("tx queue still running after GET_VRING_BASE")
	}

	fe.Conn.Close()
	if err := <-done; err != nil {
		t.Errorf("ServeConn after close = %v, want nil", err)
	}
	dev.mu.Lock()
	defer dev.mu.Unlock()
	if n := len(dev.events); n == 0 || dev.events[n-1] != "reset" {
		t.Errorf("events %v, want reset last", dev.events)
	}
	if len(dev.queues) != 0 {
		t.Errorf("queues still running after disconnect: %v", dev.queues)
	}
}

type virtqtestUsed struct {
	n uint32
	s string
}

func TestProtocolErrors(t *testing.T) {
	tests := []struct {
		name    string
		req     uint32
		flags   uint32
		payload []byte
		fds     int // memfd count to attach
		// wantAck: status reply expected (nonzero); else the session ends.
		wantAck bool
	}{
		{"mem table with 9 regions", vhostusertest.SetMemTable, vhostusertest.FlagNeedReply, append(vhostusertest.State(9, 0), make([]byte, 9*32)...), 0, false},
		{"mem table without fd", vhostusertest.SetMemTable, vhostusertest.FlagNeedReply, nil, 0, false},
		{"ring index out of range", vhostusertest.SetVringNum, vhostusertest.FlagNeedReply, vhostusertest.State(7, 16), 0, false},
		{"ring size not a power of two", vhostusertest.SetVringNum, vhostusertest.FlagNeedReply, vhostusertest.State(0, 17), 0, true},
		{"short u64", vhostusertest.SetFeatures, vhostusertest.FlagNeedReply, []byte{1, 2}, 0, false},
		{"unknown request", 99, vhostusertest.FlagNeedReply, nil, 0, true},
		{"kick without fd", vhostusertest.SetVringKick, vhostusertest.FlagNeedReply, vhostusertest.U64(0), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe, done := start(t, newEcho())
			payload := tt.payload
			if tt.req == vhostusertest.SetMemTable && payload == nil {
				payload = fe.MemTable()
			}
			var err error
			if tt.fds > 0 {
				err = fe.Send(tt.req, tt.flags, payload, fe.MemFD())
			} else {
				err = fe.Send(tt.req, tt.flags, payload)
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantAck {
				p, err := fe.Recv(tt.req)
				if err != nil || len(p) != 8 || binary.NativeEndian.Uint64(p) == 0 {
					t.Fatalf("reply = %x, %v; want non-zero status", p, err)
				}
				return
			}
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("ServeConn = nil, want protocol error")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("session did not end on protocol error")
			}
		})
	}
}

func TestOversizedPayload(t *testing.T) {
	fe, done := start(t, newEcho())
	b := make([]byte, 12)
	binary.NativeEndian.PutUint32(b, vhostusertest.SetFeatures)
	binary.NativeEndian.PutUint32(b[4:], 1)
	binary.NativeEndian.PutUint32(b[8:], 1<<30)
	fe.Conn.Write(b)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("ServeConn = nil, want error for a 1 GiB payload")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("session did not end")
	}
}

// TestDisconnectDrains: what the front-end made available just before it
// went away, without a kick, still reaches the device.
func TestDisconnectDrains(t *testing.T) {
	dev := newEcho()
	fe, done := start(t, dev)
	_, qs, err := fe.Setup(2, 16, vhostuser.FeatureVersion1)
	if err != nil {
		t.Fatal(err)
	}
	qs[1].Driver.Add([][]byte{[]byte("EXIT 0\n")}, nil) // no kick
	fe.Conn.Close()
	if err := <-done; err != nil {
		t.Fatalf("ServeConn after close = %v, want nil", err)
	}
	dev.mu.Lock()
	defer dev.mu.Unlock()
	if len(dev.pending) != 1 || string(dev.pending[0]) != "EXIT 0\n" {
		t.Errorf("device got %q after the disconnect, want [\"EXIT 0\\n\"]", dev.pending)
	}
}

// TestStopDrains: what the front-end made available without a kick reaches
// the device when the front-end stops the ring, as QEMU does when the guest
// reboots (SET_VRING_ENABLE 0, then GET_VRING_BASE).
func TestStopDrains(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(fe *vhostusertest.FrontEnd) error
	}{
		{"SET_VRING_ENABLE 0", func(fe *vhostusertest.FrontEnd) error {
			return fe.Send(vhostusertest.SetVringEnable, 0, vhostusertest.State(1, 0))
		}},
		{"GET_VRING_BASE", func(fe *vhostusertest.FrontEnd) error {
			_, err := fe.Call(vhostusertest.GetVringBase, 0, vhostusertest.State(1, 0))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := newEcho()
			fe, _ := start(t, dev)
			_, qs, err := fe.Setup(2, 16, vhostuser.FeatureVersion1)
			if err != nil {
				t.Fatal(err)
			}
			qs[1].Driver.Add([][]byte{[]byte("EXIT 0\n")}, nil) // no kick
			if err := tc.stop(fe); err != nil {
				t.Fatal(err)
			}
			// Requests are handled in order: once this is answered, the
			// stop was too.
			if _, err := fe.CallU64(vhostusertest.GetQueueNum, 0, nil); err != nil {
				t.Fatal(err)
			}
			dev.mu.Lock()
			defer dev.mu.Unlock()
			if len(dev.pending) != 1 || string(dev.pending[0]) != "EXIT 0\n" {
				t.Errorf("device got %q after %s, want [\"EXIT 0\\n\"]", dev.pending, tc.name)
			}
			if _, running := dev.queues[1]; running {
				t.Errorf("tx ring still running after %s", tc.name)
			}
		})
	}
}
