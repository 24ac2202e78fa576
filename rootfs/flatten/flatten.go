package flatten

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"

	"github.com/qtenclave/enclave/rootfs/cpio"
)

// Layer identifies a layer in errors.
type Layer struct {
	Index  int    // position, 0 = bottom layer
	Digest string // e.g. "sha256:…"; may be empty
}

func (l Layer) String() string {
	if l.Digest == "" {
		return fmt.Sprintf("layer %d", l.Index)
	}
	return fmt.Sprintf("layer %d (%s)", l.Index, l.Digest)
}

// Error is a refused or unreadable layer entry.
type Error struct {
	Layer Layer
	Entry string // the entry's name as found in the tar; "" when the tar itself is bad
	Err   error
}

func (e *Error) Error() string {
	if e.Entry == "" {
		return fmt.Sprintf("%v: %v", e.Layer, e.Err)
	}
	return fmt.Sprintf("%v: entry %q: %v", e.Layer, e.Entry, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Reasons for refusing an entry.
var (
	ErrBadName       = errors.New("invalid name")
	ErrAbsolute      = errors.New("absolute path")
	ErrDotDot        = errors.New(`path has a ".." component`)
	ErrSymlinkParent = errors.New("parent is a symlink (write through a symlink)")
	ErrNotDir        = errors.New("parent is not a directory")
	ErrLinkOutside   = errors.New("hard link target outside the root")
	ErrLinkMissing   = errors.New("hard link target does not exist")
	ErrLinkType      = errors.New("hard link to a directory")
	ErrWhiteout      = errors.New("invalid whiteout")
	ErrType          = errors.New("unsupported entry")
	ErrTooLarge      = errors.New("file too large")
	ErrTar           = errors.New("corrupt tar stream")
)

// MaxNameLen is the longest entry name or symlink target accepted, leaving
// room under cpio.MaxNameLen for a prefix such as "rootfs/".
const MaxNameLen = 4000

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	opaqueMarker   = ".wh..wh..opq"
)

type kind uint8

const (
	kindDir kind = iota
	kindReg
	kindSymlink
	kindDropped
)

type node struct {
	kind     kind
	mode     uint32 // permission bits (dirs, symlinks)
	uid, gid uint32
	link     string // symlink target
	ino      *inode // regular files
	children map[string]*node
	// seen is the last layer (1-based) that created or touched this node or
	// anything below it; 0 means only lower layers. Whiteouts and opaque
	// markers of layer L remove exactly what has seen < L.
	seen int
}

type inode struct {
	mode     uint32 // permission bits
	uid, gid uint32
	size     int64
	off      int64 // offset in the spool
	first    string
}

// Options configure a Tree.
type Options struct {
	// TempDir holds the spool file (default os.TempDir()).
	TempDir string
}

// Stats count what the tree holds and what the layers did.
type Stats struct {
	Layers    int
	Files     int   // regular-file inodes
	HardLinks int   // names beyond the first of a regular-file inode
	Dirs      int   // directories, the root excluded
	Symlinks  int   //
	Bytes     int64 // content of the regular files in the tree
	Spooled   int64 // content of every regular file of every layer
	Dropped   int   // device nodes and FIFOs (and hard links to them) dropped
	Whiteouts int   // whiteouts and opaque markers applied
}

// Tree is the merged filesystem of the layers applied so far.
type Tree struct {
	root    *node
	layers  int
	spool   *os.File
	off     int64
	dropped int
	whiteo  int
}

// New returns an empty tree (a root directory 0755 root:root).
func New(opts Options) (*Tree, error) {
	f, err := os.CreateTemp(opts.TempDir, "rootfs-spool-*")
	if err != nil {
		return nil, fmt.Errorf("flatten: spool: %w", err)
	}
	// Unlinked at once: the data lives until the file is closed, and no
	// crash can leave it behind.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("flatten: spool: %w", err)
	}
	return &Tree{root: newDir(0o755, 0, 0, 0), spool: f}, nil
}

func newDir(mode, uid, gid uint32, seen int) *node {
	return &node{kind: kindDir, mode: mode, uid: uid, gid: gid, children: map[string]*node{}, seen: seen}
}

