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

// DeviceSpec is everything vendor-specific about the device transport: one
// small definition per vendor, so that a correction (QTSM's transport is not
// public and is unverified on hardware) is a one-line change.
type DeviceSpec struct {
	Vendor Vendor
	// Path of the misc device.
	Path string
	// Ioctl is the raw-message ioctl number: _IOWR(0x0A, 0, struct{u64
	// req_addr, req_len, resp_addr, resp_len}).
	Ioctl uint
	// MaxRequest is the largest request the driver accepts.
	MaxRequest int
	// MaxResponse is the response buffer size handed to the driver.
	MaxResponse int
}

// NitroDevice is AWS's /dev/nsm (Linux driver drivers/misc/nsm.c).
var NitroDevice = DeviceSpec{
	Vendor:      VendorNitro,
	Path:        "/dev/nsm",
	Ioctl:       device.IoctlRaw,
	MaxRequest:  device.NitroMaxRequest,
	MaxResponse: device.NitroMaxResponse,
}

// QingtianDevice is Huawei's /dev/qtsm. UNVERIFIED on hardware: Huawei's
// library uses these buffer sizes; the ioctl number and struct are assumed to
// be NSM's since the message schema is.
var QingtianDevice = DeviceSpec{
	Vendor:      VendorQingtian,
	Path:        "/dev/qtsm",
	Ioctl:       device.IoctlRaw,
	MaxRequest:  device.QingtianMaxRequest,
	MaxResponse: device.QingtianMaxResponse,
}

// DeviceSpecs lists the known devices in detection order.
var DeviceSpecs = []DeviceSpec{QingtianDevice, NitroDevice}
