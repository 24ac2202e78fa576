// Package ramdisk reads EIF ramdisk sections — Linux initramfs images: newc
// cpio archives ("070701", or "070702" with checksums), each possibly gzip
// compressed, possibly several concatenated with zero padding between them,
// the way the kernel unpacks them — as a stream, for inspection and
// comparison (qtenclave diff).
//
// Walk calls a function for every record with its metadata and the SHA-256
// of its content; no content is kept in memory (symlink targets excepted),
// so memory grows with the number of entries only. Index collects the
// records by path; Diff compares two indexes.
//
// Limits: a name is at most 4096 bytes, a symlink target at most 4096
// bytes; anything else is refused as malformed (ErrFormat).
package ramdisk

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"

	"github.com/qtenclave/enclave/rootfs/cpio"
)

// ErrFormat matches every error about malformed archive data.
var ErrFormat = errors.New("ramdisk: malformed archive")

const (
	headerSize = 110
	maxName    = 4096
	maxLink    = 4096
	trailer    = "TRAILER!!!"
)

// File type bits of Entry.Mode: the same as the writer's (package
// rootfs/cpio), which is where the archives come from.
const (
	TypeMask    = cpio.TypeMask
	TypeReg     = cpio.TypeReg
	TypeDir     = cpio.TypeDir
	TypeSymlink = cpio.TypeSymlink
	TypeChar    = cpio.TypeChar
	TypeBlock   = cpio.TypeBlock
	TypeFIFO    = cpio.TypeFIFO
	TypeSocket  = cpio.TypeSocket
)

// Entry is one record of an archive.
type Entry struct {
	Name      string // as stored, without a leading "/" or "./"
	Mode      uint32 // type and permission bits
	UID, GID  uint32
	NLink     uint32
	MTime     int64
	Size      int64 // content size as stored (0 for all but one of a set of hard links)
	Ino       uint32
	RdevMajor uint32
	RdevMinor uint32
	Linkname  string   // symlink target
	SHA256    [32]byte // of the content as stored (regular files)
	// Archive is the index of the archive the record came from (0-based,
	// counting concatenated archives in the section).
	Archive int
}

// Type returns the file type bits.
func (e *Entry) Type() uint32 { return e.Mode & TypeMask }

// TypeName returns "file", "dir", "symlink", "char", "block", "fifo",
// "socket" or "unknown".
func (e *Entry) TypeName() string {
	switch e.Type() {
	case TypeReg:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	case TypeChar:
		return "char"
	case TypeBlock:
		return "block"
	case TypeFIFO:
		return "fifo"
	case TypeSocket:
		return "socket"
	}
	return "unknown"
}

func malformed(off int64, format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrFormat, off, fmt.Sprintf(format, args...))
}

// countingReader tracks the offset in the current (decompressed) stream for
// 4-byte alignment.
type countingReader struct {
	r   *bufio.Reader
	off int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.off += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.off++
	}
	return b, err
}

