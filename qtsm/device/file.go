package device

import (
	"os"
	"sync"
)

// File is an open secure-module device. Exchanges on it are serialised;
// after Close they fail with os.ErrClosed.
type File struct {
	mu sync.Mutex
	f  *os.File
}

// Open opens the device at path for exchanges.
func Open(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return &File{f: f}, nil
}

// Exchange is the package's Exchange on the device, one call at a time.
func (d *File) Exchange(ioctl uint, req, resp []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return 0, os.ErrClosed
	}
	return Exchange(d.f, ioctl, req, resp)
}

// Close closes the device; closing it again does nothing.
func (d *File) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	return err
}
