package qtsm

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/fxamacker/cbor/v2"
	"golang.org/x/sys/unix"

	"github.com/qtenclave/enclave/qtsm/device"
)

// Device is the secure-module character device. It is a Transport.
type Device struct {
	spec DeviceSpec
	f    *device.File
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
	f, err := device.Open(spec.Path)
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
	resp := make([]byte, d.spec.MaxResponse)
	n, err := d.f.Exchange(d.spec.Ioctl, req, resp)
	if errors.Is(err, os.ErrClosed) {
		return nil, ErrClosed
	}
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
func (d *Device) Close() error { return d.f.Close() }
