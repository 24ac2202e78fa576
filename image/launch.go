package image

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/qtenclave/enclave/image/eif"
	"github.com/qtenclave/enclave/image/ramdisk"
	"github.com/qtenclave/enclave/proto/launch"
)

// maxManifest bounds the launch manifest read from an image.
const maxManifest = 1 << 20

// LaunchManifest reads the launch manifest from f's application ramdisk
// (its last ramdisk): what init will run, with the egress policy the
// parent enforces. An image without one (legacy /cmd and /env only) gives
// an error wrapping fs.ErrNotExist.
func LaunchManifest(f *eif.File) (*launch.Manifest, error) {
	rd := f.Ramdisks()
	if len(rd) < 2 {
		return nil, fmt.Errorf("image: %d ramdisk(s), no application ramdisk: %w", len(rd), fs.ErrNotExist)
	}
	app := rd[len(rd)-1]
	b, err := ramdisk.ReadFile(io.NewSectionReader(app, 0, app.Size), launch.ManifestPath, maxManifest)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("image: the application ramdisk has no %s: %w", launch.ManifestPath, err)
		}
		return nil, fmt.Errorf("image: application ramdisk: %w", err)
	}
	m, err := launch.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("image: %s: %w", launch.ManifestPath, err)
	}
	return m, nil
}
