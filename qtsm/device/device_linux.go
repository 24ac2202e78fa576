package device

import (
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// raw is the driver's struct nsm_raw: addresses and lengths of the request
// and response buffers; the driver sets respLen to the length it wrote.
type raw struct {
	reqAddr, reqLen, respAddr, respLen uint64
}

// Exchange sends req through the raw-message ioctl number ioctl on f and
// lets the driver write the response into resp; it returns the response's
// length. A failed ioctl returns its unix.Errno (EMSGSIZE: request too
// large), wrapped with f's name. Callers serialise calls on one device.
func Exchange(f *os.File, ioctl uint, req, resp []byte) (int, error) {
	if len(req) == 0 || len(resp) == 0 {
		return 0, fmt.Errorf("%s: empty request or response buffer", f.Name())
	}
	msg := &raw{
		reqAddr: uint64(uintptr(unsafe.Pointer(&req[0]))), reqLen: uint64(len(req)),
		respAddr: uint64(uintptr(unsafe.Pointer(&resp[0]))), respLen: uint64(len(resp)),
	}
	sc, err := f.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.Name(), err)
	}
	var errno unix.Errno
	cerr := sc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(ioctl), uintptr(unsafe.Pointer(msg)))
	})
	// The kernel read req and wrote resp through the addresses in msg: keep
	// all three alive until the call has returned.
	runtime.KeepAlive(req)
	runtime.KeepAlive(resp)
	runtime.KeepAlive(msg)
	if cerr != nil {
		return 0, fmt.Errorf("%s: %w", f.Name(), cerr)
	}
	if errno != 0 {
		return 0, fmt.Errorf("ioctl %s: %w", f.Name(), errno)
	}
	if msg.respLen > uint64(len(resp)) {
		return 0, fmt.Errorf("%s: driver reported %d response bytes for a %d-byte buffer", f.Name(), msg.respLen, len(resp))
	}
	return int(msg.respLen), nil
}
