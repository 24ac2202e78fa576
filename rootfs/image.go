package rootfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/qtenclave/enclave/proto/launch"
	"github.com/qtenclave/enclave/rootfs/dirtar"
	"github.com/qtenclave/enclave/rootfs/flatten"
)

// Reference prefixes accepted by Open.
const (
	DockerArchivePrefix = "docker-archive:"
	OCIPrefix           = "oci:"
	DirPrefix           = "dir:"
)

// RefNameAnnotation names a manifest in an OCI layout's index.json.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// Errors callers can test for with errors.Is.
var (
	ErrReference = errors.New("rootfs: bad image reference")
	ErrPlatform  = errors.New("rootfs: platform")
	ErrNotFound  = errors.New("rootfs: image not found")
)

// Config is the part of an image config that becomes the launch manifest.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
}

// Options configure Open and WriteRamdisk; one value serves both.
type Options struct {
	// Platform is "linux/amd64" or "linux/arm64" (optionally with a
	// variant): the manifest chosen from an image index, and what the
	// image config must name. Empty accepts a single-platform image as is.
	Platform string
	// Override is applied to the image config the way docker run's flags
	// are (see the package documentation): nil slices and empty strings
	// keep the image's values.
	Override Config
	// Launch, when non-nil, supplies the enclave options of the manifest
	// (Hostname, TmpNoexec, NofileLimit, Agent); its other fields are
	// ignored.
	Launch *launch.Manifest
	// MTime is every record's mtime in seconds (see cpio.SourceDateEpoch).
	MTime int64
	// Gzip compresses the ramdisk (cpio.Options.Gzip).
	Gzip bool
	// TempDir holds the spool file (default: the output's directory for
	// WriteRamdiskFile, os.TempDir() otherwise).
	TempDir string
	// DirKeepOwners keeps host uid/gid for dir: references (default root).
	DirKeepOwners bool
	// Logf, when set, receives progress and warnings (dropped devices).
	Logf func(format string, args ...any)
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// Image is an opened image reference: its config and a way to read its
// layers, bottom first.
type Image struct {
	ref      string
	name     string // the reference's file or directory, without .tar/.tar.gz/.tgz
	tag      string // the tag it named, else "latest"
	platform string
	config   Config
	layers   []layerSource
}

type layerSource struct {
	id   flatten.Layer
	open func() (io.ReadCloser, error)
}

// Ref is the reference the image was opened with.
func (img *Image) Ref() string { return img.ref }

// Name is the image's name as its reference gives it: the base name of
// its directory, layout or archive (without .tar, .tar.gz or .tgz).
func (img *Image) Name() string { return img.name }

// Tag is the tag the reference named (oci:DIR:TAG, or the tag of
// docker-archive:PATH:REPO:TAG), else "latest".
func (img *Image) Tag() string { return img.tag }

// Platform is the image config's "os/arch[/variant]" ("" for dir:).
func (img *Image) Platform() string { return img.platform }

// Config is the image's own config, before overrides.
func (img *Image) Config() Config { return cloneConfig(img.config) }

// Layers is the number of layers.
func (img *Image) Layers() int { return len(img.layers) }

// Close releases the image. Files are opened only while layers are read,
// so it has nothing to release today; call it anyway.
func (img *Image) Close() error { return nil }

// Open resolves an image reference (see the package documentation).
// Nothing is read beyond the manifests and the config.
func Open(ref string, opts Options) (*Image, error) {
	var want *v1.Platform
	if opts.Platform != "" {
		p, err := v1.ParsePlatform(opts.Platform)
		if err != nil || p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("%w: %q is not os/arch", ErrPlatform, opts.Platform)
		}
		want = p
	}
	switch {
	case strings.HasPrefix(ref, DirPrefix):
		return openDir(ref, strings.TrimPrefix(ref, DirPrefix), opts)
	case strings.HasPrefix(ref, OCIPrefix):
		img, dir, tag, err := openOCI(strings.TrimPrefix(ref, OCIPrefix), want)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", ref, err)
		}
		name, tag := named(dir, tag)
		return fromV1(ref, img, want, true, name, tag)
	case strings.HasPrefix(ref, DockerArchivePrefix):
		img, path, tag, err := openDockerArchive(strings.TrimPrefix(ref, DockerArchivePrefix))
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", ref, err)
		}
		name, tag := named(path, tag)
		return fromV1(ref, img, want, false, name, tag)
	}
	return nil, fmt.Errorf("%w: %q: want docker-archive:PATH, oci:DIR[:TAG] or dir:PATH", ErrReference, ref)
}

