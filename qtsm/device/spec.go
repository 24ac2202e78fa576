package device

import (
	"context"
	"errors"
	"path/filepath"
	"time"

	"github.com/qtenclave/enclave/internal/backoff"
)

// Spec is everything vendor-specific about one secure-module device: one
// small definition per vendor, so that a correction (QTSM's transport is
// not public and is unverified on hardware) is a one-line change. This is
// the one table: package qtsm and init both read it.
type Spec struct {
	Name string // "nitro" or "qingtian"
	Path string // the misc device
	// Ioctl is the raw-message ioctl number.
	Ioctl uint
	// MaxRequest is the largest request the driver accepts.
	MaxRequest int
	// MaxResponse is the response buffer size handed to the driver.
	MaxResponse int
}

// Nitro is AWS's /dev/nsm (Linux driver drivers/misc/nsm.c).
var Nitro = Spec{Name: "nitro", Path: "/dev/nsm", Ioctl: IoctlRaw, MaxRequest: NitroMaxRequest, MaxResponse: NitroMaxResponse}

// Qingtian is Huawei's /dev/qtsm. UNVERIFIED on hardware: Huawei's library
// uses these buffer sizes; the ioctl number and struct are assumed to be
// NSM's since the message schema is.
var Qingtian = Spec{Name: "qingtian", Path: "/dev/qtsm", Ioctl: IoctlRaw, MaxRequest: QingtianMaxRequest, MaxResponse: QingtianMaxResponse}

// Specs lists the known devices in detection order.
var Specs = []Spec{Qingtian, Nitro}

// Paths are the Specs' paths, in detection order.
func Paths() []string {
	p := make([]string, len(Specs))
	for i, s := range Specs {
		p[i] = s.Path
	}
	return p
}

// ByPath is the Spec of the device at path, known by its name (nsm or
// qtsm, wherever devtmpfs is mounted); ok is false for another name.
func ByPath(path string) (s Spec, ok bool) {
	for _, s := range Specs {
		if filepath.Base(s.Path) == filepath.Base(path) {
			return s, true
		}
	}
	return Spec{}, false
}

// GetRandomRetry is how GetRandom is retried while the module starts
// (Huawei's reports failures in the first half second or so after the
// enclave starts): 8 attempts, 25 ms doubling to 800 ms, about 3 s in all.
var GetRandomRetry = backoff.Policy{Attempts: 8, Initial: 25 * time.Millisecond, Max: 800 * time.Millisecond}

// RandomSource is anything with the secure module's GetRandom.
type RandomSource interface {
	GetRandom(ctx context.Context) ([]byte, error)
}

// ReadRandom fills p from src's GetRandom, as many calls as it takes; it
// clears each answer once copied.
func ReadRandom(ctx context.Context, src RandomSource, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		b, err := src.GetRandom(ctx)
		if err != nil {
			return n, err
		}
		if len(b) == 0 {
			return n, errors.New("GetRandom returned no bytes")
		}
		n += copy(p[n:], b)
		clear(b)
	}
	return n, nil
}
