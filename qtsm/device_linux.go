package qtsm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/fxamacker/cbor/v2"
	"golang.org/x/sys/unix"

	"github.com/qtenclave/enclave/qtsm/device"
)

// Device is the secure-module character device. It is a Transport.
type Device struct {
	spec DeviceSpec
	mu   sync.Mutex
	f    *os.File
}

// DetectDevice returns the spec of the first device present, in the order of
// DeviceSpecs, or ErrNoDevice.
func DetectDevice() (DeviceSpec, error) {
	return detectDevice(func(p string) bool { _, err := os.Stat(p); return err == nil })
}

func detectDevice(exists func(string) bool) (DeviceSpec, error) {
	for _, s := range DeviceSpecs {
		if exists(s.Path) {
			return s, nil
		}
	}
	return DeviceSpec{}, ErrNoDevice
}

// OpenDevice opens the device described by spec.
func OpenDevice(spec DeviceSpec) (*Device, error) {
	f, err := os.OpenFile(spec.Path, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open secure module %s: %w", spec.Path, err)
	}
	return &Device{spec: spec, f: f}, nil
}

// Spec returns the device's definition.
func (d *Device) Spec() DeviceSpec { return d.spec }

// RoundTrip sends one request through the raw ioctl. The call itself cannot be
// interrupted; Session bounds it with the context's deadline. A response that
// fills the buffer and is not well-formed CBOR is reported as
// ErrResponseTruncated, never returned cut.
func (d *Device) RoundTrip(_ context.Context, req []byte) ([]byte, error) {
	if len(req) == 0 {
		return nil, errors.New("qtsm: empty request")
	}
	if len(req) > d.spec.MaxRequest {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrRequestTooLarge, len(req), d.spec.MaxRequest)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil, ErrClosed
	}
	resp := make([]byte, d.spec.MaxResponse)
	n, err := device.Exchange(d.f, d.spec.Ioctl, req, resp)
	if errors.Is(err, unix.EMSGSIZE) {
		return nil, fmt.Errorf("%w: %v", ErrRequestTooLarge, err)
	}
	if err != nil {
		return nil, fmt.Errorf("qtsm: %w", err)
	}
	resp = resp[:n]
	if n == d.spec.MaxResponse && cbor.Wellformed(resp) != nil {
		return nil, fmt.Errorf("%w (%d bytes)", ErrResponseTruncated, n)
	}
	return resp, nil
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
