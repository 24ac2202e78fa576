package launch

import (
	"errors"
	"fmt"
	"io/fs"
)

// ErrNotFound is returned by Load when the ramdisk has neither a manifest
// nor a cmd file.
var ErrNotFound = errors.New("launch: no " + ManifestPath + " and no " + CmdPath + " in the ramdisk")

// Load reads the launch configuration from the application ramdisk's root:
// the manifest when present, else cmd and env (a missing env is an empty
// environment). A manifest that is present but malformed is an error; Load
// does not fall back to the legacy files then. It returns the name of the
// file the configuration came from.
func Load(fsys fs.FS) (*Manifest, string, error) {
	b, err := fs.ReadFile(fsys, ManifestPath)
	switch {
	case err == nil:
		m, err := Parse(b)
		if err != nil {
			return nil, ManifestPath, fmt.Errorf("%s: %w", ManifestPath, err)
		}
		return m, ManifestPath, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, ManifestPath, fmt.Errorf("read %s: %w", ManifestPath, err)
	}
	cmd, err := fs.ReadFile(fsys, CmdPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", ErrNotFound
	}
	if err != nil {
		return nil, CmdPath, fmt.Errorf("read %s: %w", CmdPath, err)
	}
	env, err := fs.ReadFile(fsys, EnvPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, EnvPath, fmt.Errorf("read %s: %w", EnvPath, err)
	}
	m, err := ParseLegacy(cmd, env)
	if err != nil {
		return nil, CmdPath, fmt.Errorf("%s/%s: %w", CmdPath, EnvPath, err)
	}
	return m, CmdPath, nil
}
