package virtq

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

// The ring index words are shared with a guest running concurrently. Go has
// no 16-bit atomics, so they are read and written through the naturally
// aligned 32-bit word that contains them: a 2-aligned u16 never straddles a
// 4-byte boundary, and the containing word lies in the same allocation (Go
// heap objects are 8-aligned, mmap'd memory is page-aligned).

// load16 atomically loads the little-endian u16 at b[0:2]; b must be 2-aligned.
func load16(b []byte) uint16 {
	// A length check, not "_ = b[1]": under -race that is a plain read of
	// the shared word, which the detector rightly reports.
	if len(b) < 2 {
		panic("virtq: load16 of a short slice")
	}
	p := unsafe.Pointer(&b[0])
	off := uintptr(p) & 3
	w := atomic.LoadUint32((*uint32)(unsafe.Add(p, -int(off))))
	var buf [4]byte
	binary.NativeEndian.PutUint32(buf[:], w)
	return binary.LittleEndian.Uint16(buf[off:])
}

// store32 atomically stores the 4 bytes v (in memory order) at b[0:4]; b
// must be 4-aligned.
func store32(b []byte, v [4]byte) {
	if len(b) < 4 {
		panic("virtq: store32 to a short slice")
	}
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b[0])), binary.NativeEndian.Uint32(v[:]))
}

func aligned(b []byte, a uintptr) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(&b[0]))%a == 0
}
