package virtq_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/qtenclave/enclave/parent/virtq"
	"github.com/qtenclave/enclave/parent/virtq/virtqtest"
)

func TestMemoryTranslate(t *testing.T) {
	a := make([]byte, 4096)
	b := make([]byte, 8192)
	m, err := virtq.NewMemory(
		virtq.Region{GuestAddr: 0, UserAddr: 0x10000, Data: a},
		virtq.Region{GuestAddr: 0x100000, UserAddr: 0x20000, Data: b},
	)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		user    bool
		addr, n uint64
		want    []byte // slice start expected (nil = error)
	}{
		{"guest start", false, 0, 16, a[:16]},
		{"guest end of region", false, 4080, 16, a[4080:]},
		{"guest across end", false, 4081, 16, nil},
		{"guest hole", false, 0x5000, 1, nil},
		{"guest second", false, 0x100010, 8, b[16:24]},
		{"guest zero at end", false, 4096, 0, a[4096:]},
		{"guest overflow", false, 0x100000, 1 << 63, nil},
		{"user second", true, 0x20000 + 8000, 192, b[8000:]},
		{"user below", true, 0xffff, 2, nil},
		{"user huge addr", true, ^uint64(0), 1, nil},
	}
	for _, tt := range tests {
		var got []byte
		if tt.user {
			got, err = m.User(tt.addr, tt.n)
		} else {
			got, err = m.Guest(tt.addr, tt.n)
		}
		if tt.want == nil {
			if !errors.Is(err, virtq.ErrAddress) {
				t.Errorf("%s: translate(%#x, %#x) error = %v, want ErrAddress", tt.name, tt.addr, tt.n, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: translate(%#x, %#x) = %v", tt.name, tt.addr, tt.n, err)
			continue
		}
		if uint64(len(got)) != tt.n || (tt.n > 0 && &got[0] != &tt.want[0]) {
			t.Errorf("%s: translate(%#x, %#x) = wrong slice (len %d)", tt.name, tt.addr, tt.n, len(got))
		}
	}
}

func TestMemoryOverlap(t *testing.T) {
	a, b := make([]byte, 100), make([]byte, 100)
	for _, tt := range []struct {
		name string
		r    []virtq.Region
	}{
		{"guest overlap", []virtq.Region{{GuestAddr: 0, UserAddr: 0, Data: a}, {GuestAddr: 50, UserAddr: 1000, Data: b}}},
		{"user overlap", []virtq.Region{{GuestAddr: 0, UserAddr: 0, Data: a}, {GuestAddr: 1000, UserAddr: 99, Data: b}}},
		{"empty", []virtq.Region{{GuestAddr: 0, UserAddr: 0}}},
		{"overflow", []virtq.Region{{GuestAddr: ^uint64(0) - 10, Data: a}}},
	} {
		if _, err := virtq.NewMemory(tt.r...); err == nil {
			t.Errorf("NewMemory(%s) = nil error, want error", tt.name)
		}
	}
}

func setup(t *testing.T, size uint16) (*virtqtest.Driver, *virtq.Queue) {
	t.Helper()
	g := virtqtest.NewGuest(1 << 20)
	d := virtqtest.NewDriver(g, size)
	q, err := d.Queue(g.Memory(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return d, q
}

func TestChainRoundTrip(t *testing.T) {
	d, q := setup(t, 8)
	if c, err := q.Next(); c != nil || err != nil {
		t.Fatalf("Next() on empty ring = %v, %v; want nil, nil", c, err)
	}
	// Many rounds so the 16-bit indexes wrap around the ring several times.
	for round := 0; round < 40; round++ {
		head, ok := d.Add([][]byte{[]byte("hello "), []byte("world")}, []int{3, 5})
		if !ok {
			t.Fatalf("round %d: Add failed, %d free", round, d.Free())
		}
		c, err := q.Next()
		if err != nil || c == nil {
			t.Fatalf("round %d: Next() = %v, %v", round, c, err)
		}
		if c.Head != head || c.ReadableLen() != 11 || c.WritableLen() != 8 {
			t.Fatalf("round %d: chain head %d readable %d writable %d, want %d 11 8", round, c.Head, c.ReadableLen(), c.WritableLen(), head)
		}
		got := make([]byte, 20)
		if n := c.Gather(got, 2); string(got[:n]) != "llo world" {
			t.Errorf("Gather(off 2) = %q, want %q", got[:n], "llo world")
		}
		if n := c.Scatter([]byte("ABCDEFGHIJ"), 1); n != 7 {
			t.Errorf("Scatter = %d bytes, want 7", n)
		}
		q.Push(c.Head, 8)
		used := d.TakeUsed()
		if len(used) != 1 || used[0].Head != head || used[0].Len != 8 {
			t.Fatalf("round %d: used = %+v", round, used)
		}
		if want := []byte("\x00ABCDEFG"); !bytes.Equal(used[0].Written, want) {
			t.Errorf("written = %q, want %q", used[0].Written, want)
		}
	}
	if q.LastAvail() != 40 || q.UsedIdx() != 40 {
		t.Errorf("LastAvail, UsedIdx = %d, %d; want 40, 40", q.LastAvail(), q.UsedIdx())
	}
}

func TestMalformedChains(t *testing.T) {
	type desc struct {
		addr  uint64 // offset from a valid buffer unless abs
		abs   bool
		len   uint32
		flags uint16
		next  uint16
	}
	tests := []struct {
		name  string
		descs []desc
	}{
		{"out of bounds addr", []desc{{addr: 0x7fff_0000_0000, abs: true, len: 16}}},
		{"length past end of memory", []desc{{addr: 0, len: 1 << 30}}},
		{"self loop", []desc{{len: 8, flags: virtq.DescNext, next: 0}}},
		{"two-descriptor loop", []desc{{len: 8, flags: virtq.DescNext, next: 1}, {len: 8, flags: virtq.DescNext, next: 0}}},
		{"next out of range", []desc{{len: 8, flags: virtq.DescNext, next: 200}}},
		{"indirect", []desc{{len: 16, flags: virtq.DescIndirect}}},
		{"readable after writable", []desc{{len: 8, flags: virtq.DescWrite | virtq.DescNext, next: 1}, {len: 8}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, q := setup(t, 8)
			buf := d.G.Alloc(64, 8)
			for i, ds := range tt.descs {
				addr := buf + ds.addr
				if ds.abs {
					addr = ds.addr
				}
				d.SetDesc(uint16(i), addr, ds.len, ds.flags, ds.next)
			}
			d.Publish(0)
			c, err := q.Next()
			if !errors.Is(err, virtq.ErrMalformed) {
				t.Fatalf("Next() error = %v, want ErrMalformed", err)
			}
			if c == nil || c.Head != 0 {
				t.Fatalf("Next() chain = %+v, want head 0 to return", c)
			}
			q.Push(c.Head, 0)
			// The queue still works afterwards.
			head, _ := d.Add([][]byte{[]byte("ok")}, nil)
			if c, err := q.Next(); err != nil || c.Head != head {
				t.Fatalf("Next() after malformed = %+v, %v", c, err)
			}
		})
	}
}

func TestBrokenRing(t *testing.T) {
	d, q := setup(t, 8)
	d.SetAvailIdx(9) // more entries than the ring has
	if _, err := q.Next(); !errors.Is(err, virtq.ErrBroken) {
		t.Fatalf("Next() with avail idx 9 on size 8 = %v, want ErrBroken", err)
	}
	if _, err := q.Next(); !errors.Is(err, virtq.ErrBroken) {
		t.Fatalf("Next() after broken = %v, want ErrBroken", err)
	}

	d, q = setup(t, 8)
	d.Publish(77) // head out of range
	if _, err := q.Next(); !errors.Is(err, virtq.ErrBroken) {
		t.Fatalf("Next() with head 77 = %v, want ErrBroken", err)
	}
}

func TestNewQueueChecks(t *testing.T) {
	g := virtqtest.NewGuest(1 << 16)
	mem := g.Memory()
	ring := g.Mem[:4096]
	for _, tt := range []struct {
		name string
		size uint16
		used []byte
	}{
		{"size 0", 0, ring},
		{"size 3", 3, ring},
		{"too short", 512, ring},
		{"unaligned used", 8, ring[2:]},
	} {
		if _, err := virtq.New(mem, tt.size, ring, ring, tt.used, 0); err == nil {
			t.Errorf("New(%s) = nil error", tt.name)
		}
	}
}

func FuzzChain(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0}, uint16(0), uint16(1))
	f.Add(make([]byte, 128), uint16(3), uint16(5))
	f.Fuzz(func(t *testing.T, table []byte, head, availIdx uint16) {
		g := virtqtest.NewGuest(1 << 16)
		d := virtqtest.NewDriver(g, 8)
		copy(g.At(d.DescAddr, virtq.DescSize(8)), table)
		q, err := d.Queue(g.Memory(), 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := uint16(0); i < 8; i++ {
			d.Publish(head + i)
		}
		d.SetAvailIdx(availIdx % 16)
		for i := 0; i < 20; i++ {
			c, err := q.Next()
			if c == nil {
				break
			}
			if err == nil {
				c.Gather(make([]byte, 64), 0)
				c.Scatter(make([]byte, 64), 0)
			}
			q.Push(c.Head, 0)
		}
	})
}
