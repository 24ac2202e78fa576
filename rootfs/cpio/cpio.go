package cpio

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	ucpio "github.com/u-root/u-root/pkg/cpio"
)

// Unix file type bits of Entry.Mode (mode_t S_IF*).
const (
	TypeMask    = 0o170000
	TypeFIFO    = 0o010000
	TypeChar    = 0o020000
	TypeDir     = 0o040000
	TypeBlock   = 0o060000
	TypeReg     = 0o100000
	TypeSymlink = 0o120000
	TypeSocket  = 0o140000
)

// PermMask is the permission part of Entry.Mode, including the setuid,
// setgid and sticky bits.
const PermMask = 0o7777

// DefaultDirMode is the permission of the parent directories that the
// writer creates for entries whose parents were not added (owner root).
const DefaultDirMode = 0o755

// GzipLevel is the fixed compression level used with Options.Gzip.
const GzipLevel = gzip.DefaultCompression

// MaxSize is the largest content newc can describe (32-bit size field).
const MaxSize = math.MaxUint32

// MaxNameLen is the longest name and symlink target accepted: the kernel's
// initramfs unpacker refuses longer ones (PATH_MAX, 4096 with the NUL).
const MaxNameLen = 4095

// Trailer is the name of the record that ends an archive.
const Trailer = ucpio.Trailer

// Entry is one file of the archive.
type Entry struct {
	// Name is the path inside the archive: slash-separated, relative (no
	// leading "/"), without "", "." or ".." components, without NUL, at
	// most MaxNameLen bytes.
	Name string
	// Mode is the file type (one of the Type* constants) or'ed with the
	// permission bits (PermMask). A hard link (HardLink set) needs no type.
	Mode uint32
	// UID and GID own the file.
	UID, GID uint32
	// Size is the number of bytes Open yields (regular files only).
	Size int64
	// Linkname is a symlink's target, stored as the record's content.
	Linkname string
	// HardLink, when set, makes this entry a hard link to the regular-file
	// entry named HardLink: the two share an inode, and Mode, UID, GID,
	// Size and Open of this entry are ignored. The target may be added
	// before or after this entry, and may itself be a hard link.
	HardLink string
	// RdevMajor and RdevMinor are a device node's device number.
	RdevMajor, RdevMinor uint32
	// Open returns the content of a regular file. It is called once, while
	// Close writes this entry, and the reader is closed right after. It may
	// be nil when Size is 0.
	Open func() (io.ReadCloser, error)
}

// Type is the entry's file type bits.
func (e *Entry) Type() uint32 { return e.Mode & TypeMask }

// Options control the archive encoding.
type Options struct {
	// MTime is the modification time of every record, in seconds since
	// the Unix epoch (0 by default). See SourceDateEpoch.
	MTime int64
	// Gzip compresses the archive (level GzipLevel, no name, mtime 0).
	Gzip bool
}

// SourceDateEpoch returns $SOURCE_DATE_EPOCH as seconds, or 0 when it is
// unset or empty (https://reproducible-builds.org/specs/source-date-epoch/).
func SourceDateEpoch() (int64, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > math.MaxUint32 {
		return 0, fmt.Errorf("cpio: SOURCE_DATE_EPOCH=%q is not a number of seconds in [0, 2^32)", s)
	}
	return v, nil
}

// Writer collects entries and writes them as one archive on Close.
type Writer struct {
	out     io.Writer
	opts    Options
	entries []Entry
	index   map[string]int
	closed  bool
}

// NewWriter returns a Writer that will write the archive to out.
func NewWriter(out io.Writer, opts Options) *Writer {
	return &Writer{out: out, opts: opts, index: make(map[string]int)}
}

