package cpio

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	ucpio "github.com/u-root/u-root/pkg/cpio"
)

// rec is a record read back with u-root's reader.
type rec struct {
	ucpio.Info
	Data string
}

func readArchive(t testing.TB, data []byte) []rec {
	t.Helper()
	recs, err := ucpio.ReadAllRecords(ucpio.Newc.Reader(bytes.NewReader(data)))
	if err != nil {
		t.Fatalf("read archive: %v", err)
	}
	var out []rec
	for _, r := range recs {
		b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		if err != nil {
			t.Fatalf("read %s: %v", r.Name, err)
		}
		out = append(out, rec{r.Info, string(b)})
	}
	return out
}

func write(t testing.TB, opts Options, entries ...Entry) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteArchive(&b, opts, entries...); err != nil {
		t.Fatalf("WriteArchive: %v", err)
	}
	return b.Bytes()
}

func names(recs []rec) []string {
	var n []string
	for _, r := range recs {
		n = append(n, r.Name)
	}
	return n
}

func TestOrderParentsAndMetadata(t *testing.T) {
	data := write(t, Options{MTime: 1700000000},
		File("b/c/d", 0o4755, []byte("hello")),
		Symlink("a", "/b/c/d"),
		Entry{Name: "b", Mode: TypeDir | 0o700, UID: 1000, GID: 100},
		File("b-x", 0o600, nil),
		CharDev("dev/console", 0o600, 5, 1),
	)
	if len(data)%4 != 0 {
		t.Errorf("archive length %d not a multiple of 4", len(data))
	}
	recs := readArchive(t, data)
	want := []string{"a", "b", "b/c", "b/c/d", "b-x", "dev", "dev/console"}
	if got := names(recs); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("names = %q, want %q", got, want)
	}
	wantRec := map[string]struct {
		mode, uid, gid, nlink, rmaj, rmin uint64
		data                              string
	}{
		"a":           {TypeSymlink | 0o777, 0, 0, 1, 0, 0, "/b/c/d"},
		"b":           {TypeDir | 0o700, 1000, 100, 3, 0, 0, ""},
		"b/c":         {TypeDir | DefaultDirMode, 0, 0, 2, 0, 0, ""},
		"b/c/d":       {TypeReg | 0o4755, 0, 0, 1, 0, 0, "hello"},
		"b-x":         {TypeReg | 0o600, 0, 0, 1, 0, 0, ""},
		"dev":         {TypeDir | DefaultDirMode, 0, 0, 2, 0, 0, ""},
		"dev/console": {TypeChar | 0o600, 0, 0, 1, 5, 1, ""},
	}
	for i, r := range recs {
		w := wantRec[r.Name]
		if r.Mode != w.mode || r.UID != w.uid || r.GID != w.gid || r.NLink != w.nlink || r.Data != w.data ||
			r.Rmajor != w.rmaj || r.Rminor != w.rmin {
			t.Errorf("record %s = mode %#o uid %d gid %d nlink %d rdev %d:%d data %q, want mode %#o uid %d gid %d nlink %d rdev %d:%d data %q",
				r.Name, r.Mode, r.UID, r.GID, r.NLink, r.Rmajor, r.Rminor, r.Data, w.mode, w.uid, w.gid, w.nlink, w.rmaj, w.rmin, w.data)
		}
		if r.Ino != uint64(i+1) {
			t.Errorf("record %s ino = %d, want %d", r.Name, r.Ino, i+1)
		}
		if r.MTime != 1700000000 || r.Major != 0 || r.Minor != 0 {
			t.Errorf("record %s mtime %d dev %d:%d, want 1700000000 0:0", r.Name, r.MTime, r.Major, r.Minor)
		}
	}
	if !bytes.HasSuffix(bytes.TrimRight(data, "\x00"), []byte(Trailer)) {
		t.Errorf("archive does not end with %s", Trailer)
	}
}

