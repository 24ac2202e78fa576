// Package atomicfile writes a file so that it appears whole or not at all:
// the content goes to a temporary file next to the target, which is renamed
// over the target only when everything succeeded. A failed write leaves
// nothing behind and the target untouched.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Options control Write.
type Options struct {
	// Perm is the file mode of the result (default 0644, whatever the umask).
	Perm os.FileMode
	// Sync makes the content durable (fsync) before the rename.
	Sync bool
}

// Write creates a temporary file next to path, lets write fill it and
// renames it to path. An existing path that is not a regular file is refused.
func Write(path string, opts Options, write func(*os.File) error) (err error) {
	if st, err := os.Lstat(path); err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("%s exists and is not a regular file", path)
	}
	perm := opts.Perm
	if perm == 0 {
		perm = 0o644
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = write(f); err != nil {
		return err
	}
	if opts.Sync {
		if err = f.Sync(); err != nil {
			return err
		}
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
