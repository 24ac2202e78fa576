package ramdisk

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qtenclave/enclave/rootfs/cpio"
)

func archive(t testing.TB, gz bool, mtime int64, entries ...cpio.Entry) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := cpio.WriteArchive(&b, cpio.Options{Gzip: gz, MTime: mtime}, entries...); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func sampleEntries() []cpio.Entry {
	return []cpio.Entry{
		cpio.Dir("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.File("init", 0o755, []byte("#!init\n")),
		cpio.File("etc/passwd", 0o644, []byte("root:x:0:0::/:/bin/sh\n")),
		cpio.Symlink("bin", "usr/bin"),
		cpio.HardLink("etc/passwd-", "etc/passwd"),
		{Name: "home/user", Mode: cpio.TypeDir | 0o700, UID: 1000, GID: 1000},
	}
}

// handmade writes one newc record by hand (independent of rootfs/cpio).
func handmade(name string, mode uint32, data []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	b.WriteString(name)
	b.WriteByte(0)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	b.Write(data)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}

func TestWalkFields(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			idx, err := ReadIndex(bytes.NewReader(archive(t, gz, 1234, sampleEntries()...)))
			if err != nil {
				t.Fatal(err)
			}
			if idx.Archives != 1 {
				t.Errorf("Archives = %d, want 1", idx.Archives)
			}
			want := map[string]string{
				"dev":         "dir 0755 0:0",
				"dev/console": "char 0600 0:0 5:1",
				"init":        "file 0755 0:0 " + sha("#!init\n"),
				"etc":         "dir 0755 0:0",
				"etc/passwd":  "file 0644 0:0 " + sha("root:x:0:0::/:/bin/sh\n"),
				"etc/passwd-": "file 0644 0:0 " + sha("root:x:0:0::/:/bin/sh\n"),
				"bin":         "symlink 0777 0:0 ->usr/bin",
				"home":        "dir 0755 0:0",
				"home/user":   "dir 0700 1000:1000",
			}
			for p, w := range want {
				e, ok := idx.Entries[p]
				if !ok {
					t.Errorf("%s missing", p)
					continue
				}
				got := fmt.Sprintf("%s %04o %d:%d", e.TypeName(), e.Mode&0o7777, e.UID, e.GID)
				switch e.Type() {
				case TypeChar:
					got += fmt.Sprintf(" %d:%d", e.RdevMajor, e.RdevMinor)
				case TypeReg:
					got += fmt.Sprintf(" %x", e.SHA256)
				case TypeSymlink:
					got += " ->" + e.Linkname
				}
				if got != w {
					t.Errorf("%s = %s, want %s", p, got, w)
				}
				if e.MTime != 1234 {
					t.Errorf("%s mtime = %d, want 1234", p, e.MTime)
				}
			}
			if len(idx.Entries) != len(want) {
				t.Errorf("%d entries (%v), want %d", len(idx.Entries), idx.Paths(), len(want))
			}
		})
	}
}

func sha(s string) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(s))) }

func TestWalkConcatenated(t *testing.T) {
	// An uncompressed archive, zero padding, a gzip member holding two
	// archives, then a handmade archive with "./" and "/" prefixes.
	var b bytes.Buffer
	b.Write(archive(t, false, 0, cpio.File("a", 0o644, []byte("A"))))
	b.Write(make([]byte, 512))
	var inner bytes.Buffer
	inner.Write(archive(t, false, 0, cpio.File("b", 0o644, []byte("B"))))
	inner.Write(make([]byte, 8))
	inner.Write(archive(t, false, 0, cpio.File("a", 0o600, []byte("A2"))))
	zw := gzip.NewWriter(&b)
	zw.Write(inner.Bytes())
	zw.Close()
	b.Write(handmade("./c", TypeReg|0o644, []byte("C")))
	b.Write(handmade("/d", TypeReg|0o644, []byte("DD")))
	b.Write(handmade(trailer, 0, nil))

	idx, err := ReadIndex(&b)
	if err != nil {
		t.Fatal(err)
	}
	if idx.Archives != 4 || idx.Records != 5 {
		t.Errorf("Archives, Records = %d, %d, want 4, 5", idx.Archives, idx.Records)
	}
	if got := strings.Join(idx.Paths(), ","); got != "a,b,c,d" {
		t.Errorf("Paths() = %s, want a,b,c,d", got)
	}
	if e := idx.Entries["a"]; e.Mode&0o777 != 0o600 || e.Archive != 2 {
		t.Errorf("a = mode %o archive %d, want the later record (0600, archive 2)", e.Mode, e.Archive)
	}
}

