package eif

import (
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"strings"
)

// Options are the header fields of a new image.
type Options struct {
	Arch        Arch
	DefaultMem  uint64 // bytes; 0 means DefaultMemory (1 GiB)
	DefaultCPUs uint64 // 0 means DefaultCPUs (2)
	// Signer, if set, adds a signature section over PCR0 and PCR8.
	Signer *Signer
}

// Writer writes an EIF in one streaming pass. Sections must be added in the
// reference order: kernel, cmdline, metadata, one or more ramdisks (the
// first is the bootstrap ramdisk, measured in PCR1; the others in PCR2).
// Close adds the signature section if a Signer is set and writes the header.
//
// The output must be empty (a new file): the Writer writes every byte of the
// image at its offset with WriteAt, from a worker goroutine, and the header
// last. Always call Close, also after an error, to stop the workers.
type Writer struct {
	out  io.WriterAt
	opts Options
	p    *pipeline
	m    *measurer

	next     int64 // offset of the next section header
	sections []writtenSection
	open     *SectionWriter
	err      error  // sticky
	crc      uint32 // CRC of all section headers and data written so far
	crcLen   uint64 // their length
	closed   bool
	result   *Measurements
}

type writtenSection struct {
	typ  SectionType
	off  int64
	size uint64
}

// NewWriter starts an image on out.
func NewWriter(out io.WriterAt, opts Options) *Writer {
	if opts.DefaultMem == 0 {
		opts.DefaultMem = DefaultMemory
	}
	if opts.DefaultCPUs == 0 {
		opts.DefaultCPUs = DefaultCPUs
	}
	w := &Writer{out: out, opts: opts, p: newPipeline(out, pipelineChunkSize), m: newMeasurer(), next: HeaderSize}
	if opts.Arch&^archMask != 0 {
		w.err = fmt.Errorf("eif: unknown architecture %d", uint16(opts.Arch))
	}
	return w
}

var errClosed = errors.New("eif: writer closed")

// order checks that a section of type t may come next.
func (w *Writer) order(t SectionType) error {
	count := func(t SectionType) int {
		n := 0
		for _, s := range w.sections {
			if s.typ == t {
				n++
			}
		}
		return n
	}
	limit := MaxSections
	if w.opts.Signer != nil {
		limit-- // keep a slot for the signature
	}
	if len(w.sections) >= limit {
		return fmt.Errorf("eif: too many sections (at most %d)", limit)
	}
	want := map[SectionType]int{SectionKernel: 0, SectionCmdline: 1, SectionMetadata: 2}
	switch t {
	case SectionKernel, SectionCmdline, SectionMetadata:
		if len(w.sections) != want[t] {
			return fmt.Errorf("eif: %s section must be section %d (order: kernel, cmdline, metadata, ramdisk...)", t, want[t])
		}
	case SectionRamdisk:
		if count(SectionMetadata) == 0 {
			return errors.New("eif: ramdisk before kernel, cmdline and metadata")
		}
	case SectionSignature:
		return errors.New("eif: the signature section is added by Close (set Options.Signer)")
	default:
		return fmt.Errorf("eif: cannot write a section of type %s", t)
	}
	return nil
}

// CreateSection starts a section of type t; write its data to the returned
// SectionWriter and Close it before starting the next one.
func (w *Writer) CreateSection(t SectionType) (*SectionWriter, error) {
	if w.err != nil {
		return nil, w.err
	}
	if w.closed {
		return nil, errClosed
	}
	if w.open != nil {
		return nil, fmt.Errorf("eif: %s section still open", w.open.typ)
	}
	if err := w.order(t); err != nil {
		return nil, err
	}
	return w.create(t), nil
}

func (w *Writer) create(t SectionType) *SectionWriter {
	pcr0, aux := w.m.route(t)
	sw := &SectionWriter{w: w, typ: t, off: w.next, pcr0: pcr0, aux: aux}
	w.open = sw
	return sw
}

// WriteKernel copies the kernel image from r.
func (w *Writer) WriteKernel(r io.Reader) error { return w.copySection(SectionKernel, r) }

// WriteCmdline writes the kernel command line. It may not contain NUL or
// newline characters: the loaders treat it as a C string and it is measured
// as is.
func (w *Writer) WriteCmdline(cmdline string) error {
	if err := CheckCmdline(cmdline); err != nil {
		return err
	}
	return w.copySection(SectionCmdline, strings.NewReader(cmdline))
}

// CheckCmdline reports whether cmdline can be stored in an image.
func CheckCmdline(cmdline string) error {
	if i := strings.IndexAny(cmdline, "\x00\n\r"); i >= 0 {
		return fmt.Errorf("eif: cmdline has a %q at byte %d (NUL and newlines are not allowed)", cmdline[i], i)
	}
	return nil
}

// WriteMetadata writes the metadata section.
func (w *Writer) WriteMetadata(m *Metadata) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	return w.copySection(SectionMetadata, strings.NewReader(string(b)))
}

// WriteRamdisk copies a ramdisk (a newc cpio archive, possibly gzipped)
// from r.
func (w *Writer) WriteRamdisk(r io.Reader) error { return w.copySection(SectionRamdisk, r) }

func (w *Writer) copySection(t SectionType, r io.Reader) error {
	sw, err := w.CreateSection(t)
	if err != nil {
		return err
	}
	if _, err := sw.ReadFrom(r); err != nil {
		sw.Close()
		return err
	}
	return sw.Close()
}

