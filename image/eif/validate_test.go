package eif

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"runtime"
	"strings"
	"testing"
)

// memFile is an in-memory io.WriterAt.
type memFile struct{ b []byte }

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	copy(m.b[off:], p)
	return len(p), nil
}

// smallEIF builds a small valid image in memory: kernel, cmdline, metadata,
// ramdisk... (one per ramdisks element).
func smallEIF(t testing.TB, cmdline string, signer *Signer, ramdisks ...string) []byte {
	t.Helper()
	var m memFile
	w := NewWriter(&m, Options{Signer: signer})
	steps := []error{
		w.WriteKernel(strings.NewReader("KERNEL-bzImage-bytes")),
		w.WriteCmdline(cmdline),
		w.WriteMetadata(&Metadata{ImageName: "small", BuildMetadata: BuildMetadata{BuildTime: "1970-01-01T00:00:00Z"}}),
	}
	for _, rd := range ramdisks {
		steps = append(steps, w.WriteRamdisk(strings.NewReader(rd)))
	}
	for _, err := range steps {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return m.b
}

// Header field offsets, for corrupting images.
const (
	offVersion  = 4
	offFlags    = 6
	offNum      = 26
	offOffsets  = 28
	offSizes    = 28 + 8*MaxSections
	offCRCField = crcOffset
)

func secOff(b []byte, i int) int {
	return int(binary.BigEndian.Uint64(b[offOffsets+8*i:]))
}

// fixCRC recomputes the header CRC the straightforward way (header, then
// each section header and data in table order), so that a corruption is
// judged by its own rule and not by the CRC.
func fixCRC(b []byte) []byte {
	n := int(binary.BigEndian.Uint16(b[offNum:]))
	c := crc32.ChecksumIEEE(b[:crcOffset])
	for i := 0; i < n && i < MaxSections; i++ {
		off := binary.BigEndian.Uint64(b[offOffsets+8*i:])
		size := binary.BigEndian.Uint64(b[offSizes+8*i:])
		if off+12+size <= uint64(len(b)) && off+12+size >= off {
			c = crc32.Update(c, crc32.IEEETable, b[off:off+12+size])
		}
	}
	binary.BigEndian.PutUint32(b[offCRCField:], c)
	return b
}

func TestValidatorRefuses(t *testing.T) {
	base := smallEIF(t, "console=ttyS0", nil, "bootstrap", "app", "app2")
	// Sections: 0 kernel, 1 cmdline, 2 metadata, 3, 4 and 5 ramdisks.
	put16 := func(off int, v uint16) func([]byte) { return func(b []byte) { binary.BigEndian.PutUint16(b[off:], v) } }
	put64 := func(off int, v uint64) func([]byte) { return func(b []byte) { binary.BigEndian.PutUint64(b[off:], v) } }
	secType := func(i int, v uint16) func([]byte) {
		return func(b []byte) { binary.BigEndian.PutUint16(b[secOff(b, i):], v) }
	}
	both := func(fs ...func([]byte)) func([]byte) {
		return func(b []byte) {
			for _, f := range fs {
				f(b)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func([]byte) // applied to a copy; the CRC is then fixed unless noFix
		trunc  int          // if > 0, keep only the first trunc bytes
		noFix  bool
		kind   error
		msg    string
	}{
		{name: "truncated header", trunc: 100, kind: ErrTruncated, msg: "smaller than the 548-byte header"},
		{name: "empty file", trunc: -1, kind: ErrTruncated, msg: "file is 0 bytes"},
		{name: "bad magic", mutate: func(b []byte) { copy(b, "ELF\x7f") }, kind: ErrMagic, msg: `magic "ELF\x7f"`},
		{name: "version 3", mutate: put16(offVersion, 3), kind: ErrVersion, msg: "version 3, want 4"},
		{name: "version 0", mutate: put16(offVersion, 0), kind: ErrVersion, msg: "version 0"},
		{name: "unknown flags", mutate: put16(offFlags, 2), kind: ErrFlags, msg: "flags 0x0002"},
		{name: "zero sections", mutate: put16(offNum, 0), kind: ErrSectionCount, msg: "0 sections, want 2 to 32"},
		{name: "one section", mutate: put16(offNum, 1), kind: ErrSectionCount, msg: "1 sections"},
		{name: "33 sections", mutate: put16(offNum, 33), kind: ErrSectionCount, msg: "33 sections"},
		{name: "65535 sections", mutate: put16(offNum, 0xffff), kind: ErrSectionCount, msg: "65535 sections"},
		{name: "more sections than present", mutate: put16(offNum, 7), kind: ErrSectionOverlap, msg: "section 6 at offset 0 overlaps the header"},
		{name: "offset inside header", mutate: put64(offOffsets, 10), kind: ErrSectionOverlap, msg: "section 0 at offset 10 overlaps the header"},
		{name: "offset past end", mutate: put64(offOffsets+8*4, math.MaxUint64), kind: ErrSectionBounds, msg: "section 4 (offset 18446744073709551615"},
		{name: "size 2^63", mutate: both(put64(offSizes+8*4, 1<<63), func(b []byte) { binary.BigEndian.PutUint64(b[secOff(b, 4)+4:], 1<<63) }), kind: ErrSectionBounds, msg: "9223372036854775808 bytes"},
		{name: "size max uint64", mutate: put64(offSizes, math.MaxUint64), kind: ErrSectionBounds, msg: "section 0"},
		{name: "size one past end", mutate: func(b []byte) {
			binary.BigEndian.PutUint64(b[offSizes+8*5:], binary.BigEndian.Uint64(b[offSizes+8*5:])+1)
		}, kind: ErrSectionBounds, msg: "ends past the end"},
		{name: "overlapping sections", mutate: func(b []byte) {
			binary.BigEndian.PutUint64(b[offOffsets+8*2:], uint64(secOff(b, 1)+4))
		}, kind: ErrSectionOverlap, msg: "section 2 at offset"},
		{name: "out of order", mutate: func(b []byte) {
			for _, tab := range []int{offOffsets, offSizes} {
				o3, o4 := b[tab+8*3:tab+8*4], b[tab+8*4:tab+8*5]
				t3 := append([]byte(nil), o3...)
				copy(o3, o4)
				copy(o4, t3)
			}
		}, kind: ErrSectionOverlap, msg: "starts before the end of the previous section"},
		{name: "section size mismatch", mutate: func(b []byte) { binary.BigEndian.PutUint64(b[secOff(b, 1)+4:], 3) }, kind: ErrSectionHeader, msg: "section 1 header says 3 bytes"},
		{name: "section flags", mutate: func(b []byte) { binary.BigEndian.PutUint16(b[secOff(b, 3)+2:], 1) }, kind: ErrSectionHeader, msg: "section 3 flags 0x0001, want 0"},
		{name: "section type 0", mutate: secType(2, 0), kind: ErrSectionType, msg: "section 2 has type 0"},
		{name: "section type 6", mutate: secType(2, 6), kind: ErrSectionType, msg: "section 2 has type 6"},
		{name: "section type 65535", mutate: secType(4, 0xffff), kind: ErrSectionType, msg: "type 65535"},
		{name: "two kernels", mutate: secType(1, uint16(SectionKernel)), kind: ErrLayout, msg: "2 kernel sections, want exactly 1"},
		{name: "no kernel", mutate: secType(0, uint16(SectionRamdisk)), kind: ErrLayout, msg: "0 kernel sections"},
		{name: "two cmdlines", mutate: secType(2, uint16(SectionCmdline)), kind: ErrLayout, msg: "2 cmdline sections"},
		{name: "no cmdline", mutate: secType(1, uint16(SectionRamdisk)), kind: ErrLayout, msg: "0 cmdline sections"},
		{name: "no ramdisk", mutate: both(secType(3, uint16(SectionSignature)), secType(4, uint16(SectionSignature)), secType(5, uint16(SectionSignature))), kind: ErrLayout, msg: "no ramdisk section"},
		{name: "ramdisk before kernel", mutate: both(secType(0, uint16(SectionRamdisk)), secType(3, uint16(SectionKernel))), kind: ErrLayout, msg: "ramdisk (section 0) before the kernel (section 3)"},
		{name: "no metadata", mutate: secType(2, uint16(SectionRamdisk)), kind: ErrLayout, msg: "no metadata section"},
		{name: "two metadata", mutate: secType(4, uint16(SectionMetadata)), kind: ErrLayout, msg: "2 metadata sections"},
		{name: "two signatures", mutate: both(secType(4, uint16(SectionSignature)), secType(5, uint16(SectionSignature))), kind: ErrLayout, msg: "2 signature sections"},
		{name: "CRC mismatch in data", mutate: func(b []byte) { b[len(b)-1] ^= 1 }, noFix: true, kind: ErrCRC, msg: "header says"},
		{name: "CRC mismatch in header", mutate: put64(8, 2<<30), noFix: true, kind: ErrCRC, msg: "computed"},
		{name: "CRC field", mutate: func(b []byte) { b[offCRCField] ^= 0x80 }, noFix: true, kind: ErrCRC, msg: "header says"},
		{name: "cmdline NUL", mutate: func(b []byte) { b[secOff(b, 1)+12+3] = 0 }, kind: ErrCmdline, msg: "NUL byte at offset 3"},
		{name: "metadata not JSON", mutate: func(b []byte) { b[secOff(b, 2)+12] = '[' }, kind: ErrMetadata, msg: "not JSON"},
		{name: "signature garbage", mutate: secType(4, uint16(SectionSignature)), kind: ErrSignature, msg: "major type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), base...)
			switch {
			case tc.trunc > 0:
				b = b[:tc.trunc]
			case tc.trunc < 0:
				b = nil
			}
			if tc.mutate != nil {
				tc.mutate(b)
				if !tc.noFix {
					fixCRC(b)
				}
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			f, err := NewFile(bytes.NewReader(b), int64(len(b)))
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
				t.Errorf("NewFile allocated %d bytes on a %d-byte file", alloc, len(b))
			}
			if err == nil {
				_, err = f.Verify()
			}
			if err == nil {
				t.Fatalf("accepted, want %v", tc.kind)
			}
			if !errors.Is(err, tc.kind) || !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q is not %v and ErrInvalid", err, tc.kind)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error = %q, want it to contain %q", err, tc.msg)
			}
		})
	}
}

