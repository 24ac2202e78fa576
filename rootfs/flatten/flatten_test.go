package flatten

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/qtenclave/enclave/rootfs/cpio"
	"github.com/qtenclave/enclave/rootfs/internal/cpiotest"
)

// Tar entry constructors for hand-made layers.
type te = tar.Header

func file(name, data string) tarEntry { return fileM(name, 0o644, 0, 0, data) }
func fileM(name string, mode int64, uid, gid int, data string) tarEntry {
	return tarEntry{te{Name: name, Typeflag: tar.TypeReg, Mode: mode, Uid: uid, Gid: gid, Size: int64(len(data))}, data}
}
func dir(name string) tarEntry { return dirM(name, 0o755, 0, 0) }
func dirM(name string, mode int64, uid, gid int) tarEntry {
	return tarEntry{te{Name: name, Typeflag: tar.TypeDir, Mode: mode, Uid: uid, Gid: gid}, ""}
}
func sym(name, target string) tarEntry {
	return tarEntry{te{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}, ""}
}
func hard(name, target string) tarEntry {
	return tarEntry{te{Name: name, Typeflag: tar.TypeLink, Linkname: target, Mode: 0o644}, ""}
}
func devnode(name string, typ byte) tarEntry {
	return tarEntry{te{Name: name, Typeflag: typ, Mode: 0o600, Devmajor: 1, Devminor: 3}, ""}
}

type tarEntry struct {
	h    tar.Header
	data string
}

func mkTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.h
		h.ModTime = time.Unix(1234, 0)
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func layerID(i int) Layer { return Layer{Index: i, Digest: fmt.Sprintf("sha256:test%d", i)} }

