// Package entropy seeds the kernel's random pool from the secure module
// before the workload starts, and confirms the kernel CRNG is ready.
//
// AWS's init does not seed (the NSM driver registers an hwrng); Huawei's
// does. Seeding with GetRandom + RNDADDENTROPY is safe for both: mixing in
// more randomness never hurts, and it makes the CRNG ready early even when
// no hwrng is registered.
package entropy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"github.com/qtenclave/enclave/qtsm/device"
	"golang.org/x/sys/unix"
)

// DefaultBytes is how much init takes from the module: 512 bits, twice what
// the kernel needs to initialise its CRNG.
const DefaultBytes = 64

// DefaultReadyTimeout bounds the wait for the CRNG.
const DefaultReadyTimeout = 5 * time.Second

// Pool is the kernel's random pool.
type Pool interface {
	// AddEntropy mixes data in and credits bits of entropy.
	AddEntropy(data []byte, bits int) error
	// Ready reports whether the CRNG is initialised (getrandom would not
	// block).
	Ready() (bool, error)
	// WaitReady blocks until the CRNG is initialised or ctx ends.
	WaitReady(ctx context.Context) error
}

// Seed takes n bytes from m (as many GetRandom calls as needed) and adds
// them to p, crediting 8 bits per byte. It returns the number of bytes
// added; bytes obtained before a module failure are still added.
func Seed(ctx context.Context, m Source, p Pool, n int) (int, error) {
	if n <= 0 {
		n = DefaultBytes
	}
	buf := make([]byte, n)
	defer clear(buf)
	got, rerr := device.ReadRandom(ctx, m, buf)
	if got > 0 {
		if err := p.AddEntropy(buf[:got], 8*got); err != nil {
			return 0, fmt.Errorf("add %d bytes to the kernel pool: %w", got, err)
		}
	}
	if rerr != nil {
		return got, fmt.Errorf("secure module GetRandom: %w", rerr)
	}
	return got, nil
}

// ErrNotReady is returned by EnsureReady when the CRNG stays uninitialised.
var ErrNotReady = errors.New("kernel CRNG not ready")

// EnsureReady returns at once when the CRNG is ready, else waits at most
// timeout for it. It returns how long it waited.
func EnsureReady(ctx context.Context, p Pool, timeout time.Duration) (time.Duration, error) {
	ok, err := p.Ready()
	if err != nil {
		return 0, fmt.Errorf("check CRNG: %w", err)
	}
	if ok {
		return 0, nil
	}
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		return time.Since(start), fmt.Errorf("%w after %v: %v", ErrNotReady, timeout, err)
	}
	return time.Since(start), nil
}

// Kernel is the real pool: RNDADDENTROPY on /dev/urandom and getrandom(2).
type Kernel struct {
	// Device is the random device (default /dev/urandom).
	Device string
}

// AddEntropy implements Pool with the RNDADDENTROPY ioctl (needs
// CAP_SYS_ADMIN).
func (k Kernel) AddEntropy(data []byte, bits int) error {
	dev := k.Device
	if dev == "" {
		dev = "/dev/urandom"
	}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+len(data))
	defer clear(info)
	*(*int32)(unsafe.Pointer(&info[0])) = int32(bits)
	*(*int32)(unsafe.Pointer(&info[4])) = int32(len(data))
	copy(info[8:], data)
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	if cerr := sc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0])))
	}); cerr != nil {
		return cerr
	}
	if errno != 0 {
		return fmt.Errorf("ioctl RNDADDENTROPY on %s: %w", dev, errno)
	}
	return nil
}

// Ready implements Pool.
func (Kernel) Ready() (bool, error) {
	var b [1]byte
	for {
		_, err := unix.Getrandom(b[:], unix.GRND_NONBLOCK)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EAGAIN):
			return false, nil
		case errors.Is(err, unix.EINTR):
			continue
		}
		return false, err
	}
}

// WaitReady implements Pool with a blocking getrandom(2), which on current
// kernels also makes the kernel gather jitter entropy itself. The blocked
// call is abandoned (one thread) if ctx ends first.
func (Kernel) WaitReady(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		var b [1]byte
		for {
			_, err := unix.Getrandom(b[:], 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			done <- err
			return
		}
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
