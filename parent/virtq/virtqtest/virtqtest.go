// Package virtqtest plays the driver (guest) side of split virtqueues over a
// plain byte slice standing in for guest memory, so device code can be
// tested without a VM.
package virtqtest

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/qtenclave/enclave/parent/virtq"
)

// Guest is fake guest memory: one region with a bump allocator.
type Guest struct {
	Mem       []byte
	GuestBase uint64
	UserBase  uint64
	next      uint64
}

// NewGuest allocates size bytes of guest memory at guest physical address
// 0x100000 and front-end address 0x7f0000000000.
func NewGuest(size int) *Guest {
	words := make([]uint64, (size+7)/8) // 8-aligned backing
	mem := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), size)
	return &Guest{Mem: mem, GuestBase: 0x100000, UserBase: 0x7f0000000000}
}

// Memory returns the device's view of the guest memory.
func (g *Guest) Memory() *virtq.Memory {
	m, err := virtq.NewMemory(virtq.Region{GuestAddr: g.GuestBase, UserAddr: g.UserBase, Data: g.Mem})
	if err != nil {
		panic(err)
	}
	return m
}

// Alloc reserves n bytes aligned to align and returns their guest address.
func (g *Guest) Alloc(n, align uint64) uint64 {
	off := (g.next + align - 1) &^ (align - 1)
	if off+n > uint64(len(g.Mem)) {
		panic(fmt.Sprintf("virtqtest: guest memory exhausted (%d+%d > %d)", off, n, len(g.Mem)))
	}
	g.next = off + n
	return g.GuestBase + off
}

// At returns the n bytes at guest address addr (panics when out of range).
func (g *Guest) At(addr, n uint64) []byte {
	off := addr - g.GuestBase
	return g.Mem[off : off+n]
}

// UserAddr converts a guest address to the front-end address space.
func (g *Guest) UserAddr(addr uint64) uint64 { return addr - g.GuestBase + g.UserBase }

// Driver is the driver side of one queue.
type Driver struct {
	G                   *Guest
	Size                uint16
	DescAddr, AvailAddr uint64 // guest addresses
	UsedAddr            uint64
	availIdx, lastUsed  uint16
	free                []uint16
	bufs                map[uint16][]desc // head -> chain, for Used
	desc, avail, used   []byte
}

type desc struct {
	addr  uint64
	len   uint32
	write bool
}

// NewDriver lays out a queue of the given size in g.
func NewDriver(g *Guest, size uint16) *Driver {
	d := &Driver{G: g, Size: size, bufs: map[uint16][]desc{}}
	d.DescAddr = g.Alloc(virtq.DescSize(size), 16)
	d.AvailAddr = g.Alloc(virtq.AvailSize(size)+2, 4)
	d.UsedAddr = g.Alloc(virtq.UsedSize(size)+2, 4096)
	d.desc = g.At(d.DescAddr, virtq.DescSize(size))
	d.avail = g.At(d.AvailAddr, virtq.AvailSize(size))
	d.used = g.At(d.UsedAddr, virtq.UsedSize(size))
	for i := size; i > 0; i-- {
		d.free = append(d.free, i-1)
	}
	return d
}

// Queue builds the device side over the same memory, the way a vhost-user
// back-end does from front-end addresses.
func (d *Driver) Queue(mem *virtq.Memory, lastAvail uint16) (*virtq.Queue, error) {
	desc, err := mem.User(d.G.UserAddr(d.DescAddr), virtq.DescSize(d.Size))
	if err != nil {
		return nil, err
	}
	avail, err := mem.User(d.G.UserAddr(d.AvailAddr), virtq.AvailSize(d.Size))
	if err != nil {
		return nil, err
	}
	used, err := mem.User(d.G.UserAddr(d.UsedAddr), virtq.UsedSize(d.Size))
	if err != nil {
		return nil, err
	}
	return virtq.New(mem, d.Size, desc, avail, used, lastAvail)
}

