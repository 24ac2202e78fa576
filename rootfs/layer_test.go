package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/qtenclave/enclave/rootfs/ocilayout"
)

// tarBytes is a one-file tar.
func tarBytes(t *testing.T, name, data string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data))})
	tw.Write([]byte(data))
	tw.Close()
	return b.Bytes()
}

// oneLayerImage is an OCI image of one layer, stored as given with media
// type mt; diffID, when set, replaces the config's diff_id.
func oneLayerImage(t *testing.T, blob []byte, mt types.MediaType, diffID *v1.Hash) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), static.NewLayer(blob, mt))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Cmd = []string{"/app"}
	if diffID != nil {
		cf.RootFS.DiffIDs = []v1.Hash{*diffID}
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return mutate.ConfigMediaType(img, types.OCIConfigJSON)
}

func gz(t *testing.T, b []byte) []byte {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b)
	zw.Close()
	return z.Bytes()
}

// TestEveryBlobVerified: a layout's blob of any media type is checked
// against its descriptor's digest and size, and its content against the
// config's diff_id, before anything from it reaches a ramdisk (issue 14,
// item 1).
func TestEveryBlobVerified(t *testing.T) {
	good := tarBytes(t, "app", "the real app")
	evil := tarBytes(t, "app", "a substituted app")
	goodDigest, _, _ := v1.SHA256(bytes.NewReader(good))
	otherDiff, _, _ := v1.SHA256(strings.NewReader("something else"))
	for _, tc := range []struct {
		name    string
		img     v1.Image
		replace []byte // the blob's bytes swapped for these after writing
		want    error
		says    string
	}{
		{"uncompressed, intact", oneLayerImage(t, good, types.OCIUncompressedLayer, nil), nil, nil, ""},
		{"uncompressed blob swapped", oneLayerImage(t, good, types.OCIUncompressedLayer, nil), evil, ErrDigest, "the manifest says " + goodDigest.String()},
		{"uncompressed blob swapped, same size", oneLayerImage(t, good, types.OCIUncompressedLayer, nil),
			append(bytes.Clone(good[:len(good)-1]), 'x'), ErrDigest, "the manifest says"},
		{"gzip, wrong diff_id", oneLayerImage(t, gz(t, good), types.OCILayer, &otherDiff), nil, ErrDigest, "the config's diff_id is " + otherDiff.String()},
		{"uncompressed, wrong diff_id", oneLayerImage(t, good, types.OCIUncompressedLayer, &otherDiff), nil, ErrDigest, "diff_id"},
		{"zstd type over gzip bytes", oneLayerImage(t, gz(t, good), types.OCILayerZStd, nil), nil, ErrCompression, "promises zstd, the blob is gzip"},
		{"gzip type over a plain tar", oneLayerImage(t, good, types.OCILayer, nil), nil, ErrCompression, "promises gzip, the blob is uncompressed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := writeLayout(t, tc.img)
			if tc.replace != nil {
				layers, _ := tc.img.Layers()
				d, _ := layers[0].Digest()
				dir := strings.TrimSuffix(strings.TrimPrefix(ref, "oci:"), ":latest")
				if err := os.WriteFile(filepath.Join(dir, "blobs", d.Algorithm, d.Hex), tc.replace, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out := filepath.Join(t.TempDir(), "app.cpio")
			img := open(t, ref, Options{})
			_, _, err := WriteRamdiskFile(context.Background(), out, img, Options{})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("WriteRamdiskFile = %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "layer 0") {
				t.Errorf("WriteRamdiskFile = %v, want %v naming layer 0 and saying %q", err, tc.want, tc.says)
			}
			if _, serr := os.Stat(out); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("a ramdisk was written despite the error")
			}
		})
	}
}

// TestDockerArchiveDiffIDChecked: a docker-archive whose config's diff_id
// does not match its layer is refused too.
func TestDockerArchiveDiffIDChecked(t *testing.T) {
	other, _, _ := v1.SHA256(strings.NewReader("something else"))
	img := oneLayerImage(t, gz(t, tarBytes(t, "app", "x")), types.DockerLayer, &other)
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := ocilayout.WriteDockerArchive(path, img, "example/app:1"); err != nil {
		t.Fatal(err)
	}
	_, _, err := WriteRamdisk(context.Background(), io.Discard, open(t, "docker-archive:"+path, Options{}), Options{})
	if !errors.Is(err, ErrDigest) || !strings.Contains(err.Error(), "diff_id") {
		t.Errorf("WriteRamdisk(docker-archive, wrong diff_id) = %v, want ErrDigest about the diff_id", err)
	}
}

// TestBuildChecksLikeInit: the image is checked at build time with init's
// own resolution (proto/workload), so what would end the boot is refused
// by the build, with init's message (issue 14, item 11).
func TestBuildChecksLikeInit(t *testing.T) {
	layer := func(entries ...ocilayout.TarEntry) ocilayout.Layer { return mustTar(t, entries...) }
	passwd := ocilayout.TarEntry{Header: th("etc/passwd", tar.TypeReg, 0o644), Data: []byte("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")}
	group := ocilayout.TarEntry{Header: th("etc/group", tar.TypeReg, 0o644), Data: []byte("root:x:0:\napp:x:1000:\n")}
	python := ocilayout.TarEntry{Header: th("usr/bin/python3", tar.TypeReg, 0o755), Data: []byte("#!")}
	merged := ocilayout.TarEntry{Header: tar.Header{Name: "bin", Typeflag: tar.TypeSymlink, Linkname: "usr/bin"}}
	for _, tc := range []struct {
		name string
		cfg  ocilayout.Config
		want string // "" = builds
	}{
		{"found through PATH and a merged-usr link", ocilayout.Config{Cmd: []string{"python3", "app.py"}, Env: []string{"PATH=/bin"}, User: "app"}, ""},
		{"absolute through a link", ocilayout.Config{Cmd: []string{"/bin/python3"}}, ""},
		{"unknown user", ocilayout.Config{Cmd: []string{"/usr/bin/python3"}, User: "nobody"}, `user "nobody": unknown user "nobody": no matching entry in /etc/passwd (init would end the boot with status 125, reason user)`},
		{"not in PATH", ocilayout.Config{Cmd: []string{"node"}}, `exec "node": executable file not found in $PATH`},
		{"workdir is a file", ocilayout.Config{Cmd: []string{"/usr/bin/python3"}, WorkingDir: "/etc/passwd"}, `working directory "/etc/passwd": not a directory`},
		{"not executable", ocilayout.Config{Cmd: []string{"/etc/group"}}, "status 126"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := ocilayout.Build(tc.cfg, []ocilayout.Layer{layer(passwd, group, python, merged)}, ocilayout.Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = WriteRamdisk(context.Background(), io.Discard, open(t, writeLayout(t, img), Options{}), Options{})
			if tc.want == "" {
				if err != nil {
					t.Errorf("WriteRamdisk = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrWorkload) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("WriteRamdisk = %v, want ErrWorkload saying %q", err, tc.want)
			}
		})
	}
}
