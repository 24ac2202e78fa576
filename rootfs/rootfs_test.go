package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/qtenclave/enclave/proto/launch"
	"github.com/qtenclave/enclave/rootfs/cpio"
	"github.com/qtenclave/enclave/rootfs/dirtar"
	"github.com/qtenclave/enclave/rootfs/flatten"
	"github.com/qtenclave/enclave/rootfs/internal/cpiotest"
	"github.com/qtenclave/enclave/rootfs/ocilayout"
)

var (
	readRamdisk = cpiotest.Read
	describe    = cpiotest.Describe
)

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

func mustTar(t testing.TB, entries ...ocilayout.TarEntry) ocilayout.Layer {
	t.Helper()
	b, err := ocilayout.Tar(entries...)
	if err != nil {
		t.Fatal(err)
	}
	return ocilayout.TarLayer(b)
}

func th(name string, typ byte, mode int64) tar.Header {
	return tar.Header{Name: name, Typeflag: typ, Mode: mode}
}

// fixtureDir makes the bottom layer's directory on the host.
func fixtureDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	files := []struct {
		p    string
		mode os.FileMode
		data string
	}{
		{"bin/app", 0o755, "#!/bin/app\n"},
		{"etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n"},
		{"etc/group", 0o644, "root:x:0:\n"},
		{"usr/bin/su", 0o755 | os.ModeSetuid, "su"},
		{"data/a", 0o640, "shared"},
		{"data/old", 0o644, "old"},
		{"opt/x/y", 0o644, "y"},
	}
	for _, f := range files {
		p := filepath.Join(d, f.p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(d, "data/a"), filepath.Join(d, "data/b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("bin/app", filepath.Join(d, "app")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(d, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(d, "tmp"), 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	return d
}

var fixtureConfig = ocilayout.Config{
	Entrypoint: []string{"/bin/app", "--serve"},
	Cmd:        []string{"--port", "8080"},
	Env:        []string{"HOME=/root", "MODE=prod"},
	WorkingDir: "/srv/work",
	User:       "1000:1000",
}

// fixtureImage is a three-layer image: a packed directory, then hand-made
// layers with whiteouts, an opaque directory, a replaced hard-link target,
// device nodes and owners.
func fixtureImage(t testing.TB, cfg ocilayout.Config) v1.Image {
	t.Helper()
	layers := []ocilayout.Layer{
		ocilayout.DirLayer(fixtureDir(t), dirtar.Options{}),
		mustTar(t,
			ocilayout.TarEntry{Header: th("etc/.wh.group", tar.TypeReg, 0o644)},
			ocilayout.TarEntry{Header: th("opt/", tar.TypeDir, 0o755)},
			ocilayout.TarEntry{Header: th("opt/.wh..wh..opq", tar.TypeReg, 0o644)},
			ocilayout.TarEntry{Header: th("opt/new", tar.TypeReg, 0o644), Data: []byte("new")},
			ocilayout.TarEntry{Header: th("data/a", tar.TypeReg, 0o644), Data: []byte("new-a")},
			ocilayout.TarEntry{Header: tar.Header{Name: "data/c", Typeflag: tar.TypeLink, Linkname: "data/b"}},
			ocilayout.TarEntry{Header: tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}},
			ocilayout.TarEntry{Header: th("run/fifo", tar.TypeFifo, 0o600)},
			ocilayout.TarEntry{Header: tar.Header{Name: "home/user/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 1000, Gid: 1000}},
			ocilayout.TarEntry{Header: tar.Header{Name: "home/user/f", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 1000, Gid: 1000}, Data: []byte("mine")},
		),
		mustTar(t, ocilayout.TarEntry{Header: th("data/.wh.old", tar.TypeReg, 0o644)}),
	}
	img, err := ocilayout.Build(cfg, layers, ocilayout.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// writeLayout writes img as an OCI layout tagged "latest" and returns its
// reference.
func writeLayout(t testing.TB, imgs ...v1.Image) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "layout")
	if err := ocilayout.WriteLayout(d, "latest", imgs...); err != nil {
		t.Fatal(err)
	}
	return "oci:" + d + ":latest"
}

func open(t testing.TB, ref string, opts Options) *Image {
	t.Helper()
	img, err := Open(ref, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", ref, err)
	}
	t.Cleanup(func() { img.Close() })
	return img
}

func ramdisk(t testing.TB, img *Image, opts Options) ([]byte, *launch.Manifest, *Stats) {
	t.Helper()
	var b bytes.Buffer
	m, st, err := WriteRamdisk(context.Background(), &b, img, opts)
	if err != nil {
		t.Fatalf("WriteRamdisk(%s): %v", img.Ref(), err)
	}
	if st.ArchiveBytes != int64(b.Len()) {
		t.Errorf("Stats.ArchiveBytes = %d, want %d", st.ArchiveBytes, b.Len())
	}
	return b.Bytes(), m, st
}

func TestOCILayoutRamdisk(t *testing.T) {
	ref := writeLayout(t, fixtureImage(t, fixtureConfig))
	img := open(t, ref, Options{Platform: "linux/amd64"})
	if img.Layers() != 3 || img.Platform() != "linux/amd64" {
		t.Errorf("image has %d layers, platform %q; want 3, linux/amd64", img.Layers(), img.Platform())
	}
	data, m, st := ramdisk(t, img, Options{})
	all, order := readRamdisk(t, data)

	want := map[string]string{
		"rootfs":             "d 0755 0:0",
		"rootfs/app":         "l 0777 0:0 ->bin/app",
		"rootfs/bin":         "d 0755 0:0",
		"rootfs/bin/app":     "f 0755 0:0 =#!/bin/app\n",
		"rootfs/etc":         "d 0755 0:0",
		"rootfs/etc/passwd":  "f 0644 0:0 =root:x:0:0:root:/root:/bin/sh\n",
		"rootfs/usr":         "d 0755 0:0",
		"rootfs/usr/bin":     "d 0755 0:0",
		"rootfs/usr/bin/su":  "f 4755 0:0 =su",
		"rootfs/data":        "d 0755 0:0",
		"rootfs/data/a":      "f 0644 0:0 =new-a",
		"rootfs/data/b":      "f 0640 0:0 =shared",
		"rootfs/data/c":      "f 0640 0:0 =shared",
		"rootfs/opt":         "d 0755 0:0",
		"rootfs/opt/new":     "f 0644 0:0 =new",
		"rootfs/tmp":         "d 1777 0:0",
		"rootfs/dev":         "d 0755 0:0",
		"rootfs/run":         "d 0755 0:0",
		"rootfs/proc":        "d 0555 0:0",
		"rootfs/sys":         "d 0555 0:0",
		"rootfs/var":         "d 0755 0:0",
		"rootfs/home":        "d 0755 0:0",
		"rootfs/home/user":   "d 0700 1000:1000",
		"rootfs/home/user/f": "f 0600 1000:1000 =mine",
		"rootfs/srv":         "d 0755 0:0",
		"rootfs/srv/work":    "d 0755 0:0",
		"cmd":                "f 0644 0:0 =/bin/app\n--serve\n--port\n8080\n",
		"env":                "f 0644 0:0 =HOME=/root\nMODE=prod\nPATH=" + launch.DefaultPath + "\n",
		launch.ManifestPath:  "",
	}
	for n, w := range want {
		r, ok := all[n]
		if !ok {
			t.Errorf("%s missing from the ramdisk", n)
			continue
		}
		if w != "" {
			if got := describe(all, r); got != w {
				t.Errorf("%s = %q, want %q", n, got, w)
			}
		}
	}
	for n, r := range all {
		if _, ok := want[n]; !ok {
			t.Errorf("unexpected %s = %q", n, describe(all, r))
		}
		if r.MTime != 0 {
			t.Errorf("%s mtime = %d, want 0", n, r.MTime)
		}
	}
	if b, c := all["rootfs/data/b"], all["rootfs/data/c"]; b.Ino != c.Ino || b.NLink != 2 || all["rootfs/data/a"].Ino == b.Ino {
		t.Errorf("data/b ino %d nlink %d, data/c ino %d, data/a ino %d: want b and c one inode (nlink 2), a another",
			b.Ino, b.NLink, c.Ino, all["rootfs/data/a"].Ino)
	}
	for i := 1; i < len(order); i++ {
		if !cpio.Less(order[i-1], order[i]) {
			t.Errorf("records out of order: %q before %q", order[i-1], order[i])
		}
	}
	lm, err := launch.Parse([]byte(all[launch.ManifestPath].Data))
	if err != nil {
		t.Fatalf("launch.json: %v", err)
	}
	if !reflect.DeepEqual(lm, m) {
		t.Errorf("launch.json = %+v, want the returned manifest %+v", lm, m)
	}
	wantM := &launch.Manifest{
		Version: 1, Entrypoint: []string{"/bin/app", "--serve"}, Cmd: []string{"--port", "8080"},
		Env: []string{"HOME=/root", "MODE=prod", "PATH=" + launch.DefaultPath}, WorkingDir: "/srv/work", User: "1000:1000",
	}
	if !reflect.DeepEqual(m, wantM) {
		t.Errorf("manifest = %+v, want %+v", m, wantM)
	}
	if st.Dropped != 2 || st.Layers != 3 || st.Files != 7 || st.HardLinks != 1 || st.Whiteouts != 3 {
		t.Errorf("stats = %+v, want Dropped 2 Layers 3 Files 7 HardLinks 1 Whiteouts 3", st.Stats)
	}
}

func TestDockerArchiveMatchesOCI(t *testing.T) {
	img := fixtureImage(t, fixtureConfig)
	ociData, _, _ := ramdisk(t, open(t, writeLayout(t, img), Options{}), Options{})

	tarball := filepath.Join(t.TempDir(), "image.tar")
	if err := ocilayout.WriteDockerArchive(tarball, img, "example/app:1.0"); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"docker-archive:" + tarball, "docker-archive:" + tarball + ":example/app:1.0"} {
		data, _, _ := ramdisk(t, open(t, ref, Options{Platform: "linux/amd64"}), Options{})
		if sum(data) != sum(ociData) {
			t.Errorf("%s: ramdisk sha256 %s, want the OCI layout's %s", ref, sum(data), sum(ociData))
		}
	}
	if _, err := Open("docker-archive:"+tarball+":other/app:2", Options{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open(unknown tag) = %v, want ErrNotFound", err)
	}
}

func TestDirReference(t *testing.T) {
	d := fixtureDir(t)
	img := open(t, "dir:"+d, Options{})
	if img.Platform() != "" || !reflect.DeepEqual(img.Config(), Config{}) {
		t.Errorf("dir image platform %q config %+v, want empty", img.Platform(), img.Config())
	}
	if _, err := Manifest(img, Options{}); !errors.Is(err, launch.ErrNoCommand) {
		t.Errorf("Manifest(dir without command) = %v, want launch.ErrNoCommand", err)
	}
	opts := Options{Override: Config{Cmd: []string{"/bin/app"}, Env: []string{"A=1"}}}
	data, m, _ := ramdisk(t, img, opts)
	all, _ := readRamdisk(t, data)
	if got := describe(all, all["rootfs/usr/bin/su"]); got != "f 4755 0:0 =su" {
		t.Errorf("rootfs/usr/bin/su = %q, want setuid root file", got)
	}
	if b, a := all["rootfs/data/b"], all["rootfs/data/a"]; a.Ino != b.Ino || a.NLink != 2 {
		t.Errorf("dir hard link data/a ino %d nlink %d, data/b ino %d: want one inode, nlink 2", a.Ino, a.NLink, b.Ino)
	}
	if !reflect.DeepEqual(m.Cmd, []string{"/bin/app"}) || !reflect.DeepEqual(m.Env, []string{"A=1", "PATH=" + launch.DefaultPath}) {
		t.Errorf("manifest = %+v, want Cmd [/bin/app] Env [A=1 PATH=...]", m)
	}
	// Host mtimes and atimes do not matter.
	old := time.Unix(1e9, 0)
	filepath.Walk(d, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink == 0 {
			os.Chtimes(p, old, old)
		}
		return nil
	})
	data2, _, _ := ramdisk(t, img, opts)
	if sum(data2) != sum(data) {
		t.Errorf("ramdisk changed after touching the directory's mtimes")
	}
	// DirKeepOwners keeps host owners.
	if err := os.Chown(filepath.Join(d, "etc/passwd"), 123, 456); err != nil {
		t.Skipf("chown: %v (not root?)", err)
	}
	kopts := opts
	kopts.DirKeepOwners = true
	data3, _, _ := ramdisk(t, open(t, "dir:"+d, kopts), kopts)
	all3, _ := readRamdisk(t, data3)
	if r := all3["rootfs/etc/passwd"]; r.UID != 123 || r.GID != 456 {
		t.Errorf("with DirKeepOwners etc/passwd owner = %d:%d, want 123:456", r.UID, r.GID)
	}
	data4, _, _ := ramdisk(t, open(t, "dir:"+d, opts), opts)
	all4, _ := readRamdisk(t, data4)
	if r := all4["rootfs/etc/passwd"]; r.UID != 0 || r.GID != 0 {
		t.Errorf("without DirKeepOwners etc/passwd owner = %d:%d, want 0:0", r.UID, r.GID)
	}
}

func TestPlatformIndex(t *testing.T) {
	mk := func(arch, content string) v1.Image {
		img, err := ocilayout.Build(ocilayout.Config{Cmd: []string{"/app"}, Architecture: arch},
			[]ocilayout.Layer{mustTar(t, ocilayout.TarEntry{Header: th("app", tar.TypeReg, 0o755), Data: []byte(content)})},
			ocilayout.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	ref := writeLayout(t, mk("amd64", "x86"), mk("arm64", "arm"))
	for _, tt := range []struct{ platform, content string }{{"linux/amd64", "x86"}, {"linux/arm64", "arm"}, {"linux/arm64/v8", ""}} {
		img, err := Open(ref, Options{Platform: tt.platform})
		if tt.content == "" {
			if !errors.Is(err, ErrPlatform) {
				t.Errorf("Open(%s) = %v, want ErrPlatform (no v8 variant in the index)", tt.platform, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Open(%s, %s): %v", ref, tt.platform, err)
		}
		data, _, _ := ramdisk(t, img, Options{})
		all, _ := readRamdisk(t, data)
		if got := all["rootfs/app"].Data; got != tt.content || img.Platform() != tt.platform {
			t.Errorf("platform %s: app = %q, image platform %q; want %q, %s", tt.platform, got, img.Platform(), tt.content, tt.platform)
		}
	}
	if _, err := Open(ref, Options{}); !errors.Is(err, ErrPlatform) {
		t.Errorf("Open(index, no platform) = %v, want ErrPlatform", err)
	}
	if _, err := Open(ref, Options{Platform: "linux/s390x"}); !errors.Is(err, ErrPlatform) {
		t.Errorf("Open(index, s390x) = %v, want ErrPlatform", err)
	}
	single := writeLayout(t, mk("arm64", "arm"))
	if _, err := Open(single, Options{Platform: "linux/amd64"}); !errors.Is(err, ErrPlatform) {
		t.Errorf("Open(arm64 image, linux/amd64) = %v, want ErrPlatform", err)
	}
	if _, err := Open(single, Options{Platform: "amd64"}); !errors.Is(err, ErrPlatform) {
		t.Errorf("Open(platform amd64) = %v, want ErrPlatform (not os/arch)", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ref := writeLayout(t, fixtureImage(t, fixtureConfig))
	dir := strings.TrimSuffix(strings.TrimPrefix(ref, "oci:"), ":latest")
	untagged := filepath.Join(t.TempDir(), "untagged")
	if err := ocilayout.WriteLayout(untagged, "", fixtureImage(t, fixtureConfig)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ref  string
		want error
	}{
		{"docker://alpine", ErrReference},
		{"alpine:latest", ErrReference},
		{"dir:", ErrReference},
		{"oci:" + dir + ":nope", ErrNotFound},
		{"oci:" + filepath.Join(t.TempDir(), "missing"), nil},
		{"docker-archive:" + filepath.Join(t.TempDir(), "missing.tar"), nil},
		{"dir:" + filepath.Join(t.TempDir(), "missing"), nil},
		{"dir:" + filepath.Join(dir, "index.json"), nil},
	}
	for _, tt := range tests {
		_, err := Open(tt.ref, Options{})
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("Open(%q) = %v, want error %v", tt.ref, err, tt.want)
		}
	}
	for _, ok := range []string{"oci:" + dir, "oci:" + dir + ":latest", "oci:" + untagged} {
		if _, err := Open(ok, Options{}); err != nil {
			t.Errorf("Open(%q) = %v, want success", ok, err)
		}
	}
}

func TestApplyOverride(t *testing.T) {
	img := Config{Entrypoint: []string{"/ep"}, Cmd: []string{"a", "b"}, Env: []string{"A=1", "B=2"}, WorkingDir: "/w", User: "u"}
	tests := []struct {
		name string
		o    Config
		want Config
	}{
		{"none", Config{}, img},
		{"cmd only", Config{Cmd: []string{"c"}}, Config{Entrypoint: []string{"/ep"}, Cmd: []string{"c"}, Env: img.Env, WorkingDir: "/w", User: "u"}},
		{"entrypoint clears cmd", Config{Entrypoint: []string{"/other"}}, Config{Entrypoint: []string{"/other"}, Env: img.Env, WorkingDir: "/w", User: "u"}},
		{"entrypoint and cmd", Config{Entrypoint: []string{"/other"}, Cmd: []string{"x"}}, Config{Entrypoint: []string{"/other"}, Cmd: []string{"x"}, Env: img.Env, WorkingDir: "/w", User: "u"}},
		{"empty entrypoint resets", Config{Entrypoint: []string{}}, Config{Env: img.Env, WorkingDir: "/w", User: "u"}},
		{"env replace and append", Config{Env: []string{"B=3", "C=4"}}, Config{Entrypoint: []string{"/ep"}, Cmd: []string{"a", "b"}, Env: []string{"A=1", "B=3", "C=4"}, WorkingDir: "/w", User: "u"}},
		{"workdir and user", Config{WorkingDir: "/x", User: "0:0"}, Config{Entrypoint: []string{"/ep"}, Cmd: []string{"a", "b"}, Env: img.Env, WorkingDir: "/x", User: "0:0"}},
	}
	for _, tt := range tests {
		got := ApplyOverride(img, tt.o)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ApplyOverride(%s) = %+v, want %+v", tt.name, got, tt.want)
		}
	}
	if img.Env[1] != "B=2" {
		t.Errorf("ApplyOverride modified its input: Env = %q", img.Env)
	}
}

func TestManifestOptions(t *testing.T) {
	ref := writeLayout(t, fixtureImage(t, ocilayout.Config{Cmd: []string{"/bin/app"}, Env: []string{"PATH=/custom"}}))
	img := open(t, ref, Options{})
	agent := false
	m, err := Manifest(img, Options{Launch: &launch.Manifest{Hostname: "h", TmpNoexec: true, NofileLimit: 4096, Agent: &agent, Cmd: []string{"ignored"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := &launch.Manifest{Version: 1, Cmd: []string{"/bin/app"}, Env: []string{"PATH=/custom"}, Hostname: "h", TmpNoexec: true, NofileLimit: 4096, Agent: &agent}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("Manifest = %+v, want %+v (image PATH kept, enclave options copied)", m, want)
	}
	if _, err := Manifest(img, Options{Override: Config{WorkingDir: "rel"}}); err == nil {
		t.Errorf("Manifest(relative workdir) = nil error, want one")
	}
	if _, err := Manifest(img, Options{Override: Config{Entrypoint: []string{}}}); !errors.Is(err, launch.ErrNoCommand) {
		t.Errorf("Manifest(entrypoint reset, no cmd) = %v, want ErrNoCommand", err)
	}
}

func TestMountPointsKeepImageEntries(t *testing.T) {
	img, err := ocilayout.Build(ocilayout.Config{Cmd: []string{"/x"}}, []ocilayout.Layer{mustTar(t,
		ocilayout.TarEntry{Header: th("x", tar.TypeReg, 0o755)},
		ocilayout.TarEntry{Header: tar.Header{Name: "var", Typeflag: tar.TypeSymlink, Linkname: "/data/var"}},
		ocilayout.TarEntry{Header: th("tmp/", tar.TypeDir, 0o1777)},
		ocilayout.TarEntry{Header: tar.Header{Name: "proc/", Typeflag: tar.TypeDir, Mode: 0o500, Uid: 7}},
	)}, ocilayout.Options{})
	if err != nil {
		t.Fatal(err)
	}
	data, _, _ := ramdisk(t, open(t, writeLayout(t, img), Options{}), Options{})
	all, _ := readRamdisk(t, data)
	for n, w := range map[string]string{
		"rootfs/var": "l 0777 0:0 ->/data/var", "rootfs/tmp": "d 1777 0:0", "rootfs/proc": "d 0500 7:0",
		"rootfs/dev": "d 0755 0:0", "rootfs/sys": "d 0555 0:0", "rootfs/run": "d 0755 0:0",
	} {
		if got := describe(all, all[n]); got != w {
			t.Errorf("%s = %q, want %q", n, got, w)
		}
	}
}

func TestGzipRamdisk(t *testing.T) {
	img := open(t, writeLayout(t, fixtureImage(t, fixtureConfig)), Options{})
	plain, _, _ := ramdisk(t, img, Options{MTime: 42})
	z, _, _ := ramdisk(t, img, Options{MTime: 42, Gzip: true})
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Errorf("gunzip(gzip ramdisk) differs from the plain ramdisk")
	}
	all, _ := readRamdisk(t, plain)
	if all["rootfs/bin/app"].MTime != 42 {
		t.Errorf("mtime = %d, want 42", all["rootfs/bin/app"].MTime)
	}
}

// hostile layers: each must fail naming the layer (index and diff ID) and
// the entry, and leave nothing in the output directory.
func TestHostileLayersLeaveNoOutput(t *testing.T) {
	e := func(h tar.Header) ocilayout.TarEntry { return ocilayout.TarEntry{Header: h, Data: nil} }
	tests := []struct {
		name  string
		layer []ocilayout.TarEntry
		entry string
		want  error
	}{
		{"tar-slip", []ocilayout.TarEntry{{Header: th("../../etc/cron.d/evil", tar.TypeReg, 0o644), Data: []byte("x")}}, "../../etc/cron.d/evil", flatten.ErrDotDot},
		{"absolute", []ocilayout.TarEntry{{Header: th("/etc/passwd", tar.TypeReg, 0o644), Data: []byte("x")}}, "/etc/passwd", flatten.ErrAbsolute},
		{"symlink write-through", []ocilayout.TarEntry{
			e(tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: "/etc"}),
			{Header: th("evil/passwd", tar.TypeReg, 0o644), Data: []byte("x")},
		}, "evil/passwd", flatten.ErrSymlinkParent},
		{"hard link outside", []ocilayout.TarEntry{e(tar.Header{Name: "shadow", Typeflag: tar.TypeLink, Linkname: "../../../etc/shadow"})}, "shadow", flatten.ErrLinkOutside},
		{"whiteout of dotdot", []ocilayout.TarEntry{{Header: th("bin/.wh...", tar.TypeReg, 0o644)}}, "bin/.wh...", flatten.ErrWhiteout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := ocilayout.Build(ocilayout.Config{Cmd: []string{"/bin/app"}}, []ocilayout.Layer{
				ocilayout.DirLayer(fixtureDir(t), dirtar.Options{}), mustTar(t, tt.layer...),
			}, ocilayout.Options{})
			if err != nil {
				t.Fatal(err)
			}
			layers, _ := img.Layers()
			diff, _ := layers[1].DiffID()
			ri := open(t, writeLayout(t, img), Options{})
			outDir := t.TempDir()
			out := filepath.Join(outDir, "app.cpio")
			_, _, err = WriteRamdiskFile(context.Background(), out, ri, Options{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("WriteRamdiskFile = %v, want %v", err, tt.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprintf("layer 1 (%s)", diff)) || !strings.Contains(msg, fmt.Sprintf("%q", tt.entry)) {
				t.Errorf("error %q does not name layer 1 (%s) and entry %q", msg, diff, tt.entry)
			}
			if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
				t.Errorf("output directory holds %v after the failure, want nothing", ents)
			}
		})
	}
}

func TestWriteRamdiskFile(t *testing.T) {
	img := open(t, writeLayout(t, fixtureImage(t, fixtureConfig)), Options{})
	want, _, _ := ramdisk(t, img, Options{})
	outDir := t.TempDir()
	out := filepath.Join(outDir, "app.cpio")
	if err := os.WriteFile(out, []byte("previous"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := WriteRamdiskFile(context.Background(), out, img, Options{}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); !bytes.Equal(got, want) {
		t.Errorf("WriteRamdiskFile output differs from WriteRamdisk's")
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o644 {
		t.Errorf("output mode %v, want 0644", fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(outDir); len(ents) != 1 {
		t.Errorf("output directory holds %d entries, want only the output", len(ents))
	}
	// A cancelled build leaves the previous file untouched and no temp file.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := WriteRamdiskFile(ctx, out, img, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteRamdiskFile(cancelled) = %v, want context.Canceled", err)
	}
	if got := readFile(t, out); !bytes.Equal(got, want) {
		t.Errorf("cancelled build changed the existing output")
	}
	if ents, _ := os.ReadDir(outDir); len(ents) != 1 {
		t.Errorf("output directory holds %d entries after a cancelled build, want 1", len(ents))
	}
}

// TestDeterminism writes the same image in this process and in
// subprocesses with another time zone, umask and working directory, and
// compares the bytes.
func TestDeterminism(t *testing.T) {
	ref := writeLayout(t, fixtureImage(t, fixtureConfig))
	first, _, _ := ramdisk(t, open(t, ref, Options{}), Options{})
	second, _, _ := ramdisk(t, open(t, ref, Options{}), Options{})
	if sum(first) != sum(second) {
		t.Fatalf("two builds in one process differ: %s vs %s", sum(first), sum(second))
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to set the umask of a subprocess")
	}
	for _, env := range []struct{ tz, umask string }{{"Asia/Kolkata", "077"}, {"America/St_Johns", "000"}} {
		out := filepath.Join(t.TempDir(), "out.cpio")
		cmd := exec.Command(sh, "-c", "umask "+env.umask+"; exec \"$0\" -test.run='^TestHelperWriteRamdisk$'", os.Args[0])
		cmd.Dir = t.TempDir()
		cmd.Env = append(os.Environ(), "TZ="+env.tz, "ROOTFS_HELPER_REF="+ref, "ROOTFS_HELPER_OUT="+out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("helper (TZ=%s umask %s): %v\n%s", env.tz, env.umask, err, b)
		}
		if got := readFile(t, out); sum(got) != sum(first) {
			t.Errorf("TZ=%s umask %s: sha256 %s, want %s", env.tz, env.umask, sum(got), sum(first))
		}
	}
}

func TestHelperWriteRamdisk(t *testing.T) {
	ref, out := os.Getenv("ROOTFS_HELPER_REF"), os.Getenv("ROOTFS_HELPER_OUT")
	if ref == "" {
		t.Skip("helper for TestDeterminism")
	}
	img, err := Open(ref, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := WriteRamdiskFile(context.Background(), out, img, Options{}); err != nil {
		t.Fatal(err)
	}
}

// TestLayoutBlobVerified replaces a layer blob of an OCI layout by another
// valid gzip stream of the same tar: the build must fail on the digest.
func TestLayoutBlobVerified(t *testing.T) {
	img := fixtureImage(t, fixtureConfig)
	ref := writeLayout(t, img)
	dir := strings.TrimSuffix(strings.TrimPrefix(ref, "oci:"), ":latest")
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	digest, _ := layers[2].Digest()
	diffID, _ := layers[2].DiffID()
	rc, err := layers[2].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(rc)
	rc.Close()
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	zw.Write(plain)
	zw.Close()
	blob := filepath.Join(dir, "blobs", digest.Algorithm, digest.Hex)
	if err := os.WriteFile(blob, z.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = WriteRamdisk(context.Background(), io.Discard, open(t, ref, Options{}), Options{})
	if !errors.Is(err, ErrDigest) || !strings.Contains(err.Error(), fmt.Sprintf("layer 2 (%s)", diffID)) {
		t.Errorf("WriteRamdisk with a swapped blob = %v, want ErrDigest naming layer 2 (%s)", err, diffID)
	}
}

// TestNameAndTag: the name and tag an image's metadata records come from
// the reference as Open resolved it, so a docker-archive path holding ':'
// names the archive, not a part of its path.
func TestNameAndTag(t *testing.T) {
	img := fixtureImage(t, fixtureConfig)
	dir := filepath.Join(t.TempDir(), "v1:archives")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(dir, "web.tar")
	if err := ocilayout.WriteDockerArchive(tarball, img, "example/app:1.25"); err != nil {
		t.Fatal(err)
	}
	layout := writeLayout(t, img)
	fsDir := fixtureDir(t)
	for _, tc := range []struct{ ref, name, tag string }{
		{"docker-archive:" + tarball, "web", "latest"},
		{"docker-archive:" + tarball + ":example/app:1.25", "web", "1.25"},
		{layout, "layout", "latest"},
		{strings.TrimSuffix(layout, ":latest"), "layout", "latest"},
		{"dir:" + fsDir + "/", filepath.Base(fsDir), "latest"},
	} {
		got := open(t, tc.ref, Options{})
		if got.Name() != tc.name || got.Tag() != tc.tag {
			t.Errorf("Open(%q) name, tag = %q, %q, want %q, %q", tc.ref, got.Name(), got.Tag(), tc.name, tc.tag)
		}
	}
}

// TestHostileImageConfigRefused: a hostile image config cannot carry
// control characters into launch.json: the build refuses it (issue 14,
// item 3), with the same check init applies at boot.
func TestHostileImageConfigRefused(t *testing.T) {
	ref := writeLayout(t, fixtureImage(t, ocilayout.Config{
		Cmd:        []string{"/bin/app"},
		WorkingDir: "/srv\nqtenclave-exit: code=0 signal=0 reason=exited",
	}))
	img := open(t, ref, Options{})
	if _, err := Manifest(img, Options{}); !errors.Is(err, launch.ErrInvalid) {
		t.Errorf("Manifest(working dir with a forged status line) = %v, want launch.ErrInvalid", err)
	}
	out := filepath.Join(t.TempDir(), "app.cpio")
	if _, _, err := WriteRamdiskFile(context.Background(), out, img, Options{}); !errors.Is(err, launch.ErrInvalid) {
		t.Errorf("WriteRamdiskFile = %v, want launch.ErrInvalid", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("output written despite the error: %v", err)
	}
	clean := writeLayout(t, fixtureImage(t, ocilayout.Config{Cmd: []string{"/bin/app"}}))
	if _, err := Manifest(open(t, clean, Options{}), Options{Launch: &launch.Manifest{Hostname: "h\n6.6.6.6 attacker.example"}}); !errors.Is(err, launch.ErrInvalid) {
		t.Errorf("Manifest(hostname with a hosts line) = %v, want launch.ErrInvalid", err)
	}
}
