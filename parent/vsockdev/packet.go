package vsockdev

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/qtenclave/enclave/parent/virtq"
)

// HeaderSize is the size of struct virtio_vsock_hdr.
const HeaderSize = 44

// MaxPayload is the largest payload accepted in one packet (Linux's
// VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
const MaxPayload = 64 * 1024

// Socket types.
const (
	TypeStream    = 1
	TypeSeqpacket = 2
)

// Operations.
const (
	OpRequest       = 1
	OpResponse      = 2
	OpRST           = 3
	OpShutdown      = 4
	OpRW            = 5
	OpCreditUpdate  = 6
	OpCreditRequest = 7
)

// Shutdown flags.
const (
	ShutdownRcv  = 1 // the sender will receive no more data
	ShutdownSend = 2 // the sender will send no more data
)

// Header is a virtio-vsock packet header.
type Header struct {
	SrcCID, DstCID   uint64
	SrcPort, DstPort uint32
	Len              uint32
	Type, Op         uint16
	Flags            uint32
	BufAlloc, FwdCnt uint32
}

// Marshal encodes h into b[:HeaderSize].
func (h *Header) Marshal(b []byte) {
	_ = b[HeaderSize-1]
	e := binary.LittleEndian
	e.PutUint64(b, h.SrcCID)
	e.PutUint64(b[8:], h.DstCID)
	e.PutUint32(b[16:], h.SrcPort)
	e.PutUint32(b[20:], h.DstPort)
	e.PutUint32(b[24:], h.Len)
	e.PutUint16(b[28:], h.Type)
	e.PutUint16(b[30:], h.Op)
	e.PutUint32(b[32:], h.Flags)
	e.PutUint32(b[36:], h.BufAlloc)
	e.PutUint32(b[40:], h.FwdCnt)
}

// ErrShort is returned for a buffer too small for a header.
var ErrShort = errors.New("vsock packet shorter than its header")

// ParseHeader decodes a header from b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, ErrShort
	}
	e := binary.LittleEndian
	return Header{
		SrcCID: e.Uint64(b), DstCID: e.Uint64(b[8:]),
		SrcPort: e.Uint32(b[16:]), DstPort: e.Uint32(b[20:]),
		Len: e.Uint32(b[24:]), Type: e.Uint16(b[28:]), Op: e.Uint16(b[30:]),
		Flags: e.Uint32(b[32:]), BufAlloc: e.Uint32(b[36:]), FwdCnt: e.Uint32(b[40:]),
	}, nil
}

func (h Header) String() string {
	return fmt.Sprintf("%d:%d->%d:%d op=%d type=%d len=%d flags=%d buf=%d fwd=%d",
		h.SrcCID, h.SrcPort, h.DstCID, h.DstPort, h.Op, h.Type, h.Len, h.Flags, h.BufAlloc, h.FwdCnt)
}

// ParsePacket reads a packet from the readable part of a descriptor chain:
// the header, then Len bytes of payload (copied).
func ParsePacket(c *virtq.Chain) (Header, []byte, error) {
	var hb [HeaderSize]byte
	if c.Gather(hb[:], 0) < HeaderSize {
		return Header{}, nil, ErrShort
	}
	h, _ := ParseHeader(hb[:])
	if h.Len > MaxPayload {
		return h, nil, fmt.Errorf("vsock packet payload %d bytes exceeds %d", h.Len, MaxPayload)
	}
	if h.Len == 0 {
		return h, nil, nil
	}
	p := make([]byte, h.Len)
	if n := c.Gather(p, HeaderSize); n < len(p) {
		return h, nil, fmt.Errorf("vsock packet payload %d bytes, chain holds %d", h.Len, n)
	}
	return h, p, nil
}