// flattenLayers applies the layers and returns the resulting archive's
// records described as strings, and the stats.
func flattenLayers(t testing.TB, layers ...[]byte) (map[string]rec, Stats, error) {
	t.Helper()
	tree, err := New(Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	for i, l := range layers {
		if err := tree.Apply(layerID(i), bytes.NewReader(l)); err != nil {
			return nil, Stats{}, err
		}
	}
	var b bytes.Buffer
	w := cpio.NewWriter(&b, cpio.Options{})
	st, err := tree.AddTo(w, "")
	if err != nil {
		t.Fatalf("AddTo: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("cpio Close: %v", err)
	}
	return readBack(t, b.Bytes()), st, nil
}

type rec = cpiotest.Record

func readBack(t testing.TB, data []byte) map[string]rec {
	t.Helper()
	all, _ := cpiotest.Read(t, data)
	return all
}

var describe = cpiotest.Describe

// linkGroups lists the names sharing an inode, for inodes with nlink > 1.
func linkGroups(all map[string]rec) []string {
	byIno := map[uint64][]string{}
	for n, r := range all {
		if r.Mode&cpio.TypeMask == cpio.TypeReg {
			byIno[r.Ino] = append(byIno[r.Ino], n)
		}
	}
	var groups []string
	for _, ns := range byIno {
		if len(ns) > 1 {
			sort.Strings(ns)
			groups = append(groups, strings.Join(ns, "="))
		}
	}
	sort.Strings(groups)
	return groups
}

func TestFlatten(t *testing.T) {
	tests := []struct {
		name   string
		layers [][]tarEntry
		want   map[string]string
		links  []string // hard-link groups "a=b"
		check  func(t *testing.T, st Stats)
	}{
		{
			name: "modes and owners preserved",
			layers: [][]tarEntry{{
				dirM("./", 0o755, 0, 0),
				dirM("usr/", 0o755, 0, 0),
				dirM("usr/bin/", 0o755, 0, 0),
				fileM("usr/bin/su", 0o4755, 0, 0, "su"),
				fileM("usr/bin/wall", 0o2755, 0, 5, "wall"),
				dirM("tmp/", 0o1777, 0, 0),
				dirM("home/app/", 0o700, 1000, 1000),
				fileM("home/app/.profile", 0o600, 1000, 1000, "x"),
				sym("bin", "usr/bin"),
			}},
			want: map[string]string{
				"usr": "d 0755 0:0", "usr/bin": "d 0755 0:0",
				"usr/bin/su": "f 4755 0:0 =su", "usr/bin/wall": "f 2755 0:5 =wall",
				"tmp": "d 1777 0:0", "home": "d 0755 0:0", "home/app": "d 0700 1000:1000",
				"home/app/.profile": "f 0600 1000:1000 =x", "bin": "l 0777 0:0 ->usr/bin",
			},
		},
		{
			name:   "implicit parents",
			layers: [][]tarEntry{{file("a/b/c", "c")}},
			want:   map[string]string{"a": "d 0755 0:0", "a/b": "d 0755 0:0", "a/b/c": "f 0644 0:0 =c"},
		},
		{
			name: "whiteout file",
			layers: [][]tarEntry{
				{dir("a/"), file("a/x", "x"), file("a/y", "y")},
				{dir("a/"), file("a/.wh.x", "")},
			},
			want:  map[string]string{"a": "d 0755 0:0", "a/y": "f 0644 0:0 =y"},
			check: func(t *testing.T, st Stats) { wantInt(t, "Whiteouts", st.Whiteouts, 1) },
		},
		{
			name: "whiteout directory",
			layers: [][]tarEntry{
				{dir("a/"), dir("a/b/"), file("a/b/c", "c"), file("keep", "k")},
				{file(".wh.a", "")},
			},
			want: map[string]string{"keep": "f 0644 0:0 =k"},
		},
		{
			name: "whiteout of a missing path is a no-op",
			layers: [][]tarEntry{
				{file("keep", "k")},
				{file("nothere/.wh.x", ""), file(".wh.y", "")},
			},
			want: map[string]string{"keep": "f 0644 0:0 =k"},
		},
		{
			// go-containerregistry #1897.
			name: "opaque directory hides lower subdirectory",
			layers: [][]tarEntry{
				{dir("a/"), dir("a/b/"), file("a/b/foo", "foo")},
				{dir("a/"), file("a/.wh..wh..opq", "")},
			},
			want: map[string]string{"a": "d 0755 0:0"},
		},
		{
			name: "opaque keeps its own layer's entries, marker last",
			layers: [][]tarEntry{
				{dir("a/"), file("a/old", "o"), dir("a/sub/"), file("a/sub/old", "o")},
				{dirM("a/", 0o750, 0, 0), file("a/new", "n"), file("a/sub/new", "n"), file("a/.wh..wh..opq", "")},
			},
			want: map[string]string{"a": "d 0750 0:0", "a/new": "f 0644 0:0 =n", "a/sub": "d 0755 0:0", "a/sub/new": "f 0644 0:0 =n"},
		},
		{
			name: "opaque keeps its own layer's entries, marker first",
			layers: [][]tarEntry{
				{dir("a/"), file("a/old", "o"), dir("a/sub/"), file("a/sub/old", "o")},
				{dir("a/"), file("a/.wh..wh..opq", ""), file("a/new", "n")},
			},
			want: map[string]string{"a": "d 0755 0:0", "a/new": "f 0644 0:0 =n"},
		},
		{
			name: "opaque then upper layer adds back",
			layers: [][]tarEntry{
				{file("a/old", "o")},
				{file("a/.wh..wh..opq", "")},
				{file("a/later", "l")},
			},
			want: map[string]string{"a": "d 0755 0:0", "a/later": "f 0644 0:0 =l"},
		},
		{
			name: "whiteout does not hide a file of its own layer",
			layers: [][]tarEntry{
				{file("a/x", "old")},
				{file("a/x", "new"), file("a/.wh.x", "")},
			},
			want: map[string]string{"a": "d 0755 0:0", "a/x": "f 0644 0:0 =new"},
		},
		{
			name: "whiteout of a dir touched by its own layer removes only the lower parts",
			layers: [][]tarEntry{
				{file("d/old", "o")},
				{file("d/new", "n"), file(".wh.d", "")},
			},
			want: map[string]string{"d": "d 0755 0:0", "d/new": "f 0644 0:0 =n"},
		},
		{
			name:   "hard links share an inode",
			layers: [][]tarEntry{{fileM("a", 0o4750, 3, 4, "data"), hard("b", "a"), hard("c/d", "b")}},
			want: map[string]string{
				"a": "f 4750 3:4 =data", "b": "f 4750 3:4 =data", "c": "d 0755 0:0", "c/d": "f 4750 3:4 =data",
			},
			links: []string{"a=b=c/d"},
			check: func(t *testing.T, st Stats) {
				wantInt(t, "Files", st.Files, 1)
				wantInt(t, "HardLinks", st.HardLinks, 2)
			},
		},
		{
			// go-containerregistry #977: target removed in a later layer.
			name: "hard link survives removal of its target",
			layers: [][]tarEntry{
				{file("LINK-A", "content"), hard("LINK-Z", "LINK-A")},
				{file(".wh.LINK-A", "")},
			},
			want: map[string]string{"LINK-Z": "f 0644 0:0 =content"},
		},
		{
			// go-containerregistry #2002: target replaced in a later layer.
			name: "hard link keeps old content when target replaced",
			layers: [][]tarEntry{
				{file("t2", "123\n")},
				{file("t1", "123\n"), hard("t2", "t1"), hard("t3", "t1")},
				{file("t1", "456\n")},
			},
			want:  map[string]string{"t1": "f 0644 0:0 =456\n", "t2": "f 0644 0:0 =123\n", "t3": "f 0644 0:0 =123\n"},
			links: []string{"t2=t3"},
		},
		{
			name: "hard link to a lower layer's file",
			layers: [][]tarEntry{
				{file("x", "x")},
				{hard("y", "x")},
			},
			want:  map[string]string{"x": "f 0644 0:0 =x", "y": "f 0644 0:0 =x"},
			links: []string{"x=y"},
		},
		{
			name:   "hard link to a symlink becomes a symlink",
			layers: [][]tarEntry{{sym("s", "target"), hard("h", "s")}},
			want:   map[string]string{"s": "l 0777 0:0 ->target", "h": "l 0777 0:0 ->target"},
		},
		{
			name: "devices and fifos dropped",
			layers: [][]tarEntry{{
				dir("dev/"), devnode("dev/null", tar.TypeChar), devnode("dev/sda", tar.TypeBlock),
				devnode("fifo", tar.TypeFifo), hard("fifo2", "fifo"), file("keep", "k"),
			}},
			want:  map[string]string{"dev": "d 0755 0:0", "keep": "f 0644 0:0 =k"},
			check: func(t *testing.T, st Stats) { wantInt(t, "Dropped", st.Dropped, 4) },
		},
		{
			name: "device replaces a lower file",
			layers: [][]tarEntry{
				{file("x", "x")},
				{devnode("x", tar.TypeChar)},
			},
			want: map[string]string{},
		},
		{
			name: "file replaces directory",
			layers: [][]tarEntry{
				{file("a/b/c", "c")},
				{file("a", "file")},
			},
			want: map[string]string{"a": "f 0644 0:0 =file"},
		},
		{
			name: "directory replaces file",
			layers: [][]tarEntry{
				{file("a", "file")},
				{dir("a/"), file("a/b", "b")},
			},
			want: map[string]string{"a": "d 0755 0:0", "a/b": "f 0644 0:0 =b"},
		},
		{
			name: "directories merge, metadata from the upper",
			layers: [][]tarEntry{
				{dir("a/"), file("a/x", "x")},
				{dirM("a/", 0o700, 5, 6), file("a/y", "y")},
			},
			want: map[string]string{"a": "d 0700 5:6", "a/x": "f 0644 0:0 =x", "a/y": "f 0644 0:0 =y"},
		},
		{
			name: "symlink replaced by a directory",
			layers: [][]tarEntry{
				{sym("a", "/etc")},
				{file(".wh.a", ""), dir("a/"), file("a/f", "f")},
			},
			want: map[string]string{"a": "d 0755 0:0", "a/f": "f 0644 0:0 =f"},
		},
		{
			name:   "directory entry replaces a symlink in the same path",
			layers: [][]tarEntry{{sym("a", "/etc"), dir("a/"), file("a/f", "f")}},
			want:   map[string]string{"a": "d 0755 0:0", "a/f": "f 0644 0:0 =f"},
		},
		{
			name:   "later duplicate wins",
			layers: [][]tarEntry{{file("a", "1"), fileM("a", 0o600, 1, 1, "2")}},
			want:   map[string]string{"a": "f 0600 1:1 =2"},
		},
		{
			name:   "aufs metadata ignored",
			layers: [][]tarEntry{{file(".wh..wh.plnk/123", "x"), file(".wh..wh.aufs", ""), file("a", "a")}},
			want:   map[string]string{"a": "f 0644 0:0 =a"},
		},
		{
			name:   "dot prefixes and slashes cleaned",
			layers: [][]tarEntry{{file("./a//b/./c", "c")}},
			want:   map[string]string{"a": "d 0755 0:0", "a/b": "d 0755 0:0", "a/b/c": "f 0644 0:0 =c"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var layers [][]byte
			for _, l := range tt.layers {
				layers = append(layers, mkTar(t, l...))
			}
			all, st, err := flattenLayers(t, layers...)
			if err != nil {
				t.Fatalf("flatten: %v", err)
			}
			got := map[string]string{}
			for n, r := range all {
				got[n] = describe(all, r)
			}
			for n, w := range tt.want {
				if got[n] != w {
					t.Errorf("%s = %q, want %q", n, got[n], w)
				}
			}
			for n, g := range got {
				if _, ok := tt.want[n]; !ok {
					t.Errorf("unexpected %s = %q", n, g)
				}
			}
			if g := linkGroups(all); strings.Join(g, " ") != strings.Join(tt.links, " ") {
				t.Errorf("hard-link groups = %q, want %q", g, tt.links)
			}
			for _, r := range all {
				if r.Mode&cpio.TypeMask == cpio.TypeReg {
					n := 0
					for _, o := range all {
						if o.Ino == r.Ino {
							n++
						}
					}
					if r.NLink != uint64(n) {
						t.Errorf("%s nlink = %d, want %d", r.Name, r.NLink, n)
					}
				}
			}
			wantInt(t, "Layers", st.Layers, len(tt.layers))
			if tt.check != nil {
				tt.check(t, st)
			}
		})
	}
}

func wantInt(t *testing.T, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Errorf("Stats.%s = %d, want %d", what, got, want)
	}
}

func TestRootMetadata(t *testing.T) {
	tree, err := New(Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	if p, u, g := tree.Root(); p != 0o755 || u != 0 || g != 0 {
		t.Errorf("Root() of empty tree = %#o %d:%d, want 0755 0:0", p, u, g)
	}
	if err := tree.Apply(layerID(0), bytes.NewReader(mkTar(t, dirM("./", 0o750, 1, 2)))); err != nil {
		t.Fatal(err)
	}
	if p, u, g := tree.Root(); p != 0o750 || u != 1 || g != 2 {
		t.Errorf("Root() = %#o %d:%d, want 0750 1:2", p, u, g)
	}
}

func TestMkdirAllAndLookup(t *testing.T) {
	tree, err := New(Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	l := mkTar(t, sym("var/run", "/run"), file("etc/hosts", "h"), dir("tmp/"))
	if err := tree.Apply(layerID(0), bytes.NewReader(l)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path    string
		created bool
	}{
		{"/app/data", true}, {"/app/data", false}, {"tmp", false}, {"/", false},
		{"var/run/x", false}, {"etc/hosts/x", false}, {"proc", true},
	}
	for _, tt := range tests {
		got, err := tree.MkdirAll(tt.path, 0o555)
		if err != nil || got != tt.created {
			t.Errorf("MkdirAll(%q) = %v, %v; want %v, nil", tt.path, got, err, tt.created)
		}
	}
	if _, err := tree.MkdirAll("a/../b", 0o755); err == nil {
		t.Errorf("MkdirAll(a/../b) = nil error, want one")
	}
	lookups := []struct {
		path string
		typ  uint32
		ok   bool
	}{
		{"app/data", cpio.TypeDir, true}, {"var/run", cpio.TypeSymlink, true}, {"etc/hosts", cpio.TypeReg, true},
		{"var/run/x", 0, false}, {"nothere", 0, false}, {"", cpio.TypeDir, true},
	}
	for _, tt := range lookups {
		typ, ok := tree.Lookup(tt.path)
		if typ != tt.typ || ok != tt.ok {
			t.Errorf("Lookup(%q) = %#o, %v; want %#o, %v", tt.path, typ, ok, tt.typ, tt.ok)
		}
	}
}

func TestHostile(t *testing.T) {
	tooBig := func() []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		if err := tw.WriteHeader(&tar.Header{Name: "huge", Typeflag: tar.TypeReg, Size: 5 << 30, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		tw.Flush() // header only: the content never comes
		return b.Bytes()
	}()
	tests := []struct {
		name   string
		layers [][]byte
		layer  int    // index of the layer the error must name
		entry  string // entry the error must name
		want   error
	}{
		{"tar-slip dotdot", [][]byte{mkTar(t, file("../evil", "x"))}, 0, "../evil", ErrDotDot},
		{"tar-slip nested dotdot", [][]byte{mkTar(t, file("a/../../etc/passwd", "x"))}, 0, "a/../../etc/passwd", ErrDotDot},
		{"dotdot even inside", [][]byte{mkTar(t, file("a/../b", "x"))}, 0, "a/../b", ErrDotDot},
		{"absolute path", [][]byte{mkTar(t, file("/etc/passwd", "x"))}, 0, "/etc/passwd", ErrAbsolute},
		{"absolute dir", [][]byte{mkTar(t, dir("/abs/"))}, 0, "/abs/", ErrAbsolute},
		{"symlink then write through", [][]byte{mkTar(t, sym("etc", "/etc"), file("etc/passwd", "x"))}, 0, "etc/passwd", ErrSymlinkParent},
		{"symlink then write through, next layer", [][]byte{mkTar(t, sym("lib", "../../..")), mkTar(t, file("lib/x/y", "x"))}, 1, "lib/x/y", ErrSymlinkParent},
		{"symlink then mkdir through", [][]byte{mkTar(t, sym("d", "/"), dir("d/sub/"))}, 0, "d/sub/", ErrSymlinkParent},
		{"symlink then symlink through", [][]byte{mkTar(t, sym("d", "/"), sym("d/s", "x"))}, 0, "d/s", ErrSymlinkParent},
		{"symlink then hard link through", [][]byte{mkTar(t, file("f", "x"), sym("d", "/tmp"), hard("d/h", "f"))}, 0, "d/h", ErrSymlinkParent},
		{"parent is a file", [][]byte{mkTar(t, file("f", "x")), mkTar(t, file("f/x", "y"))}, 1, "f/x", ErrNotDir},
		{"hard link outside with dotdot", [][]byte{mkTar(t, hard("h", "../../etc/shadow"))}, 0, "h", ErrLinkOutside},
		{"hard link outside absolute", [][]byte{mkTar(t, hard("h", "/etc/shadow"))}, 0, "h", ErrLinkOutside},
		{"hard link to missing", [][]byte{mkTar(t, hard("h", "nothere"))}, 0, "h", ErrLinkMissing},
		{"hard link before its target", [][]byte{mkTar(t, hard("h", "later"), file("later", "x"))}, 0, "h", ErrLinkMissing},
		{"hard link to removed target", [][]byte{
			mkTar(t, file("x", "x")), mkTar(t, file(".wh.x", "")), mkTar(t, hard("y", "x")),
		}, 2, "y", ErrLinkMissing},
		{"hard link through symlink", [][]byte{mkTar(t, sym("d", "/etc")), mkTar(t, hard("y", "d/passwd"))}, 1, "y", ErrLinkMissing},
		{"hard link to directory", [][]byte{mkTar(t, dir("d/"), hard("h", "d"))}, 0, "h", ErrLinkType},
		{"hard link to root", [][]byte{mkTar(t, hard("h", "."))}, 0, "h", ErrLinkType},
		{"whiteout of dotdot", [][]byte{mkTar(t, file("a/.wh...", ""))}, 0, "a/.wh...", ErrWhiteout},
		{"whiteout of dotdot at root", [][]byte{mkTar(t, file(".wh...", ""))}, 0, ".wh...", ErrWhiteout},
		{"whiteout of dot", [][]byte{mkTar(t, file("a/.wh..", ""))}, 0, "a/.wh..", ErrWhiteout},
		{"whiteout of nothing", [][]byte{mkTar(t, file(".wh.", ""))}, 0, ".wh.", ErrWhiteout},
		{"whiteout through symlink", [][]byte{mkTar(t, sym("s", "/etc")), mkTar(t, file("s/.wh.passwd", ""))}, 1, "s/.wh.passwd", ErrSymlinkParent},
		{"opaque through symlink", [][]byte{mkTar(t, sym("s", "/etc")), mkTar(t, file("s/.wh..wh..opq", ""))}, 1, "s/.wh..wh..opq", ErrSymlinkParent},
		{"whiteout with dotdot path", [][]byte{mkTar(t, file("../.wh.x", ""))}, 0, "../.wh.x", ErrDotDot},
		{"name too long", [][]byte{mkTar(t, file(strings.Repeat("a/", MaxNameLen/2)+"x", "x"))}, 0, strings.Repeat("a/", MaxNameLen/2) + "x", ErrBadName},
		{"symlink target too long", [][]byte{mkTar(t, sym("s", strings.Repeat("t", MaxNameLen+1)))}, 0, "s", ErrBadName},
		{"root as a file", [][]byte{mkTar(t, file(".", ""))}, 0, ".", ErrType},
		{"unknown type", [][]byte{mkTar(t, tarEntry{te{Name: "x", Typeflag: 'Z'}, ""})}, 0, "x", ErrType},
		{"too large", [][]byte{tooBig}, 0, "huge", ErrTooLarge},
		{"truncated content", [][]byte{mkTar(t, file("a", strings.Repeat("x", 4096)))[:1024+512]}, 0, "a", ErrTar},
		{"garbage", [][]byte{mkTar(t, file("ok", "x")), []byte(strings.Repeat("garbage!", 128))}, 1, "", ErrTar},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := flattenLayers(t, tt.layers...)
			if err == nil {
				t.Fatalf("flatten = nil error, want %v", tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("flatten = %v, want %v", err, tt.want)
			}
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("flatten = %T, want *flatten.Error", err)
			}
			if fe.Layer.Index != tt.layer || fe.Entry != tt.entry {
				t.Errorf("error names layer %d entry %q, want layer %d entry %q", fe.Layer.Index, fe.Entry, tt.layer, tt.entry)
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprintf("layer %d (sha256:test%d)", tt.layer, tt.layer)) ||
				(tt.entry != "" && !strings.Contains(msg, fmt.Sprintf("%q", tt.entry))) {
				t.Errorf("error message %q does not name layer %d and entry %q", msg, tt.layer, tt.entry)
			}
		})
	}
}

func TestSpoolIsUnlinked(t *testing.T) {
	dir := t.TempDir()
	tree, err := New(Options{TempDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := tree.Apply(layerID(0), bytes.NewReader(mkTar(t, file("a", "data")))); err != nil {
		t.Fatal(err)
	}
	ents, err := readDir(dir)
	if err != nil || len(ents) != 0 {
		t.Errorf("TempDir holds %v (%v), want nothing (spool unlinked)", ents, err)
	}
	tree.Close()
	if err := tree.Apply(layerID(1), bytes.NewReader(mkTar(t, file("b", "x")))); err == nil {
		t.Errorf("Apply after Close = nil error, want one")
	}
}
