//go:build !linux

package qtsm

import (
	"context"
	"errors"
)

// Device is the secure-module character device; it exists only on Linux.
type Device struct{ spec DeviceSpec }

// DetectDevice always fails outside Linux.
func DetectDevice() (DeviceSpec, error) { return DeviceSpec{}, ErrNoDevice }

// OpenDevice always fails outside Linux.
func OpenDevice(spec DeviceSpec) (*Device, error) {
	return nil, errors.New("qtsm: secure-module devices exist only on Linux")
}

func (d *Device) Spec() DeviceSpec { return d.spec }

func (d *Device) RoundTrip(context.Context, []byte) ([]byte, error) { return nil, ErrClosed }

func (d *Device) Close() error { return nil }