// named is an image's name and tag from the path and tag of its reference.
func named(path, tag string) (name, version string) {
	name = filepath.Base(filepath.Clean(path))
	for _, ext := range []string{".tar.gz", ".tgz", ".tar"} {
		name = strings.TrimSuffix(name, ext)
	}
	if tag == "" {
		tag = "latest"
	}
	return name, tag
}

func openDir(ref, dir string, opts Options) (*Image, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: %q: empty path", ErrReference, ref)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", ref, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open %s: not a directory", ref)
	}
	dopts := dirtar.Options{MTime: 0, KeepOwners: opts.DirKeepOwners}
	name, tag := named(dir, "")
	return &Image{
		ref: ref, name: name, tag: tag,
		layers: []layerSource{{
			id:   flatten.Layer{Index: 0, Digest: "dir:" + dir},
			open: func() (io.ReadCloser, error) { return dirtar.Open(dir, dopts), nil },
		}},
	}, nil
}

// openDockerArchive opens PATH or PATH:REPO[:TAG], returning the path and
// the tag ("" when none was named).
func openDockerArchive(spec string) (v1.Image, string, string, error) {
	if spec == "" {
		return nil, "", "", fmt.Errorf("%w: empty path", ErrReference)
	}
	path, tagStr := spec, ""
	if _, err := os.Stat(spec); err != nil {
		// Try PATH:REPO[:TAG] with the shortest existing PATH.
		found := false
		for i := 0; i < len(spec); i++ {
			if spec[i] != ':' {
				continue
			}
			if fi, err := os.Stat(spec[:i]); err == nil && !fi.IsDir() {
				path, tagStr, found = spec[:i], spec[i+1:], true
				break
			}
		}
		if !found {
			return nil, "", "", err
		}
	}
	var tag *name.Tag
	version := ""
	if tagStr != "" {
		t, err := name.NewTag(tagStr)
		if err != nil {
			return nil, "", "", fmt.Errorf("%w: tag %q: %v", ErrReference, tagStr, err)
		}
		tag, version = &t, t.TagStr()
	}
	img, err := tarball.ImageFromPath(path, tag)
	if err != nil {
		if tag != nil && strings.Contains(err.Error(), "not found") {
			return nil, "", "", fmt.Errorf("%w: %v", ErrNotFound, err)
		}
		return nil, "", "", err
	}
	return img, path, version, nil
}

// openOCI opens DIR or DIR:TAG, returning the directory and the tag.
func openOCI(spec string, want *v1.Platform) (v1.Image, string, string, error) {
	dir, tag := spec, ""
	if i := strings.LastIndexByte(spec, ':'); i >= 0 && !strings.Contains(spec[i+1:], "/") {
		dir, tag = spec[:i], spec[i+1:]
	}
	if dir == "" {
		return nil, "", "", fmt.Errorf("%w: empty layout path", ErrReference)
	}
	img, err := openLayout(dir, tag, want)
	return img, dir, tag, err
}

// openLayout picks the image named tag ("" for the only one, or by
// platform) from the layout at dir.
func openLayout(dir, tag string, want *v1.Platform) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var cands []v1.Descriptor
	var names []string
	for _, d := range im.Manifests {
		n := d.Annotations[RefNameAnnotation]
		if n != "" {
			names = append(names, n)
		}
		if tag == "" || n == tag {
			cands = append(cands, d)
		}
	}
	switch {
	case len(cands) == 0 && tag != "":
		sort.Strings(names)
		return nil, fmt.Errorf("%w: no manifest named %q in %s (names: %s)", ErrNotFound, tag, dir, strings.Join(names, ", "))
	case len(cands) == 0:
		return nil, fmt.Errorf("%w: %s holds no manifest", ErrNotFound, dir)
	case len(cands) == 1:
		return resolve(idx, cands[0], want)
	}
	if tag != "" {
		return nil, fmt.Errorf("%w: %d manifests named %q in %s", ErrNotFound, len(cands), tag, dir)
	}
	// Several untagged manifests: index.json itself is the platform index.
	return pickPlatform(idx, cands, want)
}