// Close releases the spool. Entries handed out by AddTo cannot be read after.
func (t *Tree) Close() error {
	if t.spool == nil {
		return nil
	}
	err := t.spool.Close()
	t.spool = nil
	return err
}

// Apply merges one layer, an uncompressed tar stream, on top of the tree.
// On error the tree is left partly changed and should be discarded.
func (t *Tree) Apply(l Layer, r io.Reader) error {
	if t.spool == nil {
		return errors.New("flatten: tree closed")
	}
	t.layers++
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			return &Error{Layer: l, Err: fmt.Errorf("%w: %v", ErrTar, err)}
		}
		if err := t.apply(hdr, tr); err != nil {
			return &Error{Layer: l, Entry: hdr.Name, Err: err}
		}
	}
}

// clean validates and normalises an entry name: "" is the root.
func clean(name string) (string, error) {
	if name == "" || len(name) > MaxNameLen || strings.IndexByte(name, 0) >= 0 {
		return "", ErrBadName
	}
	if name[0] == '/' {
		return "", ErrAbsolute
	}
	var parts []string
	for _, c := range strings.Split(name, "/") {
		switch c {
		case "..":
			return "", ErrDotDot
		case "", ".":
		default:
			parts = append(parts, c)
		}
	}
	return strings.Join(parts, "/"), nil
}

func split(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

func (t *Tree) apply(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	p, err := clean(hdr.Name)
	if err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeGNUSparse || hasSparse(hdr) {
		return fmt.Errorf("%w: sparse file", ErrType)
	}
	dir, base := split(p)
	if strings.HasPrefix(dir, whiteoutMeta) || strings.Contains(dir, "/"+whiteoutMeta) {
		return nil // inside aufs metadata (.wh..wh.plnk/...)
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		return t.whiteout(dir, base)
	}
	if p == "" {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: the root must be a directory", ErrType)
		}
		return t.setMeta(t.root, hdr)
	}
	parent, err := t.mkParents(dir)
	if err != nil {
		return err
	}
	old := parent.children[base]
	var n *node
	switch hdr.Typeflag {
	case tar.TypeDir:
		if old != nil && old.kind == kindDir {
			old.seen = t.layers
			return t.setMeta(old, hdr)
		}
		n = newDir(0, 0, 0, t.layers)
		if err := t.setMeta(n, hdr); err != nil {
			return err
		}
	case tar.TypeReg, tar.TypeCont: // archive/tar turns the legacy TypeRegA into TypeReg or TypeDir
		ino, err := t.spoolFile(hdr, r)
		if err != nil {
			return err
		}
		n = &node{kind: kindReg, ino: ino, seen: t.layers}
	case tar.TypeSymlink:
		if hdr.Linkname == "" || len(hdr.Linkname) > MaxNameLen || strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return fmt.Errorf("%w: symlink target %q", ErrBadName, hdr.Linkname)
		}
		n = &node{kind: kindSymlink, link: hdr.Linkname, seen: t.layers}
		if err := t.setMeta(n, hdr); err != nil {
			return err
		}
		n.mode = 0o777 // a symlink's permissions mean nothing on Linux
	case tar.TypeLink:
		target, err := t.linkTarget(hdr.Linkname)
		if err != nil {
			return err
		}
		switch target.kind {
		case kindReg:
			n = &node{kind: kindReg, ino: target.ino, seen: t.layers}
		case kindSymlink:
			c := *target
			c.seen = t.layers
			n = &c
		case kindDropped:
			t.dropped++
			n = &node{kind: kindDropped, seen: t.layers}
		default:
			return fmt.Errorf("%w: %q", ErrLinkType, hdr.Linkname)
		}
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		t.dropped++
		n = &node{kind: kindDropped, seen: t.layers}
	default:
		return fmt.Errorf("%w: tar type %q", ErrType, hdr.Typeflag)
	}
	parent.children[base] = n
	return nil
}

func hasSparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

func (t *Tree) setMeta(n *node, hdr *tar.Header) error {
	if hdr.Uid < 0 || hdr.Gid < 0 || int64(hdr.Uid) > math.MaxUint32 || int64(hdr.Gid) > math.MaxUint32 {
		return fmt.Errorf("%w: uid/gid %d/%d out of range", ErrBadName, hdr.Uid, hdr.Gid)
	}
	n.mode = uint32(hdr.Mode) & cpio.PermMask
	n.uid, n.gid = uint32(hdr.Uid), uint32(hdr.Gid)
	return nil
}

