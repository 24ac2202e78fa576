//go:build !linux

package device

import (
	"errors"
	"os"
)

// Exchange always fails outside Linux: the devices exist only there.
func Exchange(f *os.File, ioctl uint, req, resp []byte) (int, error) {
	return 0, errors.New("secure-module devices exist only on Linux")
}
