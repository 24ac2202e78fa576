package vhostuser

import (
	"encoding/binary"
	"fmt"
)

// Front-end request types.
const (
	reqGetFeatures         = 1
	reqSetFeatures         = 2
	reqSetOwner            = 3
	reqResetOwner          = 4
	reqSetMemTable         = 5
	reqSetLogBase          = 6
	reqSetLogFD            = 7
	reqSetVringNum         = 8
	reqSetVringAddr        = 9
	reqSetVringBase        = 10
	reqGetVringBase        = 11
	reqSetVringKick        = 12
	reqSetVringCall        = 13
	reqSetVringErr         = 14
	reqGetProtocolFeatures = 15
	reqSetProtocolFeatures = 16
	reqGetQueueNum         = 17
	reqSetVringEnable      = 18
	reqSetBackendReqFD     = 21
	reqGetConfig           = 24
	reqSetConfig           = 25
	reqResetDevice         = 34
	reqGetMaxMemSlots      = 36
	reqAddMemReg           = 37
	reqRemMemReg           = 38
	reqSetStatus           = 39
	reqGetStatus           = 40
)

// Header flags.
const (
	flagVersion   = 0x1
	flagReply     = 0x4
	flagNeedReply = 0x8
)

// Feature bits.
const (
	// FeatureProtocolFeatures (bit 30) says GET/SET_PROTOCOL_FEATURES exist.
	FeatureProtocolFeatures = 1 << 30
	// FeatureVersion1 is VIRTIO_F_VERSION_1 (bit 32).
	FeatureVersion1 = 1 << 32
)

// Protocol feature bits.
const (
	ProtocolMQ       = 1 << 0
	ProtocolReplyAck = 1 << 3
	ProtocolConfig   = 1 << 9
)

// supportedProtocol is what the back-end offers.
const supportedProtocol = ProtocolMQ | ProtocolReplyAck | ProtocolConfig

const (
	headerSize     = 12
	maxPayload     = 4096 // far above the largest message handled (SET_MEM_TABLE: 8+8*32)
	maxRegions     = 8
	maxFDs         = 8
	configHdrSize  = 12
	vringIndexMask = 0xff
	vringNoFD      = 0x100
)

type header struct {
	Request uint32
	Flags   uint32
	Size    uint32
}

func (h header) marshal() []byte {
	b := make([]byte, headerSize)
	binary.NativeEndian.PutUint32(b, h.Request)
	binary.NativeEndian.PutUint32(b[4:], h.Flags)
	binary.NativeEndian.PutUint32(b[8:], h.Size)
	return b
}

func parseHeader(b []byte) (header, error) {
	h := header{
		Request: binary.NativeEndian.Uint32(b),
		Flags:   binary.NativeEndian.Uint32(b[4:]),
		Size:    binary.NativeEndian.Uint32(b[8:]),
	}
	if h.Flags&3 != flagVersion {
		return h, fmt.Errorf("request %d: unsupported version %d", h.Request, h.Flags&3)
	}
	if h.Size > maxPayload {
		return h, fmt.Errorf("request %d: payload of %d bytes exceeds %d", h.Request, h.Size, maxPayload)
	}
	return h, nil
}

func u64(p []byte) (uint64, error) {
	if len(p) < 8 {
		return 0, fmt.Errorf("payload of %d bytes, want a u64", len(p))
	}
	return binary.NativeEndian.Uint64(p), nil
}

func putU64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }

type vringState struct{ Index, Num uint32 }

func parseState(p []byte) (vringState, error) {
	if len(p) < 8 {
		return vringState{}, fmt.Errorf("payload of %d bytes, want a vring state (8)", len(p))
	}
	return vringState{binary.NativeEndian.Uint32(p), binary.NativeEndian.Uint32(p[4:])}, nil
}

func (s vringState) marshal() []byte {
	b := binary.NativeEndian.AppendUint32(nil, s.Index)
	return binary.NativeEndian.AppendUint32(b, s.Num)
}

type vringAddr struct {
	Index, Flags           uint32
	Desc, Used, Avail, Log uint64
}

func parseAddr(p []byte) (vringAddr, error) {
	if len(p) < 40 {
		return vringAddr{}, fmt.Errorf("payload of %d bytes, want a vring address (40)", len(p))
	}
	e := binary.NativeEndian
	return vringAddr{e.Uint32(p), e.Uint32(p[4:]), e.Uint64(p[8:]), e.Uint64(p[16:]), e.Uint64(p[24:]), e.Uint64(p[32:])}, nil
}

type memRegion struct {
	GuestAddr, Size, UserAddr, MmapOffset uint64
}

func parseMemTable(p []byte) ([]memRegion, error) {
	if len(p) < 8 {
		return nil, fmt.Errorf("memory table of %d bytes", len(p))
	}
	e := binary.NativeEndian
	n := e.Uint32(p)
	if n == 0 || n > maxRegions {
		return nil, fmt.Errorf("memory table with %d regions (1..%d)", n, maxRegions)
	}
	if uint64(len(p)) < 8+32*uint64(n) {
		return nil, fmt.Errorf("memory table of %d bytes for %d regions", len(p), n)
	}
	rs := make([]memRegion, n)
	for i := range rs {
		q := p[8+32*i:]
		rs[i] = memRegion{e.Uint64(q), e.Uint64(q[8:]), e.Uint64(q[16:]), e.Uint64(q[24:])}
		if rs[i].Size == 0 {
			return nil, fmt.Errorf("memory region %d: size 0", i)
		}
	}
	return rs, nil
}

type configReq struct{ Offset, Size, Flags uint32 }

func parseConfig(p []byte) (configReq, error) {
	if len(p) < configHdrSize {
		return configReq{}, fmt.Errorf("config payload of %d bytes", len(p))
	}
	e := binary.NativeEndian
	return configReq{e.Uint32(p), e.Uint32(p[4:]), e.Uint32(p[8:])}, nil
}