// Error is returned for an entry the writer refuses.
type Error struct {
	Name string
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("cpio: %q: %v", e.Name, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Errors callers can test for with errors.Is.
var (
	ErrBadName   = errors.New("invalid name")
	ErrDuplicate = errors.New("duplicate name")
	ErrBadEntry  = errors.New("invalid entry")
	ErrClosed    = errors.New("cpio: writer closed")
)

// ValidName reports whether name is acceptable as Entry.Name.
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLen || name == Trailer || strings.IndexByte(name, 0) >= 0 {
		return false
	}
	for _, c := range strings.Split(name, "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return true
}

// Add records an entry. Only metadata is kept; the content is read in Close.
func (w *Writer) Add(e Entry) error {
	if w.closed {
		return ErrClosed
	}
	if !ValidName(e.Name) {
		return &Error{e.Name, ErrBadName}
	}
	if err := checkEntry(&e); err != nil {
		return &Error{e.Name, err}
	}
	if _, dup := w.index[e.Name]; dup {
		return &Error{e.Name, ErrDuplicate}
	}
	w.index[e.Name] = len(w.entries)
	w.entries = append(w.entries, e)
	return nil
}

func checkEntry(e *Entry) error {
	if e.HardLink != "" {
		if !ValidName(e.HardLink) {
			return fmt.Errorf("%w: hard link target %q", ErrBadName, e.HardLink)
		}
		return nil
	}
	if e.Mode&^(TypeMask|PermMask) != 0 {
		return fmt.Errorf("%w: mode %#o has unknown bits", ErrBadEntry, e.Mode)
	}
	if e.Size != 0 && e.Type() != TypeReg {
		return fmt.Errorf("%w: size %d on a non-regular file", ErrBadEntry, e.Size)
	}
	switch e.Type() {
	case TypeReg:
		if e.Size < 0 || e.Size > MaxSize {
			return fmt.Errorf("%w: size %d out of range [0, %d]", ErrBadEntry, e.Size, int64(MaxSize))
		}
		if e.Size > 0 && e.Open == nil {
			return fmt.Errorf("%w: size %d but no content source", ErrBadEntry, e.Size)
		}
	case TypeSymlink:
		if e.Linkname == "" || len(e.Linkname) > MaxNameLen || strings.IndexByte(e.Linkname, 0) >= 0 {
			return fmt.Errorf("%w: symlink target %q", ErrBadEntry, e.Linkname)
		}
	case TypeDir, TypeChar, TypeBlock, TypeFIFO, TypeSocket:
	default:
		return fmt.Errorf("%w: file type %#o", ErrBadEntry, e.Type())
	}
	if e.Type() != TypeSymlink && e.Linkname != "" {
		return fmt.Errorf("%w: link target on a non-symlink", ErrBadEntry)
	}
	return nil
}

// Less orders names the way the archive does: component by component, so
// that a directory is immediately followed by its subtree ("a", "a/b",
// "a-b").
func Less(a, b string) bool {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return true
		}
		if cb == '/' {
			return false
		}
		return ca < cb
	}
	return len(a) < len(b)
}

// Close writes the archive: every entry in order, then the trailer. It
// does not close the underlying writer. On error the output is incomplete
// and must be discarded.
func (w *Writer) Close() error {
	if w.closed {
		return ErrClosed
	}
	w.closed = true
	if err := w.addParents(); err != nil {
		return err
	}
	// root[i] is the index of the regular file whose inode entry i uses.
	root, err := w.resolveLinks()
	if err != nil {
		return err
	}
	order := make([]int, len(w.entries))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(x, y int) bool { return Less(w.entries[order[x]].Name, w.entries[order[y]].Name) })

	nlink := make([]uint32, len(w.entries))
	for i, e := range w.entries {
		if e.HardLink != "" || e.Type() == TypeReg {
			nlink[root[i]]++
		} else if e.Type() == TypeDir {
			nlink[i] += 2
		}
		if e.Type() == TypeDir && e.HardLink == "" {
			if p := path.Dir(e.Name); p != "." {
				nlink[w.index[p]]++
			}
		}
	}

	var (
		zw  *gzip.Writer
		dst = w.out
	)
	if w.opts.Gzip {
		zw, err = gzip.NewWriterLevel(w.out, GzipLevel)
		if err != nil {
			return err
		}
		dst = zw
	}
	bw := bufio.NewWriterSize(dst, 1<<16)
	rw := ucpio.Newc.Writer(bw)

	ino := make([]uint64, len(w.entries)) // by root index; 0 = not yet written
	next := uint64(1)
	mtime := uint64(w.opts.MTime)
	for _, i := range order {
		e := &w.entries[i]
		r := root[i]
		m := &w.entries[r]
		info := ucpio.Info{
			Name:  e.Name,
			Mode:  uint64(m.Mode),
			UID:   uint64(m.UID),
			GID:   uint64(m.GID),
			NLink: uint64(max(nlink[r], 1)),
			MTime: mtime,
		}
		first := ino[r] == 0
		if first {
			ino[r] = next
			next++
		}
		info.Ino = ino[r]
		rec := ucpio.Record{Info: info}
		switch m.Type() {
		case TypeSymlink:
			rec = ucpio.StaticRecord([]byte(m.Linkname), info)
		case TypeChar, TypeBlock:
			rec.Rmajor, rec.Rminor = uint64(m.RdevMajor), uint64(m.RdevMinor)
		case TypeReg:
			if first && m.Size > 0 {
				if err := writeContent(rw, rec, m); err != nil {
					return &Error{e.Name, err}
				}
				continue
			}
		}
		if err := rw.WriteRecord(rec); err != nil {
			return &Error{e.Name, err}
		}
	}
	if err := ucpio.WriteTrailer(rw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if zw != nil {
		return zw.Close()
	}
	return nil
}

