package entropy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The secure-module raw ioctl, as in qtsm.DeviceSpec (checked in tests):
// NSM_IOCTL_RAW = _IOWR(0x0A, 0, struct nsm_raw{u64 req_addr, req_len,
// resp_addr, resp_len}).
const (
	ioctlRaw            = 0xC0200A00
	nitroMaxResponse    = 0x3000
	qingtianMaxResponse = 0x6000
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
	d := &Device{f: f, maxResp: nitroMaxResponse}
	if strings.Contains(path, "qtsm") {
		d.maxResp = qingtianMaxResponse
	}
	return d, nil
}

type rawMessage struct{ reqAddr, reqLen, respAddr, respLen uint64 }

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
	msg := &rawMessage{
		reqAddr: uint64(uintptr(unsafe.Pointer(&req[0]))), reqLen: uint64(len(req)),
		respAddr: uint64(uintptr(unsafe.Pointer(&resp[0]))), respLen: uint64(len(resp)),
	}
	sc, err := d.f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var errno unix.Errno
	cerr := sc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, ioctlRaw, uintptr(unsafe.Pointer(msg)))
	})
	runtime.KeepAlive(req)
	runtime.KeepAlive(resp)
	runtime.KeepAlive(msg)
	if cerr != nil {
		return nil, cerr
	}
	if errno != 0 {
		return nil, fmt.Errorf("ioctl %s: %w", d.f.Name(), errno)
	}
	if msg.respLen > uint64(len(resp)) {
		return nil, fmt.Errorf("%s: driver reported %d bytes for a %d-byte buffer", d.f.Name(), msg.respLen, len(resp))
	}
	return resp[:msg.respLen], nil
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