func TestHardLinks(t *testing.T) {
	data := write(t, Options{},
		Entry{Name: "x", Mode: TypeReg | 0o2750, UID: 7, GID: 8, Size: 2, Open: func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("hi")), nil
		}},
		HardLink("y", "x"),
		HardLink("a/z", "y"), // chain; a/z comes first in output order
		File("w", 0o644, []byte("other")),
	)
	recs := readArchive(t, data)
	byName := map[string]rec{}
	for _, r := range recs {
		byName[r.Name] = r
	}
	if got := names(recs); strings.Join(got, " ") != "a a/z w x y" {
		t.Fatalf("names = %q, want [a a/z w x y]", got)
	}
	first := byName["a/z"]
	if first.Data != "hi" || first.FileSize != 2 {
		t.Errorf("a/z (first link) data %q size %d, want %q 2", first.Data, first.FileSize, "hi")
	}
	for _, n := range []string{"a/z", "x", "y"} {
		r := byName[n]
		if r.Ino != first.Ino || r.NLink != 3 || r.Mode != TypeReg|0o2750 || r.UID != 7 || r.GID != 8 {
			t.Errorf("%s = ino %d nlink %d mode %#o uid %d gid %d, want ino %d nlink 3 mode %#o uid 7 gid 8",
				n, r.Ino, r.NLink, r.Mode, r.UID, r.GID, first.Ino, TypeReg|0o2750)
		}
		if n != "a/z" && r.FileSize != 0 {
			t.Errorf("%s size %d, want 0 (data on the first link)", n, r.FileSize)
		}
	}
	if w := byName["w"]; w.Ino == first.Ino || w.NLink != 1 {
		t.Errorf("w ino %d nlink %d, want a distinct inode with nlink 1", w.Ino, w.NLink)
	}
	// Inodes are sequential in output order, a link reusing its inode.
	wantIno := map[string]uint64{"a": 1, "a/z": 2, "w": 3, "x": 2, "y": 2}
	for n, ino := range wantIno {
		if byName[n].Ino != ino {
			t.Errorf("%s ino = %d, want %d", n, byName[n].Ino, ino)
		}
	}
}

func TestDeterministicAcrossAddOrder(t *testing.T) {
	entries := []Entry{
		File("usr/bin/app", 0o755, []byte("binary")),
		Symlink("bin", "usr/bin"),
		Dir("etc", 0o755),
		File("etc/passwd", 0o644, []byte("root:x:0:0::/root:/bin/sh\n")),
		HardLink("usr/bin/app2", "usr/bin/app"),
		Dir("tmp", 0o1777),
		File("a-b", 0o644, []byte("1")),
		File("a/b", 0o644, []byte("2")),
	}
	want := sha256.Sum256(write(t, Options{}, entries...))
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 20; i++ {
		shuffled := append([]Entry(nil), entries...)
		r.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		if got := sha256.Sum256(write(t, Options{}, shuffled...)); got != want {
			t.Fatalf("shuffle %d: sha256 = %x, want %x", i, got, want)
		}
	}
}

