package vsockdev

import (
	"encoding/binary"
	"testing"

	"github.com/qtenclave/enclave/parent/virtq"
)

// FuzzParsePacket splits arbitrary bytes into a descriptor chain's readable
// buffers and parses them as a packet.
func FuzzParsePacket(f *testing.F) {
	hb := make([]byte, HeaderSize)
	(&Header{SrcCID: 16, DstCID: 3, SrcPort: 1, DstPort: 9000, Len: 1, Type: TypeStream, Op: OpRW}).Marshal(hb)
	f.Add(append(hb, 0xB7), uint8(44))
	f.Add(hb[:30], uint8(10))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		s := min(int(split), len(data))
		c := &virtq.Chain{Readable: [][]byte{data[:s], data[s:]}}
		h, p, err := ParsePacket(c)
		if err != nil {
			return
		}
		if uint32(len(p)) != h.Len || len(data) < HeaderSize+len(p) {
			t.Fatalf("ParsePacket = %v with %d payload bytes from %d bytes", h, len(p), len(data))
		}
		var back [HeaderSize]byte
		h.Marshal(back[:])
		if string(back[:]) != string(data[:HeaderSize]) {
			t.Fatal("header does not round-trip")
		}
	})
}

// FuzzGuestPackets feeds a device a sequence of packets from a hostile
// guest: each record is a 32-byte header template (ports, op, type, flags,
// credit fields) and a payload length byte. The device must not panic,
// and its invariants hold.
func FuzzGuestPackets(f *testing.F) {
	rec := func(op, typ uint16, srcPort, dstPort, flags, buf, fwd uint32, plen byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, srcPort)
		b = binary.LittleEndian.AppendUint32(b, dstPort)
		b = binary.LittleEndian.AppendUint16(b, op)
		b = binary.LittleEndian.AppendUint16(b, typ)
		b = binary.LittleEndian.AppendUint32(b, flags)
		b = binary.LittleEndian.AppendUint32(b, buf)
		b = binary.LittleEndian.AppendUint32(b, fwd)
		b = append(b, 3, 0, 0, 0, 0, 0, 0) // dst cid low byte, pad
		return append(b, plen)
	}
	var seed []byte
	seed = append(seed, rec(OpRequest, TypeStream, 1, 9000, 0, 100, 0, 0)...)
	seed = append(seed, rec(OpRW, TypeStream, 1, 9000, 0, 100, 0, 5)...)
	seed = append(seed, rec(OpShutdown, TypeStream, 1, 9000, 3, 100, 0, 0)...)
	f.Add(seed)
	f.Add(rec(OpResponse, TypeStream, 8080, firstEphemeral, 0, 10, 0, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		fg := newFakeGuestSize(t, Config{BufAlloc: 512}, 4<<20)
		fg.post(16)
		l, _ := fg.dev.Listen(9000)
		for n := 0; len(data) >= 32 && n < 64; n++ {
			r := data[:32]
			data = data[32:]
			e := binary.LittleEndian
			h := Header{
				SrcPort: e.Uint32(r), DstPort: e.Uint32(r[4:]), Op: e.Uint16(r[8:]), Type: e.Uint16(r[10:]),
				Flags: e.Uint32(r[12:]), BufAlloc: e.Uint32(r[16:]), FwdCnt: e.Uint32(r[20:]), DstCID: uint64(r[24]),
			}
			if h.Type == 0 {
				h.Type = TypeStream
			}
			fg.send(h, make([]byte, int(r[31])*4))
			fg.collect()
			fg.got = nil
		}
		l.Close()
		fg.dev.Reset()
		if s := fg.dev.Stats(); s.Conns != 0 {
			t.Fatalf("Stats after Reset = %+v", s)
		}
	})
}
