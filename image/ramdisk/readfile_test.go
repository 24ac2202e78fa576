package ramdisk

import (
	"bytes"
	"errors"
	"io/fs"
	"testing"

	"github.com/qtenclave/enclave/rootfs/cpio"
)

func cpioOf(t *testing.T, entries ...cpio.Entry) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := cpio.WriteArchive(&b, cpio.Options{}, entries...); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestReadFile(t *testing.T) {
	first := cpioOf(t, cpio.Dir("rootfs", 0o755), cpio.File("launch.json", 0o644, []byte(`{"a":1}`)), cpio.Symlink("link", "launch.json"))
	// A second archive appended: its launch.json is what the kernel leaves.
	second := cpioOf(t, cpio.File("launch.json", 0o644, []byte(`{"b":2}`)), cpio.File("big", 0o644, make([]byte, 100)))
	both := append(append([]byte(nil), first...), second...)
	for _, c := range []struct {
		name string
		in   []byte
		file string
		want string
		err  error
	}{
		{"one archive", first, "launch.json", `{"a":1}`, nil},
		{"the last record wins", both, "launch.json", `{"b":2}`, nil},
		{"another file", both, "big", string(make([]byte, 100)), nil},
		{"absent", first, "nope", "", fs.ErrNotExist},
		{"not a regular file", first, "link", "", ErrFormat},
		{"a directory", first, "rootfs", "", ErrFormat},
		{"over the limit", both, "big", "", ErrFormat},
	} {
		max := int64(1 << 20)
		if c.name == "over the limit" {
			max = 99
		}
		got, err := ReadFile(bytes.NewReader(c.in), c.file, max)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: ReadFile(%q) = %q, %v; want %v", c.name, c.file, got, err, c.err)
			}
			continue
		}
		if err != nil || string(got) != c.want {
			t.Errorf("%s: ReadFile(%q) = %q, %v; want %q", c.name, c.file, got, err, c.want)
		}
	}
}
