package eif

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// Limits on the sections read into memory. The kernel takes at most a few
// KiB of command line; metadata is a small JSON document.
const (
	maxCmdlineSize  = 64 << 10
	maxMetadataSize = 16 << 20
)

// File is an opened EIF whose structure has been checked (see NewFile).
type File struct {
	Header   Header
	Sections []*Section
	Size     int64 // file size

	r      io.ReaderAt
	closer io.Closer
}

// Section is one section of a File. Its embedded SectionReader reads the
// section's data (not its 12-byte header).
type Section struct {
	Index  int         // position in the section table
	Type   SectionType //
	Flags  uint16      //
	Offset int64       // file offset of the section header
	Size   int64       // data size
	*io.SectionReader
}

// DataOffset returns the file offset of the section's data.
func (s *Section) DataOffset() int64 { return s.Offset + SectionHeaderSize }

// Open opens and checks the EIF at name.
func Open(name string) (*File, error) {
	fh, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("eif: %w", err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("eif: %w", err)
	}
	if !st.Mode().IsRegular() {
		fh.Close()
		return nil, fmt.Errorf("eif: %s is not a regular file", name)
	}
	f, err := NewFile(fh, st.Size())
	if err != nil {
		fh.Close()
		return nil, err
	}
	f.closer = fh
	return f, nil
}

// Close closes the file opened by Open.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	return f.closer.Close()
}