func (t *Tree) spoolFile(hdr *tar.Header, r io.Reader) (*inode, error) {
	if hdr.Size < 0 || hdr.Size > cpio.MaxSize {
		return nil, fmt.Errorf("%w: %d bytes (newc limit %d)", ErrTooLarge, hdr.Size, int64(cpio.MaxSize))
	}
	var meta node
	if err := t.setMeta(&meta, hdr); err != nil {
		return nil, err
	}
	ino := &inode{mode: meta.mode, uid: meta.uid, gid: meta.gid, size: hdr.Size, off: t.off}
	if hdr.Size > 0 {
		n, err := io.Copy(t.spool, io.LimitReader(r, hdr.Size))
		t.off += n
		if err != nil {
			return nil, fmt.Errorf("%w: content: %v", ErrTar, err)
		}
		if n != hdr.Size {
			return nil, fmt.Errorf("%w: content: %d of %d bytes", ErrTar, n, hdr.Size)
		}
	}
	return ino, nil
}

// mkParents walks to directory p, creating missing directories and marking
// the path as seen by the current layer.
func (t *Tree) mkParents(p string) (*node, error) {
	cur := t.root
	cur.seen = t.layers
	if p == "" {
		return cur, nil
	}
	for _, c := range strings.Split(p, "/") {
		next := cur.children[c]
		switch {
		case next == nil:
			next = newDir(0o755, 0, 0, t.layers)
			cur.children[c] = next
		case next.kind == kindSymlink:
			return nil, ErrSymlinkParent
		case next.kind != kindDir:
			return nil, ErrNotDir
		}
		next.seen = t.layers
		cur = next
	}
	return cur, nil
}

// lookup finds p without creating or following anything. It returns the
// node (nil if absent) and the error for a symlink or non-directory on
// the way.
func (t *Tree) lookup(p string) (*node, error) {
	cur := t.root
	if p == "" {
		return cur, nil
	}
	parts := strings.Split(p, "/")
	for i, c := range parts {
		next := cur.children[c]
		if next == nil {
			return nil, nil
		}
		if i == len(parts)-1 {
			return next, nil
		}
		switch next.kind {
		case kindSymlink:
			return nil, ErrSymlinkParent
		case kindDir:
		default:
			return nil, ErrNotDir
		}
		cur = next
	}
	return cur, nil
}

func (t *Tree) linkTarget(name string) (*node, error) {
	p, err := clean(name)
	switch {
	case errors.Is(err, ErrAbsolute) || errors.Is(err, ErrDotDot):
		return nil, fmt.Errorf("%w: %q (%v)", ErrLinkOutside, name, err)
	case err != nil:
		return nil, fmt.Errorf("%w: hard link target %q", err, name)
	}
	n, err := t.lookup(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrLinkMissing, name, err)
	}
	if n == nil {
		return nil, fmt.Errorf("%w: %q", ErrLinkMissing, name)
	}
	return n, nil
}

func (t *Tree) whiteout(dir, base string) error {
	if base == opaqueMarker {
		d, err := t.mkParents(dir)
		if err != nil {
			return err
		}
		t.whiteo++
		t.removeLower(d)
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // aufs metadata (.wh..wh.plnk and the like)
	}
	victim := strings.TrimPrefix(base, whiteoutPrefix)
	if victim == "" || victim == "." || victim == ".." {
		return fmt.Errorf("%w: whiteout of %q", ErrWhiteout, victim)
	}
	d, err := t.lookup(dir)
	if err != nil {
		return err
	}
	if d == nil {
		return nil // nothing below to hide
	}
	if d.kind == kindSymlink {
		return ErrSymlinkParent
	}
	if d.kind != kindDir {
		return ErrNotDir
	}
	t.whiteo++
	v := d.children[victim]
	switch {
	case v == nil:
	case v.seen < t.layers:
		delete(d.children, victim)
	default:
		// Created or touched by this very layer: only its lower parts go.
		t.removeLower(v)
	}
	return nil
}

