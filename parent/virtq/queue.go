package virtq

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Descriptor flags (virtio 1.x, split rings).
const (
	DescNext     = 1 // the next field is valid
	DescWrite    = 2 // device-writable buffer
	DescIndirect = 4 // buffer holds a table of descriptors
)

// Sizes of the ring parts for a queue of size n (without event idx fields).
func DescSize(n uint16) uint64  { return 16 * uint64(n) }
func AvailSize(n uint16) uint64 { return 4 + 2*uint64(n) }
func UsedSize(n uint16) uint64  { return 4 + 8*uint64(n) }

// MaxSize is the largest queue size virtio allows for split rings.
const MaxSize = 32768

var (
	// ErrMalformed is wrapped by errors about one bad descriptor chain. The
	// chain's head is valid: the caller returns it with Push(head, 0) and
	// goes on with the next chain.
	ErrMalformed = errors.New("malformed descriptor chain")
	// ErrBroken is wrapped when the ring itself is inconsistent (available
	// index jumped by more than the queue size, head out of range). The
	// queue refuses all further work.
	ErrBroken = errors.New("virtqueue broken")
)

// Queue is the device side of one split virtqueue. It is not safe for
// concurrent use; the device serialises access.
type Queue struct {
	mem       *Memory
	size      uint16
	desc      []byte
	avail     []byte
	used      []byte
	lastAvail uint16
	usedIdx   uint16
	broken    error
}

// New makes a queue of the given size over ring memory already translated
// to slices (vhost-user gives ring addresses in the front-end's address
// space, see Memory.User). lastAvail is the ring base (the next available
// entry to consume); the used index continues from what the used ring holds.
func New(mem *Memory, size uint16, desc, avail, used []byte, lastAvail uint16) (*Queue, error) {
	if size == 0 || size&(size-1) != 0 || size > MaxSize {
		return nil, fmt.Errorf("queue size %d: not a power of two in 1..%d", size, MaxSize)
	}
	if uint64(len(desc)) < DescSize(size) || uint64(len(avail)) < AvailSize(size) || uint64(len(used)) < UsedSize(size) {
		return nil, fmt.Errorf("queue size %d: ring slices too short", size)
	}
	if !aligned(avail, 2) || !aligned(used, 4) {
		return nil, fmt.Errorf("queue size %d: avail ring must be 2-aligned and used ring 4-aligned", size)
	}
	q := &Queue{mem: mem, size: size, desc: desc, avail: avail, used: used, lastAvail: lastAvail}
	q.usedIdx = load16(used[2:])
	return q, nil
}

// Size is the number of descriptors.
func (q *Queue) Size() uint16 { return q.size }

// LastAvail is the index of the next available entry to consume (the value
// vhost-user's GET_VRING_BASE reports).
func (q *Queue) LastAvail() uint16 { return q.lastAvail }

// UsedIdx is the used index the device publishes next.
func (q *Queue) UsedIdx() uint16 { return q.usedIdx }

// Broken reports the error that broke the queue, or nil.
func (q *Queue) Broken() error { return q.broken }

// Pending reports how many available entries the device has not consumed.
func (q *Queue) Pending() (uint16, error) {
	if q.broken != nil {
		return 0, q.broken
	}
	n := load16(q.avail[2:]) - q.lastAvail
	if n > q.size {
		q.broken = fmt.Errorf("available index ahead by %d entries on a queue of %d: %w", n, q.size, ErrBroken)
		return 0, q.broken
	}
	return n, nil
}

// Chain is one descriptor chain: the buffers the device reads (driver to
// device) followed by the buffers it writes.
type Chain struct {
	Head     uint16
	Readable [][]byte
	Writable [][]byte
}

// ReadableLen is the total size of the readable buffers.
func (c *Chain) ReadableLen() int { return total(c.Readable) }

// WritableLen is the total size of the writable buffers.
func (c *Chain) WritableLen() int { return total(c.Writable) }

func total(bs [][]byte) int {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	return n
}