// NewFile reads the header and section headers of an EIF of the given size
// and checks its structure, refusing what AWS's and QEMU's loaders refuse
// (and a little more): a bad magic, a version below 4, flags other than the
// architecture bit, a section count outside 2..32, sections that start inside
// the header, end outside the file, overlap or are out of file order, a
// section header whose size differs from the table's or whose flags are not
// zero, an unknown section type, not exactly one kernel and one cmdline, no
// ramdisk, a ramdisk before the kernel, no metadata (v4), more than one
// metadata or signature section, and cmdline/metadata/signature sections too
// large to be real. Nothing is allocated according to sizes from the file.
//
// The CRC and contents are checked by Verify.
func NewFile(r io.ReaderAt, size int64) (*File, error) {
	if size < HeaderSize {
		return nil, invalid(ErrTruncated, "file is %d bytes, smaller than the %d-byte header", size, HeaderSize)
	}
	hb := make([]byte, HeaderSize)
	if _, err := r.ReadAt(hb, 0); err != nil {
		return nil, fmt.Errorf("eif: read header: %w", err)
	}
	if string(hb[:4]) != Magic {
		return nil, invalid(ErrMagic, "magic %q, want %q", hb[:4], Magic)
	}
	h := decodeHeader(hb)
	if h.Version < Version {
		return nil, invalid(ErrVersion, "version %d, want %d or later", h.Version, Version)
	}
	if h.Flags&^archMask != 0 {
		return nil, invalid(ErrFlags, "flags %#04x, only bit 0 (architecture) is defined", h.Flags)
	}
	if h.NumSections < MinSections || h.NumSections > MaxSections {
		return nil, invalid(ErrSectionCount, "%d sections, want %d to %d", h.NumSections, MinSections, MaxSections)
	}
	f := &File{Header: h, Size: size, r: r}
	usize := uint64(size)
	prevEnd := uint64(HeaderSize)
	var sh [SectionHeaderSize]byte
	for i := 0; i < int(h.NumSections); i++ {
		off, sz := h.SectionOffsets[i], h.SectionSizes[i]
		if off < HeaderSize {
			return nil, invalid(ErrSectionOverlap, "section %d at offset %d overlaps the header", i, off)
		}
		// off, sz <= size < 2^63, so the sum cannot overflow.
		if off > usize || sz > usize || off+SectionHeaderSize+sz > usize {
			return nil, invalid(ErrSectionBounds, "section %d (offset %d, %d bytes + %d-byte header) ends past the end of the %d-byte file",
				i, off, sz, SectionHeaderSize, size)
		}
		if off < prevEnd {
			return nil, invalid(ErrSectionOverlap, "section %d at offset %d starts before the end of the previous section (%d)", i, off, prevEnd)
		}
		prevEnd = off + SectionHeaderSize + sz
		if _, err := r.ReadAt(sh[:], int64(off)); err != nil {
			return nil, fmt.Errorf("eif: read section %d header: %w", i, err)
		}
		s := decodeSectionHeader(sh[:])
		if s.Size != sz {
			return nil, invalid(ErrSectionHeader, "section %d header says %d bytes, the header table %d", i, s.Size, sz)
		}
		if s.Flags != 0 {
			return nil, invalid(ErrSectionHeader, "section %d flags %#04x, want 0", i, s.Flags)
		}
		if s.Type == SectionInvalid || s.Type >= sectionTypeMax {
			return nil, invalid(ErrSectionType, "section %d has type %d", i, uint16(s.Type))
		}
		f.Sections = append(f.Sections, &Section{
			Index: i, Type: s.Type, Offset: int64(off), Size: int64(sz),
			SectionReader: io.NewSectionReader(r, int64(off)+SectionHeaderSize, int64(sz)),
		})
	}
	if err := f.checkLayout(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *File) checkLayout() error {
	var count [sectionTypeMax]int
	firstRamdisk, kernel := -1, -1
	for i, s := range f.Sections {
		count[s.Type]++
		switch s.Type {
		case SectionKernel:
			kernel = i
		case SectionRamdisk:
			if firstRamdisk < 0 {
				firstRamdisk = i
			}
		case SectionCmdline:
			if s.Size > maxCmdlineSize {
				return invalid(ErrCmdline, "%d bytes, more than %d", s.Size, maxCmdlineSize)
			}
		case SectionMetadata:
			if s.Size > maxMetadataSize {
				return invalid(ErrMetadata, "%d bytes, more than %d", s.Size, maxMetadataSize)
			}
		case SectionSignature:
			if s.Size > maxSignatureSize {
				return invalid(ErrSignature, "%d bytes, more than %d", s.Size, maxSignatureSize)
			}
		}
	}
	switch {
	case count[SectionKernel] != 1:
		return invalid(ErrLayout, "%d kernel sections, want exactly 1", count[SectionKernel])
	case count[SectionCmdline] != 1:
		return invalid(ErrLayout, "%d cmdline sections, want exactly 1", count[SectionCmdline])
	case count[SectionRamdisk] == 0:
		return invalid(ErrLayout, "no ramdisk section")
	case firstRamdisk < kernel:
		return invalid(ErrLayout, "ramdisk (section %d) before the kernel (section %d)", firstRamdisk, kernel)
	case count[SectionMetadata] == 0 && f.Header.Version >= 4:
		return invalid(ErrLayout, "no metadata section (mandatory in version %d)", f.Header.Version)
	case count[SectionMetadata] > 1:
		return invalid(ErrLayout, "%d metadata sections, want 1", count[SectionMetadata])
	case count[SectionSignature] > 1:
		return invalid(ErrLayout, "%d signature sections, want at most 1", count[SectionSignature])
	}
	return nil
}

// Arch returns the architecture recorded in the header.
func (f *File) Arch() Arch { return f.Header.Arch() }

func (f *File) first(t SectionType) *Section {
	for _, s := range f.Sections {
		if s.Type == t {
			return s
		}
	}
	return nil
}

// Kernel returns the kernel section.
func (f *File) Kernel() *Section { return f.first(SectionKernel) }

// CmdlineSection returns the cmdline section.
func (f *File) CmdlineSection() *Section { return f.first(SectionCmdline) }

// MetadataSection returns the metadata section, or nil.
func (f *File) MetadataSection() *Section { return f.first(SectionMetadata) }

// SignatureSection returns the signature section, or nil if unsigned.
func (f *File) SignatureSection() *Section { return f.first(SectionSignature) }

// Ramdisks returns the ramdisk sections in order; the first is the
// bootstrap ramdisk.
func (f *File) Ramdisks() []*Section {
	var out []*Section
	for _, s := range f.Sections {
		if s.Type == SectionRamdisk {
			out = append(out, s)
		}
	}
	return out
}

// Bytes reads a whole section; sizes were capped by NewFile for the small
// sections, so call it only for those (cmdline, metadata, signature) or
// sections you know are small.
func (s *Section) Bytes() ([]byte, error) {
	b := make([]byte, s.Size)
	if _, err := s.ReadAt(b, 0); err != nil && !(err == io.EOF && s.Size == 0) {
		return nil, fmt.Errorf("eif: read %s section: %w", s.Type, err)
	}
	return b, nil
}

// Cmdline returns the kernel command line.
func (f *File) Cmdline() (string, error) {
	b, err := f.CmdlineSection().Bytes()
	if err != nil {
		return "", err
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return "", invalid(ErrCmdline, "NUL byte at offset %d (loaders would truncate the measured command line)", i)
	}
	return string(b), nil
}

// MetadataBytes returns the raw metadata section, or nil if there is none.
func (f *File) MetadataBytes() ([]byte, error) {
	s := f.MetadataSection()
	if s == nil {
		return nil, nil
	}
	return s.Bytes()
}

// Metadata returns the parsed metadata section, or nil if there is none.
func (f *File) Metadata() (*Metadata, error) {
	b, err := f.MetadataBytes()
	if err != nil || b == nil {
		return nil, err
	}
	return ParseMetadata(b)
}

// Signature returns the parsed signature section, or nil if unsigned.
func (f *File) Signature() (*Signature, error) {
	s := f.SignatureSection()
	if s == nil {
		return nil, nil
	}
	b, err := s.Bytes()
	if err != nil {
		return nil, err
	}
	return ParseSignature(b)
}

// Verify reads the whole image once: it checks the CRC and computes the
// measurements (PCR8 too if signed), then checks the small sections'
// contents (cmdline without NUL, metadata JSON, signature structure and
// certificate). It does not verify the signature itself: see VerifySignature.
func (f *File) Verify() (*Measurements, error) {
	m, crc, err := f.measure()
	if err != nil {
		return nil, err
	}
	if crc != f.Header.CRC32 {
		return nil, invalid(ErrCRC, "header says %#08x, computed %#08x", f.Header.CRC32, crc)
	}
	if _, err := f.Cmdline(); err != nil {
		return nil, err
	}
	if _, err := f.Metadata(); err != nil {
		return nil, err
	}
	sig, err := f.Signature()
	if err != nil {
		return nil, err
	}
	if sig != nil {
		m.PCR8 = sig.PCR8()
	}
	return m, nil
}

// VerifySignature checks the signature section against the measurements
// (from Verify): the COSE_Sign1 must verify with the signing certificate's
// key and sign this image's PCR0. It returns the algorithm name; an
// unsigned image gives ("", nil).
func (f *File) VerifySignature(m *Measurements) (string, error) {
	sig, err := f.Signature()
	if err != nil || sig == nil {
		return "", err
	}
	return sig.Verify(m.PCR0)
}

// measure streams the file through the pipeline: CRC over the header and
// every section header and data in table order, PCR hashes over the data.
func (f *File) measure() (*Measurements, uint32, error) {
	p := newPipeline(nil, int(min(f.Size, pipelineChunkSize)))
	defer p.stop()
	m := newMeasurer()

	hb := f.Header.encode()
	c := p.get()
	c.n, c.crc = copy(c.buf, hb[:crcOffset]), true
	p.send(c)
	for _, s := range f.Sections {
		c := p.get()
		c.n, c.crc = copy(c.buf, sectionHeader{Type: s.Type, Flags: s.Flags, Size: uint64(s.Size)}.encode()), true
		p.send(c)
		pcr0, aux := m.route(s.Type)
		for off := int64(0); off < s.Size; {
			c := p.get()
			n := int64(len(c.buf))
			if s.Size-off < n {
				n = s.Size - off
			}
			k, err := s.ReadAt(c.buf[:n], off)
			if int64(k) != n {
				p.free <- c
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return nil, 0, fmt.Errorf("eif: read %s section %d: %w", s.Type, s.Index, err)
			}
			c.n, c.crc, c.pcr0, c.aux = k, true, pcr0, aux
			p.send(c)
			off += n
		}
	}
	crc, err := p.sync()
	if err != nil {
		return nil, 0, err
	}
	return m.result(), crc, nil
}