// removeLower removes everything under directory d that only lower layers
// contributed.
func (t *Tree) removeLower(d *node) {
	for name, c := range d.children {
		if c.seen < t.layers {
			delete(d.children, name)
		} else if c.kind == kindDir {
			t.removeLower(c)
		}
	}
}

// Lookup reports the file type (a cpio.Type* value) at p ("a/b", "" for the
// root) and whether it exists; symlinks are not followed.
func (t *Tree) Lookup(p string) (typ uint32, ok bool) {
	n, err := t.lookup(p)
	if err != nil || n == nil || n.kind == kindDropped {
		return 0, false
	}
	switch n.kind {
	case kindDir:
		return cpio.TypeDir, true
	case kindReg:
		return cpio.TypeReg, true
	default:
		return cpio.TypeSymlink, true
	}
}

// MkdirAll creates the missing directories of p with permission perm,
// owned by root, and reports whether it created any. It leaves the tree
// alone (false, nil) when a component of p exists and is not a directory.
func (t *Tree) MkdirAll(p string, perm uint32) (bool, error) {
	p = strings.TrimLeft(p, "/")
	if p == "" {
		return false, nil
	}
	p, err := clean(p)
	if err != nil {
		return false, fmt.Errorf("flatten: mkdir %q: %w", p, err)
	}
	cur, created := t.root, false
	for _, c := range strings.Split(p, "/") {
		next := cur.children[c]
		if next == nil {
			next = newDir(perm&cpio.PermMask, 0, 0, t.layers)
			cur.children[c] = next
			created = true
		} else if next.kind != kindDir {
			return false, nil
		}
		cur = next
	}
	return created, nil
}

// Root returns the root directory's permission bits and owner.
func (t *Tree) Root() (perm, uid, gid uint32) {
	return t.root.mode, t.root.uid, t.root.gid
}

// AddTo adds every entry of the tree, the root excluded, to w with names
// prefixed by prefix + "/" (no prefix when empty), and returns the tree's
// statistics. Regular-file contents are read from the spool when w is
// closed, so the tree must stay open until then.
func (t *Tree) AddTo(w *cpio.Writer, prefix string) (Stats, error) {
	st := Stats{Layers: t.layers, Spooled: t.off, Dropped: t.dropped, Whiteouts: t.whiteo}
	if t.spool == nil {
		return st, errors.New("flatten: tree closed")
	}
	for n := range t.allInodes() {
		n.first = ""
	}
	var walk func(d *node, dir string) error
	walk = func(d *node, dir string) error {
		names := make([]string, 0, len(d.children))
		for name := range d.children {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			n := d.children[name]
			p := name
			if dir != "" {
				p = dir + "/" + name
			}
			e := cpio.Entry{Name: p, UID: n.uid, GID: n.gid}
			switch n.kind {
			case kindDropped:
				continue
			case kindDir:
				st.Dirs++
				e.Mode = cpio.TypeDir | n.mode
			case kindSymlink:
				st.Symlinks++
				e.Mode = cpio.TypeSymlink | n.mode
				e.Linkname = n.link
			case kindReg:
				ino := n.ino
				if ino.first != "" {
					st.HardLinks++
					e = cpio.Entry{Name: p, HardLink: ino.first}
					break
				}
				ino.first = p
				st.Files++
				st.Bytes += ino.size
				e.Mode, e.UID, e.GID, e.Size = cpio.TypeReg|ino.mode, ino.uid, ino.gid, ino.size
				if ino.size > 0 {
					spool, off, size := t.spool, ino.off, ino.size
					e.Open = func() (io.ReadCloser, error) {
						return io.NopCloser(io.NewSectionReader(spool, off, size)), nil
					}
				}
			}
			if err := w.Add(e); err != nil {
				return err
			}
			if n.kind == kindDir {
				if err := walk(n, p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return st, walk(t.root, prefix)
}

// allInodes yields the inodes of the tree's regular files.
func (t *Tree) allInodes() func(func(*inode) bool) {
	return func(yield func(*inode) bool) {
		var rec func(d *node) bool
		rec = func(d *node) bool {
			for _, n := range d.children {
				switch n.kind {
				case kindReg:
					if !yield(n.ino) {
						return false
					}
				case kindDir:
					if !rec(n) {
						return false
					}
				}
			}
			return true
		}
		rec(t.root)
	}
}
