// Package kmod loads the secure-module driver from the bootstrap ramdisk and
// waits for its device node.
//
// The driver is /nsm.ko (Nitro) or /qtsm.ko (Qingtian), possibly compressed
// (.xz, .zst, .gz: the kernel decompresses with finit_module's
// MODULE_INIT_COMPRESSED_FILE on 6.x kernels). A missing file means the
// driver is built in (or absent) and is skipped; EEXIST means it is already
// loaded.
package kmod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Loader loads one module file with finit_module flags.
type Loader interface {
	LoadModule(path string, flags int) error
}

// Names are the secure-module drivers init looks for, in order.
var Names = []string{"nsm", "qtsm"}

// Suffixes are the file name endings tried for each name: plain first.
var Suffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// Flags returns the finit_module flags for a module file.
func Flags(path string) int {
	for _, s := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(path, s) {
			return unix.MODULE_INIT_COMPRESSED_FILE
		}
	}
	return 0
}

// Outcome of one module.
type Outcome int

// Outcomes.
const (
	Loaded Outcome = iota
	AlreadyLoaded
	Failed
)

func (o Outcome) String() string {
	return [...]string{"loaded", "already loaded", "failed"}[o]
}

// Result is what happened to one module file.
type Result struct {
	Path    string
	Outcome Outcome
	Err     error
}

// LoadAll loads, for each name, the first candidate file that exists in dir.
// Missing names produce no result. Failures are results, not errors: the
// caller decides whether the device it waits for is still needed.
func LoadAll(l Loader, exists func(string) bool, dir string, names []string) []Result {
	var out []Result
	for _, n := range names {
		for _, s := range Suffixes {
			p := strings.TrimSuffix(dir, "/") + "/" + n + s
			if !exists(p) {
				continue
			}
			err := l.LoadModule(p, Flags(p))
			switch {
			case err == nil:
				out = append(out, Result{p, Loaded, nil})
			case errors.Is(err, unix.EEXIST):
				out = append(out, Result{p, AlreadyLoaded, nil})
			default:
				out = append(out, Result{p, Failed, fmt.Errorf("load %s: %w", p, hint(p, err))})
			}
			break
		}
	}
	return out
}

func hint(path string, err error) error {
	switch {
	case errors.Is(err, unix.ENOSYS):
		return fmt.Errorf("%w (kernel built without module support)", err)
	case Flags(path) != 0 && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)):
		return fmt.Errorf("%w (kernel cannot decompress this module: needs CONFIG_MODULE_DECOMPRESS and the matching algorithm; xz needs --check=crc32)", err)
	case errors.Is(err, unix.ENOEXEC):
		return fmt.Errorf("%w (module built for another kernel)", err)
	}
	return err
}

// ErrNoDevice is returned by WaitDevice when no device appears in time.
var ErrNoDevice = errors.New("no secure-module device")

// WaitDevice polls for the first of paths to exist, every poll, for at most
// timeout (one check when timeout is 0).
func WaitDevice(ctx context.Context, exists func(string) bool, paths []string, timeout, poll time.Duration) (string, error) {
	if poll <= 0 {
		poll = 2 * time.Millisecond
	}
	deadline := time.Now().Add(timeout)
	for {
		for _, p := range paths {
			if exists(p) {
				return p, nil
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			return "", fmt.Errorf("%w: none of %s after %v", ErrNoDevice, strings.Join(paths, ", "), timeout)
		}
		t := time.NewTimer(min(poll, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		case <-t.C:
		}
	}
}

// Sys is the real Loader.
type Sys struct{}

// LoadModule opens path and calls finit_module.
func (Sys) LoadModule(path string, flags int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.FinitModule(int(f.Fd()), "", flags)
}

// Exists reports whether path exists (stat succeeds).
func Exists(path string) bool {
	var st unix.Stat_t
	return unix.Stat(path, &st) == nil
}
