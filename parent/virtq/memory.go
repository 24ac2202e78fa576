package virtq

import (
	"errors"
	"fmt"
)

// ErrAddress is wrapped by every error about an address that does not lie
// inside guest memory.
var ErrAddress = errors.New("address outside guest memory")

// Region is one contiguous piece of guest memory mapped into this process.
type Region struct {
	GuestAddr uint64 // guest physical address of Data[0]
	UserAddr  uint64 // front-end (QEMU) virtual address of Data[0]
	Data      []byte
}

// Memory is a set of regions. It is immutable once built.
type Memory struct {
	regions []Region
}

// NewMemory checks that the regions do not overlap (in either address
// space) and that their ends do not overflow.
func NewMemory(regions ...Region) (*Memory, error) {
	m := &Memory{regions: append([]Region(nil), regions...)}
	for i, r := range m.regions {
		n := uint64(len(r.Data))
		if n == 0 {
			return nil, fmt.Errorf("region %d: empty", i)
		}
		if r.GuestAddr+n < r.GuestAddr || r.UserAddr+n < r.UserAddr {
			return nil, fmt.Errorf("region %d: end overflows", i)
		}
		for j := 0; j < i; j++ {
			o := m.regions[j]
			on := uint64(len(o.Data))
			if overlap(r.GuestAddr, n, o.GuestAddr, on) {
				return nil, fmt.Errorf("region %d overlaps region %d in guest addresses", i, j)
			}
			if overlap(r.UserAddr, n, o.UserAddr, on) {
				return nil, fmt.Errorf("region %d overlaps region %d in user addresses", i, j)
			}
		}
	}
	return m, nil
}

func overlap(a, an, b, bn uint64) bool { return a < b+bn && b < a+an }

// Regions returns the regions (shared, do not modify).
func (m *Memory) Regions() []Region { return m.regions }

// Guest returns the n bytes at guest physical address addr. The range must
// lie inside one region.
func (m *Memory) Guest(addr, n uint64) ([]byte, error) {
	if m != nil {
		for _, r := range m.regions {
			if b, ok := slice(r.Data, r.GuestAddr, addr, n); ok {
				return b, nil
			}
		}
	}
	return nil, fmt.Errorf("guest address %#x+%#x: %w", addr, n, ErrAddress)
}

// User returns the n bytes at front-end virtual address addr.
func (m *Memory) User(addr, n uint64) ([]byte, error) {
	if m != nil {
		for _, r := range m.regions {
			if b, ok := slice(r.Data, r.UserAddr, addr, n); ok {
				return b, nil
			}
		}
	}
	return nil, fmt.Errorf("user address %#x+%#x: %w", addr, n, ErrAddress)
}

func slice(data []byte, base, addr, n uint64) ([]byte, bool) {
	if addr < base {
		return nil, false
	}
	off := addr - base
	size := uint64(len(data))
	if off >= size || n > size-off {
		if n == 0 && off == size {
			return data[off:off], true
		}
		return nil, false
	}
	return data[off : off+n : off+n], true
}