func (c *countingReader) skip(n int64) error {
	k, err := io.CopyN(io.Discard, c, n)
	if k != n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

func (c *countingReader) align() error {
	if pad := (4 - c.off%4) % 4; pad > 0 {
		return c.skip(pad)
	}
	return nil
}

// Walk reads every record of the ramdisk in r and calls fn with it, in
// archive order (the trailers are not reported). It stops at the first
// error, from the data or from fn.
func Walk(r io.Reader, fn func(*Entry) error) error {
	return walk(r, &walker{fn: fn})
}

// walker is what a walk does with each record: capture, when set, may
// return a writer that also receives the record's content.
type walker struct {
	fn      func(*Entry) error
	capture func(*Entry) io.Writer
}

// ReadFile returns the content of the regular file name (as stored,
// without a leading "/" or "./") in the archives r holds: its last record,
// as the kernel's unpacker would leave it. It reads all of r; a record of
// that name over max bytes, or not a regular file, is refused.
func ReadFile(r io.Reader, name string, max int64) ([]byte, error) {
	var (
		buf   *bytes.Buffer
		found bool
	)
	err := walk(r, &walker{
		capture: func(e *Entry) io.Writer {
			if e.Name == name && e.Type() == TypeReg && e.Size <= max {
				buf = new(bytes.Buffer)
				return buf
			}
			return nil
		},
		fn: func(e *Entry) error {
			if e.Name != name {
				return nil
			}
			switch {
			case e.Type() != TypeReg:
				return fmt.Errorf("%w: %s is not a regular file", ErrFormat, name)
			case e.Size > max:
				return fmt.Errorf("%w: %s is %d bytes, more than %d", ErrFormat, name, e.Size, max)
			}
			found = true
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	return buf.Bytes(), nil
}

func walk(r io.Reader, w *walker) error {
	br := bufio.NewReaderSize(r, 64<<10)
	archive := 0
	for {
		// Between archives: zero padding (the kernel skips it in 4-byte
		// steps), then either the end, a gzip member, or a cpio archive.
		if err := skipZeros(br); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		magic, err := br.Peek(2)
		if err != nil {
			return malformed(0, "trailing byte after archive %d", archive)
		}
		if magic[0] == 0x1f && magic[1] == 0x8b {
			zr, err := gzip.NewReader(br)
			if err != nil {
				return fmt.Errorf("%w: gzip member %d: %v", ErrFormat, archive, err)
			}
			zr.Multistream(false)
			// A gzip member may hold several archives itself.
			n, err := walkStream(&countingReader{r: bufio.NewReaderSize(zr, 64<<10)}, archive, w)
			if err != nil {
				return err
			}
			archive += n
			// Drain the member so that the next one starts right after it.
			if _, err := io.Copy(io.Discard, zr); err != nil {
				return fmt.Errorf("%w: gzip member: %v", ErrFormat, err)
			}
			continue
		}
		cr := &countingReader{r: br}
		if err := walkArchive(cr, archive, w); err != nil {
			return err
		}
		archive++
	}
}

// skipZeros consumes NUL bytes; it returns io.EOF at the end of the input.
func skipZeros(br *bufio.Reader) error {
	for {
		b, err := br.ReadByte()
		if err != nil {
			return err
		}
		if b != 0 {
			return br.UnreadByte()
		}
	}
}

// walkStream reads one or more concatenated archives (with zero padding)
// from a decompressed stream until its end; it returns how many it read.
func walkStream(cr *countingReader, first int, w *walker) (int, error) {
	n := 0
	for {
		for {
			b, err := cr.ReadByte()
			if err == io.EOF {
				if n == 0 {
					return 0, malformed(cr.off, "empty compressed stream")
				}
				return n, nil
			}
			if err != nil {
				return n, fmt.Errorf("%w: %v", ErrFormat, err)
			}
			if b != 0 {
				cr.r.UnreadByte()
				cr.off--
				break
			}
		}
		if err := walkArchive(cr, first+n, w); err != nil {
			return n, err
		}
		n++
	}
}

// walkArchive reads records up to and including a trailer.
func walkArchive(cr *countingReader, archive int, w *walker) error {
	var hdr [headerSize]byte
	for {
		start := cr.off
		if _, err := io.ReadFull(cr, hdr[:]); err != nil {
			return malformed(start, "short record header: %v", err)
		}
		magic := string(hdr[:6])
		if magic != "070701" && magic != "070702" {
			return malformed(start, "magic %q, want 070701 (newc)", magic)
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return malformed(start, "field %d %q is not hex", i, hdr[6+8*i:14+8*i])
			}
			f[i] = uint32(v)
		}
		e := &Entry{
			Ino: f[0], Mode: f[1], UID: f[2], GID: f[3], NLink: f[4], MTime: int64(f[5]),
			Size: int64(f[6]), RdevMajor: f[9], RdevMinor: f[10], Archive: archive,
		}
		nameSize := f[11]
		if nameSize == 0 || nameSize > maxName+1 {
			return malformed(start, "name size %d", nameSize)
		}
		name := make([]byte, nameSize)
		if _, err := io.ReadFull(cr, name); err != nil {
			return malformed(start, "short name: %v", err)
		}
		if name[nameSize-1] != 0 {
			return malformed(start, "name is not NUL-terminated")
		}
		e.Name = cleanName(string(name[:nameSize-1]))
		if err := cr.align(); err != nil {
			return malformed(start, "short padding: %v", err)
		}
		if e.Name == trailer {
			return nil
		}
		h := sha256.New()
		var dst io.Writer = h
		if w.capture != nil {
			if cw := w.capture(e); cw != nil {
				dst = io.MultiWriter(h, cw)
			}
		}
		var link []byte
		if e.Type() == TypeSymlink {
			if e.Size > maxLink {
				return malformed(start, "symlink %q target of %d bytes", e.Name, e.Size)
			}
			link = make([]byte, e.Size)
			if _, err := io.ReadFull(cr, link); err != nil {
				return malformed(start, "short symlink target: %v", err)
			}
			h.Write(link)
			e.Linkname = string(link)
		} else if k, err := io.CopyN(dst, cr, e.Size); k != e.Size {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return malformed(start, "%q: short content (%d of %d bytes): %v", e.Name, k, e.Size, err)
		}
		if err := cr.align(); err != nil {
			return malformed(start, "short padding: %v", err)
		}
		h.Sum(e.SHA256[:0])
		if err := w.fn(e); err != nil {
			return err
		}
	}
}

// cleanName drops a leading "/" or "./", as the kernel's unpacker treats
// them as relative to the root.
func cleanName(s string) string {
	for {
		switch {
		case len(s) > 1 && s[0] == '/':
			s = s[1:]
		case len(s) > 2 && s[:2] == "./":
			s = s[2:]
		default:
			return s
		}
	}
}