// Close finishes the image: it writes the signature section (if signing),
// the header, and returns the measurements. The output is complete only if
// Close returns no error.
func (w *Writer) Close() (*Measurements, error) {
	if w.closed {
		if w.err != nil {
			return nil, w.err
		}
		return w.result, nil
	}
	w.closed = true
	defer w.p.stop()
	if w.err == nil && w.open != nil {
		w.err = fmt.Errorf("eif: %s section still open at Close", w.open.typ)
	}
	if w.err == nil {
		w.err = w.complete()
	}
	if w.err != nil {
		return nil, w.err
	}
	if _, err := w.p.sync(); err != nil {
		w.err = err
		return nil, err
	}
	m := w.m.result()
	if s := w.opts.Signer; s != nil {
		sig, err := s.SignatureSection(m.PCR0)
		if err != nil {
			w.err = err
			return nil, err
		}
		sw := w.create(SectionSignature)
		if _, err := sw.Write(sig); err != nil {
			w.err = err
			return nil, err
		}
		if err := sw.Close(); err != nil {
			return nil, err
		}
		m.PCR8 = s.PCR8()
	}
	h := w.header()
	b := h.encode()
	crc := crc32.ChecksumIEEE(b[:crcOffset])
	h.CRC32 = crcCombine(crc, w.crc, w.crcLen)
	if _, err := w.out.WriteAt(h.encode(), 0); err != nil {
		w.err = fmt.Errorf("eif: write header: %w", err)
		return nil, w.err
	}
	w.result = m
	return m, nil
}

// complete checks that the mandatory sections are there.
func (w *Writer) complete() error {
	var ramdisks int
	for _, s := range w.sections {
		if s.typ == SectionRamdisk {
			ramdisks++
		}
	}
	if len(w.sections) < 3 {
		return errors.New("eif: kernel, cmdline and metadata sections are required")
	}
	if ramdisks == 0 {
		return errors.New("eif: at least one ramdisk is required")
	}
	return nil
}

func (w *Writer) header() Header {
	h := Header{
		Version:       Version,
		Flags:         uint16(w.opts.Arch) & archMask,
		DefaultMemory: w.opts.DefaultMem,
		DefaultCPUs:   w.opts.DefaultCPUs,
		NumSections:   uint16(len(w.sections)),
	}
	for i, s := range w.sections {
		h.SectionOffsets[i] = uint64(s.off)
		h.SectionSizes[i] = s.size
	}
	return h
}

// SectionWriter streams one section's data into the image.
type SectionWriter struct {
	w         *Writer
	typ       SectionType
	off       int64 // offset of the section header
	n         int64 // data bytes accepted
	sent      int64 // data bytes handed to the pipeline
	cur       *chunk
	pcr0, aux hash.Hash
	closed    bool
}

func (s *SectionWriter) check() error {
	if s.closed {
		return fmt.Errorf("eif: write to closed %s section", s.typ)
	}
	if s.w.err == nil && s.w.p.failed.Load() {
		if _, err := s.w.p.sync(); err != nil {
			s.w.err = fmt.Errorf("eif: write %s section: %w", s.typ, err)
		}
	}
	return s.w.err
}

func (s *SectionWriter) chunk() *chunk {
	if s.cur == nil {
		s.cur = s.w.p.get()
	}
	return s.cur
}

func (s *SectionWriter) flush() {
	c := s.cur
	if c == nil {
		return
	}
	s.cur = nil
	c.off = s.off + SectionHeaderSize + s.sent
	c.pcr0, c.aux, c.crc = s.pcr0, s.aux, true
	s.sent += int64(c.n)
	s.w.p.send(c)
}

// Write adds p to the section.
func (s *SectionWriter) Write(p []byte) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	n := 0
	for len(p) > 0 {
		c := s.chunk()
		k := copy(c.buf[c.n:], p)
		c.n += k
		n += k
		p = p[k:]
		if c.n == len(c.buf) {
			s.flush()
			if err := s.check(); err != nil {
				s.n += int64(n)
				return n, err
			}
		}
	}
	s.n += int64(n)
	return n, nil
}

// ReadFrom copies r into the section, reading straight into the pipeline's
// buffers.
func (s *SectionWriter) ReadFrom(r io.Reader) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	var total int64
	for {
		c := s.chunk()
		k, err := r.Read(c.buf[c.n:])
		if k < 0 || k > len(c.buf)-c.n {
			return total, errors.New("eif: reader returned an invalid count")
		}
		c.n += k
		total += int64(k)
		s.n += int64(k)
		if c.n == len(c.buf) {
			s.flush()
			if err := s.check(); err != nil {
				return total, err
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Size returns the number of bytes written to the section so far.
func (s *SectionWriter) Size() int64 { return s.n }

// Close ends the section: it writes its section header and makes the
// Writer ready for the next section.
func (s *SectionWriter) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	w := s.w
	w.open = nil
	if w.err != nil {
		if s.cur != nil {
			w.p.free <- s.cur
			s.cur = nil
		}
		return w.err
	}
	s.flush()
	crcData, err := w.p.sync()
	if err != nil {
		w.err = fmt.Errorf("eif: write %s section: %w", s.typ, err)
		return w.err
	}
	sh := sectionHeader{Type: s.typ, Size: uint64(s.n)}.encode()
	c := w.p.get()
	c.n = copy(c.buf, sh)
	c.off = s.off
	w.p.send(c)
	w.crc = crc32.Update(w.crc, crc32.IEEETable, sh)
	w.crc = crcCombine(w.crc, crcData, uint64(s.n))
	w.crcLen += SectionHeaderSize + uint64(s.n)
	w.sections = append(w.sections, writtenSection{typ: s.typ, off: s.off, size: uint64(s.n)})
	w.next = s.off + SectionHeaderSize + s.n
	return nil
}