func TestErrors(t *testing.T) {
	openErr := errors.New("boom")
	tests := []struct {
		name    string
		entries []Entry
		want    error
	}{
		{"empty name", []Entry{File("", 0o644, nil)}, ErrBadName},
		{"absolute", []Entry{File("/etc/passwd", 0o644, nil)}, ErrBadName},
		{"dotdot", []Entry{File("a/../b", 0o644, nil)}, ErrBadName},
		{"dot", []Entry{File("./a", 0o644, nil)}, ErrBadName},
		{"double slash", []Entry{File("a//b", 0o644, nil)}, ErrBadName},
		{"trailing slash", []Entry{Dir("a/", 0o755)}, ErrBadName},
		{"nul", []Entry{File("a\x00b", 0o644, nil)}, ErrBadName},
		{"trailer name", []Entry{File(Trailer, 0o644, nil)}, ErrBadName},
		{"name too long", []Entry{File(strings.Repeat("a", MaxNameLen+1), 0o644, nil)}, ErrBadName},
		{"duplicate", []Entry{File("a", 0o644, nil), Dir("a", 0o755)}, ErrDuplicate},
		{"unknown mode bits", []Entry{{Name: "a", Mode: TypeReg | 0o10000000}}, ErrBadEntry},
		{"no type", []Entry{{Name: "a", Mode: 0o644}}, ErrBadEntry},
		{"size without source", []Entry{{Name: "a", Mode: TypeReg, Size: 3}}, ErrBadEntry},
		{"size on dir", []Entry{{Name: "a", Mode: TypeDir, Size: 3}}, ErrBadEntry},
		{"too large", []Entry{{Name: "a", Mode: TypeReg, Size: MaxSize + 1, Open: func() (io.ReadCloser, error) { return nil, nil }}}, ErrBadEntry},
		{"empty symlink", []Entry{Symlink("a", "")}, ErrBadEntry},
		{"symlink target too long", []Entry{Symlink("a", strings.Repeat("b", MaxNameLen+1))}, ErrBadEntry},
		{"linkname on file", []Entry{{Name: "a", Mode: TypeReg, Linkname: "b"}}, ErrBadEntry},
		{"hard link missing", []Entry{HardLink("a", "b")}, ErrBadEntry},
		{"hard link to dir", []Entry{Dir("d", 0o755), HardLink("a", "d")}, ErrBadEntry},
		{"hard link loop", []Entry{HardLink("a", "b"), HardLink("b", "a")}, ErrBadEntry},
		{"hard link bad target", []Entry{HardLink("a", "../b")}, ErrBadName},
		{"parent is a file", []Entry{File("a", 0o644, nil), File("a/b", 0o644, nil)}, ErrBadEntry},
		{"parent is a hard link", []Entry{File("f", 0o644, nil), HardLink("a", "f"), File("a/b", 0o644, nil)}, ErrBadEntry},
		{"open fails", []Entry{{Name: "a", Mode: TypeReg, Size: 1, Open: func() (io.ReadCloser, error) { return nil, openErr }}}, openErr},
		{"short content", []Entry{{Name: "a", Mode: TypeReg, Size: 10, Open: func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("short")), nil
		}}}, nil},
		{"long content", []Entry{{Name: "a", Mode: TypeReg, Size: 2, Open: func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("longer")), nil
		}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := WriteArchive(io.Discard, Options{}, tt.entries...)
			if err == nil {
				t.Fatalf("WriteArchive(%s) = nil, want an error", tt.name)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("WriteArchive(%s) = %v, want %v", tt.name, err, tt.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("WriteArchive(%s) = %T %v, want *cpio.Error", tt.name, err, err)
			}
		})
	}
}

func TestClosedWriter(t *testing.T) {
	w := NewWriter(io.Discard, Options{})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(File("a", 0o644, nil)); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close = %v, want ErrClosed", err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
}

func TestEmptyArchive(t *testing.T) {
	data := write(t, Options{})
	if recs := readArchive(t, data); len(recs) != 0 {
		t.Errorf("empty archive holds %d records, want 0", len(recs))
	}
	if !bytes.HasPrefix(data, []byte("070701")) {
		t.Errorf("archive starts %q, want the newc magic", data[:6])
	}
}

func TestGzip(t *testing.T) {
	entries := []Entry{File("a", 0o644, []byte(strings.Repeat("x", 10000))), Dir("d", 0o755)}
	plain := write(t, Options{MTime: 5}, entries...)
	z := write(t, Options{MTime: 5, Gzip: true}, entries...)
	if len(z) < 10 || z[0] != 0x1f || z[1] != 0x8b {
		t.Fatalf("gzip output starts %x, want 1f8b", z[:2])
	}
	if flags := z[3]; flags != 0 {
		t.Errorf("gzip FLG = %#x, want 0 (no name, comment or extra)", flags)
	}
	if mtime := z[4:8]; !bytes.Equal(mtime, []byte{0, 0, 0, 0}) {
		t.Errorf("gzip MTIME = %x, want 0", mtime)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Errorf("gunzip(gzip archive) differs from the plain archive (%d vs %d bytes)", len(got), len(plain))
	}
	if z2 := write(t, Options{MTime: 5, Gzip: true}, entries...); !bytes.Equal(z, z2) {
		t.Errorf("two gzip archives of the same entries differ")
	}
}

func TestSourceDateEpoch(t *testing.T) {
	tests := []struct {
		env  string
		want int64
		ok   bool
	}{
		{"", 0, true}, {"0", 0, true}, {"1700000000", 1700000000, true},
		{"-1", 0, false}, {"abc", 0, false}, {"4294967296", 0, false},
	}
	for _, tt := range tests {
		t.Setenv("SOURCE_DATE_EPOCH", tt.env)
		got, err := SourceDateEpoch()
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("SourceDateEpoch(%q) = %d, %v; want %d, ok=%v", tt.env, got, err, tt.want, tt.ok)
		}
	}
}