// Free is the number of unused descriptors.
func (d *Driver) Free() int { return len(d.free) }

// Add posts a chain made of readable buffers holding the given data followed
// by writable buffers of the given sizes. It returns the head, or false when
// there are not enough free descriptors.
func (d *Driver) Add(readable [][]byte, writable []int) (uint16, bool) {
	n := len(readable) + len(writable)
	if n == 0 || n > len(d.free) {
		return 0, false
	}
	ids := d.free[len(d.free)-n:]
	d.free = d.free[:len(d.free)-n]
	var chain []desc
	for i := 0; i < n; i++ {
		var ds desc
		if i < len(readable) {
			ds = desc{addr: d.G.Alloc(uint64(len(readable[i]))+1, 8), len: uint32(len(readable[i]))}
			copy(d.G.At(ds.addr, uint64(ds.len)), readable[i])
		} else {
			l := writable[i-len(readable)]
			ds = desc{addr: d.G.Alloc(uint64(l)+1, 8), len: uint32(l), write: true}
		}
		var flags uint16
		if ds.write {
			flags |= virtq.DescWrite
		}
		var next uint16
		if i+1 < n {
			flags |= virtq.DescNext
			next = ids[i+1]
		}
		d.SetDesc(ids[i], ds.addr, ds.len, flags, next)
		chain = append(chain, ds)
	}
	d.bufs[ids[0]] = chain
	d.Publish(ids[0])
	return ids[0], true
}

// SetDesc writes descriptor i directly (for malformed-chain tests).
func (d *Driver) SetDesc(i uint16, addr uint64, length uint32, flags, next uint16) {
	e := d.desc[16*uint64(i):]
	binary.LittleEndian.PutUint64(e, addr)
	binary.LittleEndian.PutUint32(e[8:], length)
	binary.LittleEndian.PutUint16(e[12:], flags)
	binary.LittleEndian.PutUint16(e[14:], next)
}

// Publish puts head in the available ring and bumps the available index.
func (d *Driver) Publish(head uint16) {
	binary.LittleEndian.PutUint16(d.avail[4+2*uint64(d.availIdx%d.Size):], head)
	d.availIdx++
	d.SetAvailIdx(d.availIdx)
}

// SetAvailIdx stores the available index (flags stay 0).
func (d *Driver) SetAvailIdx(idx uint16) {
	d.availIdx = idx
	var w [4]byte
	binary.LittleEndian.PutUint16(w[2:], idx)
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&d.avail[0])), binary.NativeEndian.Uint32(w[:]))
}

// Used is one chain the device returned.
type Used struct {
	Head    uint16
	Len     uint32 // bytes the device says it wrote
	Written []byte // the first Len bytes of the chain's writable buffers
}

// TakeUsed returns the chains the device has returned since the last call
// and frees their descriptors.
func (d *Driver) TakeUsed() []Used {
	w := atomic.LoadUint32((*uint32)(unsafe.Pointer(&d.used[0])))
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], w)
	idx := binary.LittleEndian.Uint16(b[2:])
	var out []Used
	for ; d.lastUsed != idx; d.lastUsed++ {
		e := d.used[4+8*uint64(d.lastUsed%d.Size):]
		u := Used{Head: uint16(binary.LittleEndian.Uint32(e)), Len: binary.LittleEndian.Uint32(e[4:])}
		chain := d.bufs[u.Head]
		delete(d.bufs, u.Head)
		left := u.Len
		for _, ds := range chain {
			if !ds.write || left == 0 {
				continue
			}
			m := min(left, ds.len)
			u.Written = append(u.Written, d.G.At(ds.addr, uint64(m))...)
			left -= m
		}
		out = append(out, u)
		d.freeChain(u.Head, len(chain))
	}
	return out
}

func (d *Driver) freeChain(head uint16, n int) {
	i := head
	for k := 0; k < n; k++ {
		d.free = append(d.free, i)
		i = binary.LittleEndian.Uint16(d.desc[16*uint64(i)+14:])
	}
}