func resolve(idx v1.ImageIndex, d v1.Descriptor, want *v1.Platform) (v1.Image, error) {
	switch {
	case d.MediaType.IsImage():
		return idx.Image(d.Digest)
	case d.MediaType.IsIndex():
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, err
		}
		im, err := child.IndexManifest()
		if err != nil {
			return nil, err
		}
		return pickPlatform(child, im.Manifests, want)
	}
	return nil, fmt.Errorf("%w: manifest %s has media type %q", ErrNotFound, d.Digest, d.MediaType)
}

// pickPlatform chooses among an index's image manifests.
func pickPlatform(idx v1.ImageIndex, ds []v1.Descriptor, want *v1.Platform) (v1.Image, error) {
	var imgs []v1.Descriptor
	var have []string
	for _, d := range ds {
		if !d.MediaType.IsImage() {
			continue
		}
		if d.Platform != nil && (d.Platform.OS == "unknown" || d.Platform.Architecture == "unknown") {
			continue // attestation manifests of buildx
		}
		imgs = append(imgs, d)
		if d.Platform != nil {
			have = append(have, d.Platform.String())
		}
	}
	if want == nil {
		if len(imgs) == 1 {
			return idx.Image(imgs[0].Digest)
		}
		return nil, fmt.Errorf("%w: index holds %d images (%s); choose a platform", ErrPlatform, len(imgs), strings.Join(have, ", "))
	}
	for _, d := range imgs {
		if d.Platform != nil && platformMatch(*want, *d.Platform) {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("%w: no %s image in the index (have %s)", ErrPlatform, want, strings.Join(have, ", "))
}

func platformMatch(want, have v1.Platform) bool {
	if have.OS != want.OS || have.Architecture != want.Architecture {
		return false
	}
	return want.Variant == "" || want.Variant == have.Variant
}

// fromV1 reads the config and lists the layers of a go-containerregistry
// image; stored says the layer blobs are files as the manifest describes
// them (OCI layouts), read with storedBlobOpener.
func fromV1(ref string, img v1.Image, want *v1.Platform, stored bool, name, tag string) (*Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("open %s: config: %w", ref, err)
	}
	have := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	if want != nil && cf.Architecture != "" && !platformMatch(*want, have) {
		return nil, fmt.Errorf("open %s: %w: image is %s, want %s", ref, ErrPlatform, have.String(), want)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("open %s: layers: %w", ref, err)
	}
	out := &Image{
		ref:      ref,
		name:     name,
		tag:      tag,
		platform: have.String(),
		config: Config{
			Entrypoint: cf.Config.Entrypoint,
			Cmd:        cf.Config.Cmd,
			Env:        cf.Config.Env,
			WorkingDir: cf.Config.WorkingDir,
			User:       cf.Config.User,
		},
	}
	// Every layer's content is checked against the config's diff_id (and,
	// in a layout, its blob against the manifest): the config says what
	// the layers are, so it must list one diff_id for each.
	diffIDs := cf.RootFS.DiffIDs
	if len(diffIDs) != len(layers) {
		return nil, fmt.Errorf("open %s: %w: the config lists %d diff_ids for %d layers", ref, ErrDigest, len(diffIDs), len(layers))
	}
	for i, l := range layers {
		id := flatten.Layer{Index: i, Digest: diffIDs[i].String()}
		if mt, err := l.MediaType(); err == nil && !layerMediaType(mt) {
			return nil, fmt.Errorf("open %s: %v: media type %q is not a filesystem layer", ref, id, mt)
		}
		open := l.Uncompressed
		if stored {
			open = storedBlobOpener(l)
		}
		out.layers = append(out.layers, layerSource{id: id, open: diffChecked(open, diffIDs[i])})
	}
	return out, nil
}

func layerMediaType(mt types.MediaType) bool {
	switch mt {
	case types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer, types.DockerLayer,
		types.DockerUncompressedLayer, types.OCIRestrictedLayer, types.OCIUncompressedRestrictedLayer:
		return true
	}
	return mt == ""
}

func cloneConfig(c Config) Config {
	c.Entrypoint = cloneStrings(c.Entrypoint)
	c.Cmd = cloneStrings(c.Cmd)
	c.Env = cloneStrings(c.Env)
	return c
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string{}, s...)
}
