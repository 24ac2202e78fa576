package qtsm

import (
	"context"
	"fmt"
	"strings"

	"github.com/qtenclave/enclave/qtsm/device"
)

// Transport exchanges one encoded request for one encoded response. The real
// device, the simulator and test fakes implement it. Implementations need not
// be safe for concurrent use: Session serialises calls.
type Transport interface {
	RoundTrip(ctx context.Context, req []byte) ([]byte, error)
	Close() error
}

// Vendor names the secure module's maker, which decides the device path and
// buffer sizes and the attestation document's dialect.
type Vendor int

// Vendors.
const (
	VendorUnknown Vendor = iota
	VendorNitro
	VendorQingtian
)

func (v Vendor) String() string {
	switch v {
	case VendorNitro:
		return "nitro"
	case VendorQingtian:
		return "qingtian"
	}
	return "unknown"
}

// ParseVendor parses "nitro" (or "aws", "nsm") and "qingtian" (or "huawei",
// "qtsm"); "auto" and "" give VendorUnknown.
func ParseVendor(s string) (Vendor, error) {
	switch strings.ToLower(s) {
	case "nitro", "aws", "nsm":
		return VendorNitro, nil
	case "qingtian", "huawei", "qtsm":
		return VendorQingtian, nil
	case "", "auto":
		return VendorUnknown, nil
	}
	return VendorUnknown, fmt.Errorf("qtsm: unknown vendor %q (want nitro, qingtian or auto)", s)
}

// DeviceSpec is a device of qtsm/device's table with its Vendor.
type DeviceSpec struct {
	Vendor Vendor
	device.Spec
}

// NitroDevice is AWS's /dev/nsm.
var NitroDevice = DeviceSpec{VendorNitro, device.Nitro}

// QingtianDevice is Huawei's /dev/qtsm (UNVERIFIED on hardware; see
// device.Qingtian).
var QingtianDevice = DeviceSpec{VendorQingtian, device.Qingtian}

// DeviceSpecs lists the known devices in detection order (device.Specs').
var DeviceSpecs = []DeviceSpec{QingtianDevice, NitroDevice}
