package qtsm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"github.com/fxamacker/cbor/v2"
	"golang.org/x/sys/unix"
)

// rawMessage is the driver's struct nsm_raw: addresses and lengths of the
// request and response buffers. resp_len is updated with the length written.
type rawMessage struct {
	ReqAddr  uint64
	ReqLen   uint64
	RespAddr uint64
	RespLen  uint64
}

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
	msg := &rawMessage{
		ReqAddr:  uint64(uintptr(unsafe.Pointer(&req[0]))),
		ReqLen:   uint64(len(req)),
		RespAddr: uint64(uintptr(unsafe.Pointer(&resp[0]))),
		RespLen:  uint64(len(resp)),
	}
	sc, err := d.f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("qtsm: %s: %w", d.spec.Path, err)
	}
	var errno unix.Errno
	cerr := sc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(d.spec.Ioctl), uintptr(unsafe.Pointer(msg)))
	})
	// The kernel read req and wrote resp through the addresses in msg: keep
	// all three alive until the call has returned.
	runtime.KeepAlive(req)
	runtime.KeepAlive(resp)
	runtime.KeepAlive(msg)
	if cerr != nil {
		return nil, fmt.Errorf("qtsm: %s: %w", d.spec.Path, cerr)
	}
	if errno != 0 {
		if errno == unix.EMSGSIZE {
			return nil, fmt.Errorf("%w: %s: %v", ErrRequestTooLarge, d.spec.Path, errno)
		}
		return nil, fmt.Errorf("qtsm: ioctl %s: %w", d.spec.Path, errno)
	}
	n := msg.RespLen
	if n > uint64(len(resp)) {
		return nil, fmt.Errorf("qtsm: %s: driver reported %d response bytes for a %d-byte buffer", d.spec.Path, n, len(resp))
	}
	resp = resp[:n]
	if int(n) == d.spec.MaxResponse && cbor.Wellformed(resp) != nil {
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