func TestWalkMalformed(t *testing.T) {
	good := archive(t, false, 0, cpio.File("a", 0o644, []byte("hello")))
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"bad magic", append([]byte("070707"), good[6:]...)},
		{"truncated header", good[:50]},
		{"truncated content", good[:115]},
		{"no trailer", good[:len(good)-124]},
		{"bad hex", append([]byte("070701zzzzzzzz"), good[14:]...)},
		{"huge name", handmadeNameSize(1 << 20)},
		{"gzip garbage", []byte{0x1f, 0x8b, 1, 2, 3}},
		{"huge symlink", handmade("l", TypeSymlink|0o777, make([]byte, maxLink+1))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Walk(bytes.NewReader(tc.data), func(*Entry) error { return nil })
			if !errors.Is(err, ErrFormat) {
				t.Errorf("Walk = %v, want ErrFormat", err)
			}
		})
	}
}

func handmadeNameSize(n int) []byte {
	h := handmade("x", TypeReg, nil)
	copy(h[6+8*11:], fmt.Sprintf("%08x", n))
	return h
}

func TestDiff(t *testing.T) {
	base := sampleEntries()
	changed := []cpio.Entry{
		cpio.Dir("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 2),                            // rdev
		cpio.File("init", 0o700, []byte("#!init\n")),                        // mode
		cpio.File("etc/passwd", 0o644, []byte("root:x:0:0::/root:/bin/sh")), // content
		cpio.Symlink("bin", "usr/local/bin"),                                // link
		cpio.File("etc/new", 0o644, nil),                                    // added
		{Name: "home/user", Mode: cpio.TypeDir | 0o700, UID: 1001, GID: 1000},
		// etc/passwd- removed
	}
	a, err := ReadIndex(bytes.NewReader(archive(t, false, 0, base...)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ReadIndex(bytes.NewReader(archive(t, true, 5, changed...)))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range Diff(a, b) {
		s := c.Kind + " " + c.Path
		for _, f := range c.Fields {
			s += " " + f.Field
		}
		got = append(got, s)
	}
	want := []string{
		"changed bin mtime link",
		"changed dev mtime",
		"changed dev/console mtime rdev",
		"changed etc mtime",
		"added etc/new",
		"changed etc/passwd mtime size sha256 nlink",
		"removed etc/passwd-",
		"changed home mtime",
		"changed home/user uid mtime",
		"changed init mode mtime",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Diff =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if d := Diff(a, a); len(d) != 0 {
		t.Errorf("Diff(a, a) = %v, want nothing", d)
	}
}

// The seed corpus is testdata/fuzz/FuzzWalk; regenerate it with
// RAMDISK_WRITE_FUZZ_CORPUS=1 go test -run TestWriteFuzzCorpus ./image/ramdisk
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("RAMDISK_WRITE_FUZZ_CORPUS") == "" {
		t.Skip("set RAMDISK_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzWalk")
	os.MkdirAll(dir, 0o755)
	for name, b := range map[string][]byte{
		"plain":   archive(t, false, 0, sampleEntries()...),
		"gzip":    archive(t, true, 0, sampleEntries()...),
		"symlink": append(handmade("./x", TypeSymlink|0o777, []byte("y")), handmade(trailer, 0, nil)...),
	} {
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzWalk(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		err := Walk(bytes.NewReader(data), func(e *Entry) error {
			n++
			if len(e.Name) > maxName || len(e.Linkname) > maxLink {
				t.Fatalf("entry %q exceeds limits", e.Name)
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrFormat) && err != io.ErrUnexpectedEOF {
			t.Fatalf("Walk error %v is not ErrFormat", err)
		}
	})
}

// TestIndexBounded: a ramdisk whose names would take more than
// MaxIndexBytes to index is refused before memory grows past it (issue 14,
// item 5: 250k records of 4000-byte names took 2.9 GB).
func TestIndexBounded(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		cw := cpio.NewWriter(pw, cpio.Options{Gzip: true})
		pad := strings.Repeat("n", 3990)
		for i := 0; i < 250000; i++ {
			if err := cw.Add(cpio.File(fmt.Sprintf("%s%09d", pad, i), 0o644, nil)); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(cw.Close())
	}()
	_, err := ReadIndex(pr)
	pr.CloseWithError(errors.New("done"))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadIndex(250k records of 4000-byte names) = %v, want ErrTooLarge", err)
	}
	if !strings.Contains(err.Error(), "64 MiB") {
		t.Errorf("error %q does not name the limit", err)
	}
}