// Gather copies readable bytes starting at offset off into dst and returns
// how many it copied.
func (c *Chain) Gather(dst []byte, off int) int { return copyVec(dst, c.Readable, off, false) }

// Scatter copies src into the writable buffers starting at offset off and
// returns how many bytes it copied.
func (c *Chain) Scatter(src []byte, off int) int { return copyVec(src, c.Writable, off, true) }

func copyVec(p []byte, vec [][]byte, off int, toVec bool) int {
	n := 0
	for _, b := range vec {
		if len(p) == 0 {
			break
		}
		if off >= len(b) {
			off -= len(b)
			continue
		}
		var m int
		if toVec {
			m = copy(b[off:], p)
		} else {
			m = copy(p, b[off:])
		}
		off = 0
		p = p[m:]
		n += m
	}
	return n
}

// Next pops the next available chain. It returns (nil, nil) when the ring is
// empty. An error wrapping ErrMalformed comes with a non-nil chain holding
// only Head: the entry is consumed and must be returned with Push. An error
// wrapping ErrBroken means no further chains will be returned.
func (q *Queue) Next() (*Chain, error) {
	n, err := q.Pending()
	if err != nil || n == 0 {
		return nil, err
	}
	slot := 4 + 2*uint64(q.lastAvail%q.size)
	head := binary.LittleEndian.Uint16(q.avail[slot:])
	q.lastAvail++
	if head >= q.size {
		q.broken = fmt.Errorf("available ring entry %d names descriptor %d of %d: %w", q.lastAvail-1, head, q.size, ErrBroken)
		return nil, q.broken
	}
	c := &Chain{Head: head}
	if err := q.walk(c); err != nil {
		return &Chain{Head: head}, fmt.Errorf("chain at descriptor %d: %w", head, err)
	}
	return c, nil
}

func (q *Queue) walk(c *Chain) error {
	i := c.Head
	var sum uint64
	for count := 0; ; count++ {
		if count >= int(q.size) {
			return fmt.Errorf("longer than the queue (loop?): %w", ErrMalformed)
		}
		d := q.desc[16*uint64(i):]
		addr := binary.LittleEndian.Uint64(d)
		length := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		next := binary.LittleEndian.Uint16(d[14:])
		if flags&DescIndirect != 0 {
			return fmt.Errorf("descriptor %d: indirect descriptors not negotiated: %w", i, ErrMalformed)
		}
		sum += uint64(length)
		if sum > 1<<32 {
			return fmt.Errorf("total length over 4 GiB: %w", ErrMalformed)
		}
		if length > 0 {
			b, err := q.mem.Guest(addr, uint64(length))
			if err != nil {
				return fmt.Errorf("descriptor %d: %v: %w", i, err, ErrMalformed)
			}
			if flags&DescWrite != 0 {
				c.Writable = append(c.Writable, b)
			} else {
				if len(c.Writable) > 0 {
					return fmt.Errorf("descriptor %d: readable buffer after a writable one: %w", i, ErrMalformed)
				}
				c.Readable = append(c.Readable, b)
			}
		} else if flags&DescWrite == 0 && len(c.Writable) > 0 {
			return fmt.Errorf("descriptor %d: readable buffer after a writable one: %w", i, ErrMalformed)
		}
		if flags&DescNext == 0 {
			return nil
		}
		if next >= q.size {
			return fmt.Errorf("descriptor %d: next %d out of range: %w", i, next, ErrMalformed)
		}
		i = next
	}
}

// Push returns chain head to the driver with written bytes written into its
// writable buffers, and publishes the new used index.
func (q *Queue) Push(head uint16, written uint32) {
	if head >= q.size {
		return
	}
	slot := 4 + 8*uint64(q.usedIdx%q.size)
	binary.LittleEndian.PutUint32(q.used[slot:], uint32(head))
	binary.LittleEndian.PutUint32(q.used[slot+4:], written)
	q.usedIdx++
	// used.flags stays 0 (the device always wants kicks); used.idx follows.
	var w [4]byte
	binary.LittleEndian.PutUint16(w[2:], q.usedIdx)
	store32(q.used, w)
}
