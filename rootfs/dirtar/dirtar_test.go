package dirtar

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func tree(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, f := range []struct {
		p    string
		mode os.FileMode
	}{{"b/z", 0o644}, {"a", 0o755 | os.ModeSetuid}, {"b/y", 0o600}} {
		p := filepath.Join(d, f.p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("data:"+f.p), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(d, "b/y"), filepath.Join(d, "c")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(d, "s")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(d, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

func pack(t *testing.T, d string, opts Options) ([]byte, Result) {
	t.Helper()
	var b bytes.Buffer
	res, err := Write(&b, d, opts)
	if err != nil {
		t.Fatalf("Write(%s): %v", d, err)
	}
	return b.Bytes(), res
}

func list(t *testing.T, data []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var out []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		out = append(out, fmt.Sprintf("%s %c %04o %d:%d %d %q %q %q", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime.Unix(), h.Linkname, h.Uname, body))
	}
}

func TestWrite(t *testing.T) {
	d := tree(t)
	data, res := pack(t, d, Options{MTime: 77})
	want := []string{
		`a 0 4755 0:0 77 "" "" "data:a"`,
		`b/ 5 0755 0:0 77 "" "" ""`,
		`b/y 0 0600 0:0 77 "" "" "data:b/y"`,
		`b/z 0 0644 0:0 77 "" "" "data:b/z"`,
		`c 1 0600 0:0 77 "b/y" "" ""`,
		`s 2 0777 0:0 77 "/etc/passwd" "" ""`,
	}
	if got := list(t, data); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Write entries =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.Entries != 6 || res.Skipped != 1 {
		t.Errorf("Result = %+v, want 6 entries, 1 skipped (the FIFO)", res)
	}
	// Times on the host do not matter.
	old := time.Unix(12345, 0)
	for _, p := range []string{"a", "b", "b/y", "c"} {
		os.Chtimes(filepath.Join(d, p), old, old)
	}
	if again, _ := pack(t, d, Options{MTime: 77}); !bytes.Equal(again, data) {
		t.Errorf("tar changed after touching host mtimes")
	}
}

func TestKeepOwners(t *testing.T) {
	d := tree(t)
	if err := os.Lchown(filepath.Join(d, "b/z"), 12, 34); err != nil {
		t.Skipf("chown: %v", err)
	}
	data, _ := pack(t, d, Options{KeepOwners: true})
	if got := list(t, data); !strings.Contains(strings.Join(got, "\n"), `b/z 0 0644 12:34`) {
		t.Errorf("KeepOwners entries = %q, want b/z owned 12:34", got)
	}
}

func TestOpenAndErrors(t *testing.T) {
	d := tree(t)
	rc := Open(d, Options{})
	viaPipe, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	direct, _ := pack(t, d, Options{})
	if !bytes.Equal(viaPipe, direct) {
		t.Errorf("Open stream differs from Write")
	}
	if _, err := io.ReadAll(Open(filepath.Join(d, "missing"), Options{})); err == nil {
		t.Errorf("Open(missing) read = nil error, want one")
	}
	if _, err := Write(io.Discard, filepath.Join(d, "a"), Options{}); err == nil {
		t.Errorf("Write(file) = nil error, want one")
	}
}

// TestSymlinkedRoot: a root given as a symbolic link to a tree is followed
// (issue 14, item 11: it packed an empty image); links inside stay links.
func TestSymlinkedRoot(t *testing.T) {
	real := t.TempDir()
	if err := os.MkdirAll(filepath.Join(real, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, "etc", "passwd"), []byte("root:x:0:0::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("etc/passwd", filepath.Join(real, "link")); err != nil {
		t.Fatal(err)
	}
	result := filepath.Join(t.TempDir(), "result")
	if err := os.Symlink(real, result); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := Write(&b, result, Options{}); err != nil {
		t.Fatal(err)
	}
	got := map[string]byte{}
	tr := tar.NewReader(&b)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		got[h.Name] = h.Typeflag
	}
	if got["etc/passwd"] != tar.TypeReg || got["link"] != tar.TypeSymlink {
		t.Errorf("tar of a symlinked root = %v, want etc/passwd a file and link a symlink", got)
	}
}
