// Package ocilayout builds container images without a Docker daemon: from
// directories or hand-made tar layers plus a runtime config, written as an
// OCI image layout (what `oci:DIR:TAG` references open) or as a `docker
// save` tarball (`docker-archive:PATH`).
//
// Output is deterministic: layers are packed by rootfs/dirtar (fixed mtime,
// sorted, root-owned by default) and gzip-compressed by go-containerregistry
// at a fixed level; the config's created time and history times are
// Options.Created (default the epoch). Same inputs, same digests — for a
// given Go toolchain, since gzip output may change between releases.
//
// Usage:
//
//	img, err := ocilayout.Build(ocilayout.Config{Entrypoint: []string{"/app"}},
//		[]ocilayout.Layer{ocilayout.DirLayer("./rootfs", dirtar.Options{})}, ocilayout.Options{})
//	err = ocilayout.WriteLayout("out/layout", "latest", img)
package ocilayout

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/qtenclave/enclave/rootfs/dirtar"
)

// RefNameAnnotation names a manifest in index.json.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// Config is the image config: runtime settings and platform.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	// OS and Architecture default to "linux" and "amd64".
	OS, Architecture, Variant string
}

// Layer is an uncompressed tar stream that can be opened more than once.
type Layer struct {
	Open func() (io.ReadCloser, error)
}

// DirLayer packs a directory with rootfs/dirtar each time it is opened.
func DirLayer(dir string, opts dirtar.Options) Layer {
	return Layer{Open: func() (io.ReadCloser, error) {
		if fi, err := os.Stat(dir); err != nil {
			return nil, err
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("ocilayout: %s is not a directory", dir)
		}
		return dirtar.Open(dir, opts), nil
	}}
}

// TarLayer is a layer whose tar stream is data, taken as is (not checked:
// tests use it for hostile layers).
func TarLayer(data []byte) Layer {
	return Layer{Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}
}

// FileLayer is a layer whose tar stream is the file at path.
func FileLayer(path string) Layer {
	return Layer{Open: func() (io.ReadCloser, error) { return os.Open(path) }}
}

// TarEntry is one entry of a tar built by Tar.
type TarEntry struct {
	Header tar.Header
	Data   []byte // content of a regular file (Header.Size is set from it)
}

// Tar builds a tar stream from entries, in the given order, exactly as
// described (names are not cleaned or checked). ModTime defaults to the
// epoch and Format to PAX.
func Tar(entries ...TarEntry) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.Header
		if h.Typeflag == tar.TypeReg || (h.Typeflag == 0 && len(e.Data) > 0) {
			h.Size = int64(len(e.Data))
		}
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(0, 0)
		}
		if h.Format == tar.FormatUnknown {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("ocilayout: tar entry %q: %w", h.Name, err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Options control Build.
type Options struct {
	// Created is the config's created time and every history entry's, in
	// seconds since the epoch (SOURCE_DATE_EPOCH; default 0).
	Created int64
}

// Build assembles an image from layers (bottom first) and a config.
func Build(cfg Config, layers []Layer, opts Options) (v1.Image, error) {
	created := v1.Time{Time: time.Unix(opts.Created, 0).UTC()}
	var adds []mutate.Addendum
	for i, l := range layers {
		if l.Open == nil {
			return nil, fmt.Errorf("ocilayout: layer %d has no content", i)
		}
		tl, err := tarball.LayerFromOpener(tarball.Opener(l.Open), tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, fmt.Errorf("ocilayout: layer %d: %w", i, err)
		}
		adds = append(adds, mutate.Addendum{
			Layer:     tl,
			MediaType: types.OCILayer,
			History:   v1.History{Created: created, CreatedBy: "ocilayout"},
		})
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = created
	cf.OS, cf.Architecture, cf.Variant = cfg.OS, cfg.Architecture, cfg.Variant
	if cf.OS == "" {
		cf.OS = "linux"
	}
	if cf.Architecture == "" {
		cf.Architecture = "amd64"
	}
	cf.Config = v1.Config{
		Entrypoint: cfg.Entrypoint,
		Cmd:        cfg.Cmd,
		Env:        cfg.Env,
		WorkingDir: cfg.WorkingDir,
		User:       cfg.User,
	}
	return mutate.ConfigFile(img, cf)
}

// Platform is the image's platform, from its config.
func Platform(img v1.Image) (*v1.Platform, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	return &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}, nil
}

// WriteLayout writes an OCI image layout to dir (created if needed;
// index.json is replaced). One image is listed in index.json under tag;
// several become an image index (each entry with its platform) listed under
// tag. An empty tag leaves the entry unnamed.
func WriteLayout(dir, tag string, imgs ...v1.Image) error {
	if len(imgs) == 0 {
		return errors.New("ocilayout: no image")
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	var lopts []layout.Option
	if tag != "" {
		lopts = append(lopts, layout.WithAnnotations(map[string]string{RefNameAnnotation: tag}))
	}
	if len(imgs) == 1 {
		return p.AppendImage(imgs[0], lopts...)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, img := range imgs {
		plat, err := Platform(img)
		if err != nil {
			return err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: plat},
		})
	}
	return p.AppendIndex(idx, lopts...)
}

// WriteDockerArchive writes img as `docker save` does: manifest.json, the
// config blob and one uncompressed layer.tar per layer, so that it
// exercises the uncompressed-layer path of docker-archive: references.
// repoTags (e.g. "app:latest") name the image; none leaves it unnamed.
func WriteDockerArchive(path string, img v1.Image, repoTags ...string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	tw := tar.NewWriter(f)
	epoch := time.Unix(0, 0)
	add := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cfgFile := cfgName.Hex + ".json"
	if err := add(cfgFile, int64(len(raw)), bytes.NewReader(raw)); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var layerFiles []string
	for _, l := range layers {
		d, err := l.DiffID()
		if err != nil {
			return err
		}
		name := d.Hex + "/layer.tar"
		size, err := uncompressedSize(l)
		if err != nil {
			return err
		}
		rc, err := l.Uncompressed()
		if err != nil {
			return err
		}
		err = add(name, size, rc)
		rc.Close()
		if err != nil {
			return err
		}
		layerFiles = append(layerFiles, name)
	}
	if repoTags == nil {
		repoTags = []string{}
	}
	man, err := json.Marshal([]map[string]any{{"Config": cfgFile, "RepoTags": repoTags, "Layers": layerFiles}})
	if err != nil {
		return err
	}
	if err := add("manifest.json", int64(len(man)), bytes.NewReader(man)); err != nil {
		return err
	}
	return tw.Close()
}

func uncompressedSize(l v1.Layer) (int64, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	return io.Copy(io.Discard, rc)
}
