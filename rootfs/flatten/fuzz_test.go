package flatten

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/qtenclave/enclave/rootfs/cpio"
)

// FuzzFlattenTar applies two arbitrary byte strings as layers. It must never panic, every
// failure must be an *Error naming the layer, and a tree that was accepted
// must always be writable as a cpio archive.
func FuzzFlattenTar(f *testing.F) {
	for _, s := range seedLayers(f) {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, lower, upper []byte) {
		checkLayers(t, lower, upper)
	})
}

// FuzzFlatten applies layers built from a small script, so that the
// fuzzer explores the flattener's rules rather than tar checksums. Each
// line is OP LAYER NAME [ARG]: OP f file (ARG content), d dir, l symlink
// (ARG target), h hard link (ARG target), c char device, p FIFO, w whiteout
// of NAME, o opaque marker in NAME, s setuid file; LAYER is 0-3.
func FuzzFlatten(f *testing.F) {
	for _, s := range seedScripts {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, script string) {
		checkLayers(t, scriptLayers(t, script)...)
	})
}

var seedScripts = []string{
	"d0 a/\nf0 a/x one\nh0 a/y a/x\nl0 s a\nw1 a/x\no1 a",
	"f0 t2 123\nf1 t1 1\nh1 t2 t1\nh1 t3 t1\nf2 t1 456",
	"l0 etc /etc\nf1 etc/passwd x",
	"f0 ../evil x\nh1 h /etc/shadow",
	"c0 dev/null\np0 fifo\nh0 f2 fifo\nw1 ..",
	"d0 ./\ns0 bin/su su\nw1 bin\nd1 bin/\nf1 bin/sh sh",
	"f0 A content\nh0 Z A\nw1 A\nh2 B Z",
	"d0 a/b/c/\nf0 a/b/c/d x\no1 a\nf1 a/b/new n\nw2 a/b",
}

func scriptLayers(t testing.TB, script string) [][]byte {
	layers := make([][]tarEntry, 4)
	for _, line := range strings.Split(script, "\n") {
		if len(line) < 3 {
			continue
		}
		op, li := line[0], int(line[1]-'0')
		if li < 0 || li > 3 {
			li = 0
		}
		fields := strings.SplitN(line[2:], " ", 3)
		name, arg := "", ""
		if len(fields) > 1 {
			name = fields[1]
		}
		if len(fields) > 2 {
			arg = fields[2]
		}
		var e tarEntry
		switch op {
		case 'f':
			e = file(name, arg)
		case 's':
			e = fileM(name, 0o4755, 0, 0, arg)
		case 'd':
			e = dirM(name, 0o750, 1, 2)
		case 'l':
			e = sym(name, arg)
		case 'h':
			e = hard(name, arg)
		case 'c':
			e = devnode(name, tar.TypeChar)
		case 'p':
			e = devnode(name, tar.TypeFifo)
		case 'w':
			d, b := path.Split(name)
			e = file(d+".wh."+b, "")
		case 'o':
			e = file(strings.TrimSuffix(name, "/")+"/.wh..wh..opq", "")
		default:
			continue
		}
		layers[li] = append(layers[li], e)
	}
	var out [][]byte
	for _, l := range layers {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, e := range l {
			h := e.h
			h.Format = tar.FormatPAX
			if tw.WriteHeader(&h) != nil {
				continue // not encodable: the fuzzer made a name tar refuses
			}
			io.WriteString(tw, e.data)
		}
		tw.Close()
		out = append(out, b.Bytes())
	}
	return out
}

func checkLayers(t *testing.T, layers ...[]byte) {
	tree, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	for i, l := range layers {
		if err := tree.Apply(Layer{Index: i}, bytes.NewReader(l)); err != nil {
			var fe *Error
			if !errors.As(err, &fe) || fe.Layer.Index != i {
				t.Fatalf("Apply(layer %d) = %v, want a *flatten.Error naming layer %d", i, err, i)
			}
			return
		}
	}
	w := cpio.NewWriter(io.Discard, cpio.Options{})
	if _, err := tree.AddTo(w, "rootfs"); err != nil {
		t.Fatalf("AddTo after accepted layers: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("cpio Close after accepted layers: %v", err)
	}
}

// seedLayers are layer pairs exercising whiteouts, links and hostile names.
func seedLayers(t testing.TB) [][2][]byte {
	return [][2][]byte{
		{mkTar(t, dir("a/"), file("a/x", "x"), hard("a/y", "a/x"), sym("s", "a")), mkTar(t, file("a/.wh.x", ""), file("a/.wh..wh..opq", ""))},
		{mkTar(t, file("t2", "123")), mkTar(t, file("t1", "1"), hard("t2", "t1"), hard("t3", "t1"))},
		{mkTar(t, sym("etc", "/etc")), mkTar(t, file("etc/passwd", "x"))},
		{mkTar(t, file("../evil", "x")), mkTar(t, hard("h", "/etc/shadow"))},
		{mkTar(t, devnode("dev/null", '3'), devnode("p", '6')), mkTar(t, file(".wh...", ""))},
		{mkTar(t, dirM("./", 0o700, 1, 1), fileM("bin/su", 0o4755, 0, 0, "su")), mkTar(t, file(".wh.bin", ""), dir("bin/"))},
	}
}

// TestWriteFuzzSeeds refreshes testdata/fuzz/ from seedLayers and seedScripts
// when FLATTEN_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("FLATTEN_WRITE_SEEDS") != "1" {
		t.Skip("set FLATTEN_WRITE_SEEDS=1 to rewrite testdata/fuzz/FuzzFlatten")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzFlattenTar")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range seedLayers(t) {
		data := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s[0])) + ")\n[]byte(" + strconv.Quote(string(s[1])) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, "seed"+strconv.Itoa(i)), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir = filepath.Join("testdata", "fuzz", "FuzzFlatten")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range seedScripts {
		data := "go test fuzz v1\nstring(" + strconv.Quote(s) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, "seed"+strconv.Itoa(i)), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
