package ocilayout

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/qtenclave/enclave/rootfs/dirtar"
)

func testLayers(t *testing.T) []Layer {
	t.Helper()
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, "app"), []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	raw, err := Tar(TarEntry{Header: tar.Header{Name: ".wh.old", Typeflag: tar.TypeReg}},
		TarEntry{Header: tar.Header{Name: "etc/x", Typeflag: tar.TypeReg, Mode: 0o644}, Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	return []Layer{DirLayer(d, dirtar.Options{}), TarLayer(raw)}
}

var cfg = Config{Entrypoint: []string{"/app"}, Cmd: []string{"-v"}, Env: []string{"A=1"}, WorkingDir: "/w", User: "1:1", Architecture: "arm64", Variant: "v8"}

func TestBuildDeterministic(t *testing.T) {
	a, err := Build(cfg, testLayers(t), Options{Created: 1700000000})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(cfg, testLayers(t), Options{Created: 1700000000})
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("two builds of the same inputs: digests %s and %s", da, db)
	}
	cf, err := a.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Created.Unix() != 1700000000 || cf.OS != "linux" || cf.Architecture != "arm64" || cf.Variant != "v8" {
		t.Errorf("config created %v platform %s/%s/%s, want 1700000000 linux/arm64/v8", cf.Created, cf.OS, cf.Architecture, cf.Variant)
	}
	if !reflect.DeepEqual(cf.Config.Entrypoint, cfg.Entrypoint) || !reflect.DeepEqual(cf.Config.Cmd, cfg.Cmd) ||
		!reflect.DeepEqual(cf.Config.Env, cfg.Env) || cf.Config.WorkingDir != "/w" || cf.Config.User != "1:1" {
		t.Errorf("config = %+v, want %+v", cf.Config, cfg)
	}
	for _, h := range cf.History {
		if h.Created.Unix() != 1700000000 {
			t.Errorf("history created %v, want 1700000000", h.Created)
		}
	}
	if len(cf.RootFS.DiffIDs) != 2 {
		t.Errorf("config lists %d diff IDs, want 2", len(cf.RootFS.DiffIDs))
	}
}

func TestWriteLayout(t *testing.T) {
	img, err := Build(cfg, testLayers(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "l")
	if err := WriteLayout(dir, "v1", img); err != nil {
		t.Fatal(err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	want, _ := img.Digest()
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations[RefNameAnnotation] != "v1" || im.Manifests[0].Digest != want {
		t.Fatalf("index.json manifests = %+v, want one %s named v1", im.Manifests, want)
	}
	// Rewriting replaces index.json instead of appending.
	if err := WriteLayout(dir, "v2", img); err != nil {
		t.Fatal(err)
	}
	idx, _ = layout.ImageIndexFromPath(dir)
	im, _ = idx.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations[RefNameAnnotation] != "v2" {
		t.Errorf("after rewrite index.json = %+v, want one manifest named v2", im.Manifests)
	}
	// Two images become a platform index.
	amd, _ := Build(Config{Cmd: []string{"/x"}}, testLayers(t), Options{})
	if err := WriteLayout(dir, "multi", amd, img); err != nil {
		t.Fatal(err)
	}
	idx, _ = layout.ImageIndexFromPath(dir)
	im, _ = idx.IndexManifest()
	if len(im.Manifests) != 1 || !im.Manifests[0].MediaType.IsIndex() {
		t.Fatalf("index.json = %+v, want one image index", im.Manifests)
	}
	child, err := idx.ImageIndex(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cm, _ := child.IndexManifest()
	var plats []string
	for _, d := range cm.Manifests {
		plats = append(plats, d.Platform.String())
	}
	if !reflect.DeepEqual(plats, []string{"linux/amd64", "linux/arm64/v8"}) {
		t.Errorf("index platforms = %q, want [linux/amd64 linux/arm64/v8]", plats)
	}
	if err := WriteLayout(dir, "x"); err == nil {
		t.Errorf("WriteLayout(no image) = nil error, want one")
	}
}

func TestWriteDockerArchive(t *testing.T) {
	img, err := Build(cfg, testLayers(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "img.tar")
	if err := WriteDockerArchive(p, img, "example/app:1"); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("example/app:1")
	back, err := tarball.ImageFromPath(p, &tag)
	if err != nil {
		t.Fatalf("tarball.ImageFromPath: %v", err)
	}
	wantCfg, _ := img.ConfigName()
	gotCfg, _ := back.ConfigName()
	if wantCfg != gotCfg {
		t.Errorf("config digest %s, want %s", gotCfg, wantCfg)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(p) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || len(m[0].Layers) != 2 || !reflect.DeepEqual(m[0].RepoTags, []string{"example/app:1"}) {
		t.Fatalf("manifest.json = %+v, want one image, two layers, tag example/app:1", m)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	seen := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(h.Name) != "layer.tar" {
			continue
		}
		seen++
		head := make([]byte, 2)
		io.ReadFull(tr, head)
		if head[0] == 0x1f && head[1] == 0x8b {
			t.Errorf("%s is gzip-compressed, want a plain tar as docker save writes", h.Name)
		}
	}
	if seen != 2 {
		t.Errorf("found %d layer.tar members, want 2", seen)
	}
}