// writeContent writes a regular file record, streaming its content.
func writeContent(rw ucpio.RecordWriter, rec ucpio.Record, e *Entry) error {
	rc, err := e.Open()
	if err != nil {
		return fmt.Errorf("open content: %w", err)
	}
	defer rc.Close()
	rec.FileSize = uint64(e.Size)
	rec.ReaderAt = &sequentialReaderAt{r: rc, size: e.Size}
	if err := rw.WriteRecord(rec); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("content shorter than size %d", e.Size)
		}
		return err
	}
	var one [1]byte
	if n, err := io.ReadFull(rc, one[:]); n != 0 {
		return fmt.Errorf("content longer than size %d", e.Size)
	} else if err != io.EOF {
		return fmt.Errorf("read content: %w", err)
	}
	return rc.Close()
}

// sequentialReaderAt serves u-root's writer, which reads a record's content
// with ReadAt at increasing offsets, from a plain stream of known size.
type sequentialReaderAt struct {
	r    io.Reader
	off  int64
	size int64
}

func (s *sequentialReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off != s.off {
		return 0, fmt.Errorf("cpio: non-sequential read at %d, want %d", off, s.off)
	}
	rem := s.size - s.off
	if rem <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := io.ReadFull(s.r, p)
	s.off += int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// addParents creates the missing parent directories of every entry.
func (w *Writer) addParents() error {
	for i := 0; i < len(w.entries); i++ {
		name := w.entries[i].Name
		for p := path.Dir(name); p != "."; p = path.Dir(p) {
			j, ok := w.index[p]
			if !ok {
				w.index[p] = len(w.entries)
				w.entries = append(w.entries, Entry{Name: p, Mode: TypeDir | DefaultDirMode})
				continue
			}
			if pe := &w.entries[j]; pe.HardLink != "" || pe.Type() != TypeDir {
				return &Error{name, fmt.Errorf("%w: parent %q is not a directory", ErrBadEntry, p)}
			}
			break // p's own parents are handled when p's turn comes
		}
	}
	return nil
}

// resolveLinks maps every entry to the entry holding its inode: itself, or
// for a hard link the regular file at the end of its chain.
func (w *Writer) resolveLinks() ([]int, error) {
	root := make([]int, len(w.entries))
	for i := range w.entries {
		j := i
		for steps := 0; w.entries[j].HardLink != ""; steps++ {
			if steps > len(w.entries) {
				return nil, &Error{w.entries[i].Name, fmt.Errorf("%w: hard link loop", ErrBadEntry)}
			}
			t := w.entries[j].HardLink
			k, ok := w.index[t]
			if !ok {
				return nil, &Error{w.entries[i].Name, fmt.Errorf("%w: hard link target %q not in archive", ErrBadEntry, t)}
			}
			j = k
		}
		if j != i && w.entries[j].Type() != TypeReg {
			return nil, &Error{w.entries[i].Name, fmt.Errorf("%w: hard link to %q, not a regular file", ErrBadEntry, w.entries[j].Name)}
		}
		root[i] = j
	}
	return root, nil
}

// WriteArchive writes entries as one archive to out.
func WriteArchive(out io.Writer, opts Options, entries ...Entry) error {
	w := NewWriter(out, opts)
	for _, e := range entries {
		if err := w.Add(e); err != nil {
			return err
		}
	}
	return w.Close()
}

// File is a regular file with the given permissions and content, owned by root.
func File(name string, perm uint32, data []byte) Entry {
	return Entry{
		Name: name, Mode: TypeReg | perm&PermMask, Size: int64(len(data)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
	}
}

// HostFile is a regular file whose content is read from the host file at
// hostPath when the archive is written (its size is taken now). Only the
// content is taken from the host: permissions are perm, owner root.
func HostFile(name string, perm uint32, hostPath string) (Entry, error) {
	fi, err := os.Stat(hostPath)
	if err != nil {
		return Entry{}, err
	}
	if !fi.Mode().IsRegular() {
		return Entry{}, fmt.Errorf("cpio: %s is not a regular file", hostPath)
	}
	return Entry{
		Name: name, Mode: TypeReg | perm&PermMask, Size: fi.Size(),
		Open: func() (io.ReadCloser, error) { return os.Open(hostPath) },
	}, nil
}

// Dir is a directory owned by root.
func Dir(name string, perm uint32) Entry {
	return Entry{Name: name, Mode: TypeDir | perm&PermMask}
}

// Symlink is a symbolic link (mode 0777) owned by root.
func Symlink(name, target string) Entry {
	return Entry{Name: name, Mode: TypeSymlink | 0o777, Linkname: target}
}

// HardLink is a hard link to the regular-file entry target.
func HardLink(name, target string) Entry {
	return Entry{Name: name, HardLink: target}
}

// CharDev is a character device node owned by root.
func CharDev(name string, perm, major, minor uint32) Entry {
	return Entry{Name: name, Mode: TypeChar | perm&PermMask, RdevMajor: major, RdevMinor: minor}
}
