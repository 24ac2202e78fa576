package eif

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const emptyPCR = "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a"

// testImage is the input of a synthetic EIF.
type testImage struct {
	kernel   []byte
	cmdline  string
	meta     *Metadata
	ramdisks [][]byte
	opts     Options
}

func fixedImage() testImage {
	rng := rand.New(rand.NewPCG(1, 2))
	blob := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	return testImage{
		kernel:  blob(3*pipelineChunkSize + 12345), // spans several chunks
		cmdline: "reboot=t panic=30 pci=off console=ttyS0",
		meta: &Metadata{
			ImageName: "test", ImageVersion: "1",
			BuildMetadata: BuildMetadata{BuildTime: "1970-01-01T00:00:00Z", BuildTool: "eif_test"},
		},
		ramdisks: [][]byte{blob(1000), blob(2*pipelineChunkSize + 1), blob(7)},
	}
}

// write builds the image into a file in dir and returns its path.
func (ti testImage) write(t testing.TB, dir string) (string, *Measurements) {
	t.Helper()
	path := filepath.Join(dir, "test.eif")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := NewWriter(f, ti.opts)
	if err := w.WriteKernel(bytes.NewReader(ti.kernel)); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteCmdline(ti.cmdline); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteMetadata(ti.meta); err != nil {
		t.Fatal(err)
	}
	for i, rd := range ti.ramdisks {
		// Alternate between the io.Reader path and small Writes.
		if i%2 == 0 {
			if err := w.WriteRamdisk(bytes.NewReader(rd)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		sw, err := w.CreateSection(SectionRamdisk)
		if err != nil {
			t.Fatal(err)
		}
		for p := rd; len(p) > 0; {
			n := min(len(p), 777)
			if _, err := sw.Write(p[:n]); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
		if err := sw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	m, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return path, m
}

// independent is a second, straightforward reading of an EIF from its bytes,
// sharing no code with the package: it returns the stored and computed CRC,
// the sections in table order, and PCR0/1/2 as hex.
type indepSection struct {
	typ  uint16
	data []byte
}

func independent(t *testing.T, b []byte) (stored, computed uint32, secs []indepSection, pcrs [3]string) {
	t.Helper()
	if string(b[:4]) != ".eif" {
		t.Fatalf("magic %q", b[:4])
	}
	n := int(binary.BigEndian.Uint16(b[26:28]))
	stored = binary.BigEndian.Uint32(b[544:548])
	crcIn := append([]byte(nil), b[:544]...)
	var all, boot, app []byte
	rd := 0
	for i := 0; i < n; i++ {
		off := binary.BigEndian.Uint64(b[28+8*i:])
		size := binary.BigEndian.Uint64(b[28+8*32+8*i:])
		typ := binary.BigEndian.Uint16(b[off:])
		if got := binary.BigEndian.Uint64(b[off+4:]); got != size {
			t.Fatalf("section %d size %d vs table %d", i, got, size)
		}
		data := b[off+12 : off+12+size]
		crcIn = append(crcIn, b[off:off+12+size]...)
		secs = append(secs, indepSection{typ, data})
		switch typ {
		case 1, 2:
			all, boot = append(all, data...), append(boot, data...)
		case 3:
			all = append(all, data...)
			if rd == 0 {
				boot = append(boot, data...)
			} else {
				app = append(app, data...)
			}
			rd++
		}
	}
	computed = crc32.ChecksumIEEE(crcIn)
	for i, content := range [][]byte{all, boot, app} {
		inner := sha512.Sum384(content)
		outer := sha512.Sum384(append(make([]byte, 48), inner[:]...))
		pcrs[i] = hex.EncodeToString(outer[:])
	}
	return
}

func TestWriteReadRoundTrip(t *testing.T) {
	ti := fixedImage()
	path, wm := ti.write(t, t.TempDir())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// Independent reading of the bytes.
	stored, computed, secs, pcrs := independent(t, b)
	if stored != computed {
		t.Errorf("stored CRC %#x, independently computed %#x", stored, computed)
	}
	wantTypes := []uint16{1, 2, 5, 3, 3, 3}
	if len(secs) != len(wantTypes) {
		t.Fatalf("%d sections, want %d", len(secs), len(wantTypes))
	}
	wantData := [][]byte{ti.kernel, []byte(ti.cmdline), nil, ti.ramdisks[0], ti.ramdisks[1], ti.ramdisks[2]}
	for i, s := range secs {
		if s.typ != wantTypes[i] {
			t.Errorf("section %d type %d, want %d", i, s.typ, wantTypes[i])
		}
		if wantData[i] != nil && !bytes.Equal(s.data, wantData[i]) {
			t.Errorf("section %d data differs from the input", i)
		}
	}
	// Contiguous, no padding: the file ends with the last section.
	if want := int64(HeaderSize); true {
		for _, s := range secs {
			want += SectionHeaderSize + int64(len(s.data))
		}
		if int64(len(b)) != want {
			t.Errorf("file is %d bytes, want %d (contiguous sections)", len(b), want)
		}
	}
	got := [3]string{hex.EncodeToString(wm.PCR0), hex.EncodeToString(wm.PCR1), hex.EncodeToString(wm.PCR2)}
	if got != pcrs {
		t.Errorf("writer measurements = %v, independent %v", got, pcrs)
	}
	if wm.PCR8 != nil {
		t.Errorf("unsigned image has PCR8 %x", wm.PCR8)
	}

	// The package's reader agrees.
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rm, err := f.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if !rm.Equal(wm) {
		t.Errorf("Verify() = %+v, want %+v", rm, wm)
	}
	if f.Header.Version != 4 || f.Arch() != ArchX86_64 || f.Header.DefaultMemory != 1<<30 || f.Header.DefaultCPUs != 2 {
		t.Errorf("header = %+v", f.Header)
	}
	cl, err := f.Cmdline()
	if err != nil || cl != ti.cmdline {
		t.Errorf("Cmdline() = %q, %v, want %q", cl, err, ti.cmdline)
	}
	md, err := f.Metadata()
	if err != nil || md.ImageName != "test" || string(md.DockerInfo) != "null" {
		t.Errorf("Metadata() = %+v, %v", md, err)
	}
	if n := len(f.Ramdisks()); n != 3 {
		t.Errorf("Ramdisks() = %d sections, want 3", n)
	}
}

func TestEmptyContentKAT(t *testing.T) {
	// Empty kernel, cmdline and a single empty ramdisk: all three PCRs
	// measure empty content.
	ti := testImage{meta: &Metadata{}, ramdisks: [][]byte{{}}}
	_, m := ti.write(t, t.TempDir())
	for i, v := range [][]byte{m.PCR0, m.PCR1, m.PCR2} {
		if got := hex.EncodeToString(v); got != emptyPCR {
			t.Errorf("PCR%d of empty content = %s, want %s", i, got, emptyPCR)
		}
	}
}

func TestMeasurementsJSON(t *testing.T) {
	m := &Measurements{PCR0: bytes.Repeat([]byte{0xab}, 48), PCR1: make([]byte, 48), PCR2: bytes.Repeat([]byte{1}, 48)}
	b, err := m.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"HashAlgorithm":"Sha384 { ... }","PCR0":"` + strings.Repeat("ab", 48) + `","PCR1":"` + strings.Repeat("00", 48) + `","PCR2":"` + strings.Repeat("01", 48) + `"}`
	if string(b) != want {
		t.Errorf("MarshalJSON = %s, want %s", b, want)
	}
	var back Measurements
	if err := back.UnmarshalJSON(b); err != nil || !back.Equal(m) {
		t.Errorf("UnmarshalJSON(MarshalJSON) = %+v, %v", back, err)
	}
	if err := back.UnmarshalJSON([]byte(`{"PCR0":"abcd"}`)); err == nil {
		t.Error("UnmarshalJSON accepted a short PCR")
	}
}

func TestCRCCombine(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 5000)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, split := range []int{0, 1, 7, 544, 4999, 5000} {
		a, b := data[:split], data[split:]
		got := crcCombine(crc32.ChecksumIEEE(a), crc32.ChecksumIEEE(b), uint64(len(b)))
		if want := crc32.ChecksumIEEE(data); got != want {
			t.Errorf("crcCombine at split %d = %#x, want %#x", split, got, want)
		}
	}
	// A long run of zeros exercises the high bits of the length.
	zeros := make([]byte, 3<<20)
	got := crcCombine(crc32.ChecksumIEEE(data), crc32.ChecksumIEEE(zeros), uint64(len(zeros)))
	if want := crc32.Update(crc32.ChecksumIEEE(data), crc32.IEEETable, zeros); got != want {
		t.Errorf("crcCombine over 3 MiB = %#x, want %#x", got, want)
	}
}

func TestWriterRefuses(t *testing.T) {
	type step func(w *Writer) error
	kernel := func(w *Writer) error { return w.WriteKernel(strings.NewReader("k")) }
	cmdline := func(s string) step { return func(w *Writer) error { return w.WriteCmdline(s) } }
	meta := func(w *Writer) error { return w.WriteMetadata(&Metadata{}) }
	ramdisk := func(w *Writer) error { return w.WriteRamdisk(strings.NewReader("r")) }
	for _, tc := range []struct {
		name  string
		steps []step
		want  string // substring of the first error
	}{
		{"cmdline NUL", []step{kernel, cmdline("a\x00b")}, "NUL"},
		{"cmdline newline", []step{kernel, cmdline("a\n")}, "newline"},
		{"cmdline first", []step{cmdline("x")}, "must be section 1"},
		{"ramdisk before metadata", []step{kernel, cmdline("x"), ramdisk}, "ramdisk before"},
		{"no ramdisk", []step{kernel, cmdline("x"), meta}, "at least one ramdisk"},
		{"no metadata", []step{kernel, cmdline("x")}, "metadata sections are required"},
		{"two kernels", []step{kernel, kernel}, "must be section 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "x.eif"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w := NewWriter(f, Options{})
			for _, s := range tc.steps {
				if err = s(w); err != nil {
					break
				}
			}
			if _, cerr := w.Close(); err == nil {
				err = cerr
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestArchFlag(t *testing.T) {
	ti := fixedImage()
	ti.opts.Arch = ArchAArch64
	ti.opts.DefaultMem = 2 << 30
	ti.opts.DefaultCPUs = 4
	path, _ := ti.write(t, t.TempDir())
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Arch() != ArchAArch64 || f.Header.Flags != 1 || f.Header.DefaultMemory != 2<<30 || f.Header.DefaultCPUs != 4 {
		t.Errorf("header = flags %d mem %d cpus %d", f.Header.Flags, f.Header.DefaultMemory, f.Header.DefaultCPUs)
	}
	if _, err := f.Verify(); err != nil {
		t.Error(err)
	}
}

func ExampleMeasurements_MarshalJSON() {
	m := &Measurements{PCR0: make([]byte, 48), PCR1: make([]byte, 48), PCR2: make([]byte, 48)}
	b, _ := m.MarshalJSON()
	fmt.Println(len(b) > 0, errors.Is(invalid(ErrCRC, "x"), ErrInvalid))
	// Output: true true
}
