package entropy

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"

	"github.com/qtenclave/enclave/qtsm/device"
)

// Device is the secure-module device (/dev/nsm or /dev/qtsm) as a
// Transport for Client.
type Device struct {
	mu      sync.Mutex
	f       *os.File
	maxResp int
}

// OpenDevice opens the device at path; a path naming qtsm gets Qingtian's
// response buffer size, anything else Nitro's.
func OpenDevice(path string) (*Device, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	d := &Device{f: f, maxResp: device.NitroMaxResponse}
	if strings.Contains(path, "qtsm") {
		d.maxResp = device.QingtianMaxResponse
	}
	return d, nil
}

// RoundTrip implements Transport.
func (d *Device) RoundTrip(_ context.Context, req []byte) ([]byte, error) {
	if len(req) == 0 {
		return nil, errors.New("empty request")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil, os.ErrClosed
	}
	resp := make([]byte, d.maxResp)
	n, err := device.Exchange(d.f, device.IoctlRaw, req, resp)
	if err != nil {
		return nil, err
	}
	return resp[:n], nil
}

// Close closes the device.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	return err
}