func TestValidatorSizeCaps(t *testing.T) {
	big := strings.Repeat("a", maxCmdlineSize+1)
	b := smallEIF(t, big, nil, "r")
	_, err := NewFile(bytes.NewReader(b), int64(len(b)))
	if !errors.Is(err, ErrCmdline) || !strings.Contains(err.Error(), "more than 65536") {
		t.Errorf("NewFile(64 KiB + 1 cmdline) = %v, want ErrCmdline", err)
	}
}

func TestValidatorAcceptsGapsAndNewerVersion(t *testing.T) {
	// A gap between sections (not covered by the CRC, as in QEMU) and a
	// version above 4 are accepted.
	base := smallEIF(t, "x", nil, "r1", "r2")
	n := int(binary.BigEndian.Uint16(base[offNum:]))
	last := secOff(base, n-1)
	b := append(append(append([]byte(nil), base[:last]...), 0, 0, 0, 0), base[last:]...)
	binary.BigEndian.PutUint64(b[offOffsets+8*(n-1):], uint64(last+4))
	binary.BigEndian.PutUint16(b[offVersion:], 5)
	fixCRC(b)
	f, err := NewFile(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Verify()
	if err != nil {
		t.Fatal(err)
	}
	f0, _ := NewFile(bytes.NewReader(base), int64(len(base)))
	m0, err := f0.Verify()
	if err != nil || !m.Equal(m0) {
		t.Errorf("measurements with a gap = %+v, want %+v (%v)", m, m0, err)
	}
}
