package entropy

import (
	"context"
	"errors"

	"github.com/qtenclave/enclave/qtsm/device"
)

// Device is the secure-module device (/dev/nsm or /dev/qtsm) as a
// Transport for Client.
type Device struct {
	f       *device.File
	maxResp int
}

// OpenDevice opens the device at path with its vendor's response buffer
// size (device.ByPath; an unknown path gets the larger one).
func OpenDevice(path string) (*Device, error) {
	f, err := device.Open(path)
	if err != nil {
		return nil, err
	}
	d := &Device{f: f, maxResp: device.QingtianMaxResponse}
	if s, ok := device.ByPath(path); ok {
		d.maxResp = s.MaxResponse
	}
	return d, nil
}

// RoundTrip implements Transport.
func (d *Device) RoundTrip(_ context.Context, req []byte) ([]byte, error) {
	if len(req) == 0 {
		return nil, errors.New("empty request")
	}
	resp := make([]byte, d.maxResp)
	n, err := d.f.Exchange(device.IoctlRaw, req, resp)
	if err != nil {
		return nil, err
	}
	return resp[:n], nil
}

// Close closes the device.
func (d *Device) Close() error { return d.f.Close() }