func TestLess(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"a", "a/b", true}, {"a/b", "a-b", true}, {"a-b", "a/b", false},
		{"a/b/c", "a-b", true}, {"a", "b", true}, {"b", "a", false}, {"a", "a", false},
		{"a/z", "ab", true}, {"rootfs/zz", "rootfs0", true},
	}
	for _, tt := range tests {
		if got := Less(tt.a, tt.b); got != tt.want {
			t.Errorf("Less(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

// zeroReader yields n zero bytes without holding them.
type zeroReader struct{ n int64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.n {
		p = p[:z.n]
	}
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

func TestStreamingMemory(t *testing.T) {
	const size = 256 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n := &countingDiscard{}
	err := WriteArchive(n, Options{}, Entry{Name: "big", Mode: TypeReg | 0o644, Size: size,
		Open: func() (io.ReadCloser, error) { return io.NopCloser(&zeroReader{size}), nil }})
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if n.n < size {
		t.Fatalf("wrote %d bytes, want > %d", n.n, size)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("writing a %d MiB file allocated %d bytes, want < 4 MiB (streaming)", size>>20, alloc)
	}
}

type countingDiscard struct{ n int64 }

func (c *countingDiscard) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func TestHostFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "init")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := HostFile("init", 0o755, p)
	if err != nil {
		t.Fatal(err)
	}
	recs := readArchive(t, write(t, Options{}, e))
	if len(recs) != 1 || recs[0].Data != "#!/bin/sh\n" || recs[0].Mode != TypeReg|0o755 || recs[0].UID != 0 {
		t.Errorf("HostFile record = %+v, want init 0755 root with the file's content", recs)
	}
	if _, err := HostFile("x", 0o644, filepath.Dir(p)); err == nil {
		t.Errorf("HostFile(directory) = nil error, want one")
	}
}

// TestIntegrationGNUCpio extracts an archive with GNU cpio and checks that
// hard links (data on the first link) come out as one inode with the data.
func TestIntegrationGNUCpio(t *testing.T) {
	cpioBin, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("GNU cpio not installed (apt-get install cpio); skipping extraction check")
	}
	data := write(t, Options{},
		File("x", 0o640, []byte("payload")),
		HardLink("a/link", "x"),
		Symlink("s", "x"),
		File("d/e/f", 0o600, []byte("f")),
	)
	dir := t.TempDir()
	cmd := exec.Command(cpioBin, "-idm", "--no-absolute-filenames", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(data)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v\n%s", err, out)
	}
	for _, p := range []string{"x", "a/link"} {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil || string(b) != "payload" {
			t.Errorf("extracted %s = %q, %v; want %q", p, b, err, "payload")
		}
	}
	fx, err1 := os.Stat(filepath.Join(dir, "x"))
	fl, err2 := os.Stat(filepath.Join(dir, "a/link"))
	if err1 != nil || err2 != nil || !os.SameFile(fx, fl) {
		t.Errorf("x and a/link are not the same file after extraction (%v, %v)", err1, err2)
	}
	if target, err := os.Readlink(filepath.Join(dir, "s")); err != nil || target != "x" {
		t.Errorf("symlink s -> %q, %v; want x", target, err)
	}
}

func ExampleWriter() {
	var b bytes.Buffer
	w := NewWriter(&b, Options{})
	w.Add(Dir("dev", 0o755))
	w.Add(CharDev("dev/console", 0o600, 5, 1))
	w.Add(File("init", 0o755, []byte("#!/bin/sh\n")))
	if err := w.Close(); err != nil {
		panic(err)
	}
	recs, _ := ucpio.ReadAllRecords(ucpio.Newc.Reader(bytes.NewReader(b.Bytes())))
	for _, r := range recs {
		fmt.Printf("%d %06o %s\n", r.Ino, r.Mode, r.Name)
	}
	// Output:
	// 1 040755 dev
	// 2 020600 dev/console
	// 3 100755 init
}
