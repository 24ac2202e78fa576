package ramdisk

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
)

// MaxIndexBytes bounds what one Index holds: each record costs its name,
// its link target and entryCost bytes (the entry and its map slot). A
// ramdisk over it is ErrTooLarge, found before memory grows past it, so
// comparing two ramdisks needs at most about twice this much.
const MaxIndexBytes = 64 << 20

// entryCost is the memory of one indexed entry besides its strings.
const entryCost = 192

// ErrTooLarge is a ramdisk whose index would exceed MaxIndexBytes.
var ErrTooLarge = errors.New("ramdisk: too many or too long names to index")

// Index is a ramdisk's records by path. When a path occurs more than once
// the last record wins, as when the kernel unpacks the archive.
type Index struct {
	Entries  map[string]*Entry
	Archives int // number of concatenated archives
	Records  int // number of records, trailers excluded
}

// ReadIndex walks the ramdisk in r. Hard links (regular files of one archive
// sharing an inode) all get the content hash and size of the one that
// carries the data, so that they compare by content.
func ReadIndex(r io.Reader) (*Index, error) {
	idx := &Index{Entries: map[string]*Entry{}}
	type key struct {
		archive int
		ino     uint32
	}
	links := map[key][]*Entry{}
	var size int64
	err := Walk(r, func(e *Entry) error {
		size += int64(len(e.Name)+len(e.Linkname)) + entryCost
		if size > MaxIndexBytes {
			return fmt.Errorf("%w: more than %d MiB after %d records (names and records); compare the sections' digests instead",
				ErrTooLarge, MaxIndexBytes>>20, idx.Records)
		}
		idx.Records++
		if e.Archive+1 > idx.Archives {
			idx.Archives = e.Archive + 1
		}
		idx.Entries[e.Name] = e
		if e.Type() == TypeReg && e.NLink > 1 {
			k := key{e.Archive, e.Ino}
			links[k] = append(links[k], e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, group := range links {
		var data *Entry
		for _, e := range group {
			if e.Size > 0 {
				data = e
			}
		}
		if data == nil {
			continue
		}
		for _, e := range group {
			e.Size, e.SHA256 = data.Size, data.SHA256
		}
	}
	return idx, nil
}

// Paths returns the indexed paths, sorted.
func (x *Index) Paths() []string {
	out := make([]string, 0, len(x.Entries))
	for p := range x.Entries {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Change is one difference between two indexes.
type Change struct {
	Path   string        `json:"path"`
	Kind   string        `json:"kind"`             // "added", "removed" or "changed"
	Fields []FieldChange `json:"fields,omitempty"` // for "changed"
}

// FieldChange is a field that differs: its name and both values as text.
type FieldChange struct {
	Field string `json:"field"` // type, mode, uid, gid, mtime, size, sha256, link, rdev, nlink
	A     string `json:"a"`
	B     string `json:"b"`
}

// Diff lists what differs from a to b, sorted by path. Inode numbers are not
// compared (they shift whenever an entry is added before others).
func Diff(a, b *Index) []Change {
	var out []Change
	for _, p := range a.Paths() {
		ea := a.Entries[p]
		eb, ok := b.Entries[p]
		if !ok {
			out = append(out, Change{Path: p, Kind: "removed"})
			continue
		}
		if f := compare(ea, eb); len(f) > 0 {
			out = append(out, Change{Path: p, Kind: "changed", Fields: f})
		}
	}
	for _, p := range b.Paths() {
		if _, ok := a.Entries[p]; !ok {
			out = append(out, Change{Path: p, Kind: "added"})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func compare(a, b *Entry) []FieldChange {
	var f []FieldChange
	add := func(name, x, y string) {
		if x != y {
			f = append(f, FieldChange{name, x, y})
		}
	}
	u := func(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
	add("type", a.TypeName(), b.TypeName())
	add("mode", fmt.Sprintf("%04o", a.Mode&0o7777), fmt.Sprintf("%04o", b.Mode&0o7777))
	add("uid", u(a.UID), u(b.UID))
	add("gid", u(a.GID), u(b.GID))
	add("mtime", strconv.FormatInt(a.MTime, 10), strconv.FormatInt(b.MTime, 10))
	switch {
	case a.Type() == TypeSymlink || b.Type() == TypeSymlink:
		add("link", a.Linkname, b.Linkname)
	case a.Type() == TypeReg || b.Type() == TypeReg:
		add("size", strconv.FormatInt(a.Size, 10), strconv.FormatInt(b.Size, 10))
		add("sha256", hex.EncodeToString(a.SHA256[:]), hex.EncodeToString(b.SHA256[:]))
		add("nlink", u(a.NLink), u(b.NLink))
	case a.Type() == TypeChar || a.Type() == TypeBlock || b.Type() == TypeChar || b.Type() == TypeBlock:
		add("rdev", u(a.RdevMajor)+":"+u(a.RdevMinor), u(b.RdevMajor)+":"+u(b.RdevMinor))
	}
	return f
}
