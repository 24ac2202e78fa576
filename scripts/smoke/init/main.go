//go:build linux

// Command init is the PID 1 of scripts/smoke-kernel.sh: a throwaway initramfs that proves
// the project's guest kernel, the nsm module, QEMU's virtio-nsm device and the qtsm device
// code work together. It mounts /dev, /proc and /sys, loads /nsm.ko.xz or /nsm.ko with
// finit_module, waits for /dev/nsm, asks the module for a description, a PCR and random
// bytes through package qtsm, checks vsock loopback, prints "SMOKE OK" or "SMOKE FAIL: ..."
// and reboots, which makes QEMU (run with -no-reboot) exit.
//
// It is not the project's init (see init/); it only exercises the kernel.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qtenclave/enclave/qtsm"
)

func main() {
	err := run()
	if err != nil {
		fmt.Printf("SMOKE FAIL: %v\n", err)
	} else {
		fmt.Println("SMOKE OK")
	}
	unix.Sync()
	// reboot=t on the cmdline + QEMU -no-reboot: QEMU exits.
	if rerr := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); rerr != nil {
		fmt.Printf("reboot: %v\n", rerr)
	}
	select {}
}

func run() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	fmt.Printf("smoke: kernel %s %s, %d CPUs, argv %q\n",
		unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Version[:]),
		runtime.NumCPU(), os.Args)

	for _, m := range []struct{ src, dir, fs string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dir, m.fs, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	if b, err := os.ReadFile("/proc/cmdline"); err == nil {
		fmt.Printf("smoke: cmdline %s", b)
	}

	if err := loadModule(); err != nil {
		return err
	}
	if err := waitFor("/dev/nsm", 10*time.Second); err != nil {
		return err
	}
	if b, err := os.ReadFile("/sys/class/misc/hw_random/rng_current"); err == nil {
		fmt.Printf("smoke: hwrng current %s", b)
	}

	s, err := qtsm.Open()
	if err != nil {
		return fmt.Errorf("qtsm.Open: %w", err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := s.Describe(ctx)
	if err != nil {
		return fmt.Errorf("describe: %w", err)
	}
	fmt.Printf("smoke: Describe %+v\n", *d)
	p, err := s.DescribePCR(ctx, 0)
	if err != nil {
		return fmt.Errorf("DescribePCR(0): %w", err)
	}
	fmt.Printf("smoke: PCR0 locked=%v %x\n", p.Locked, p.Value)
	r, err := s.GetRandom(ctx)
	if err != nil {
		return fmt.Errorf("GetRandom: %w", err)
	}
	fmt.Printf("smoke: GetRandom %d bytes %x\n", len(r), r)
	if len(r) == 0 || bytes.Equal(r, make([]byte, len(r))) {
		return fmt.Errorf("GetRandom returned %d bytes, all zero", len(r))
	}
	return vsockLoopback()
}

// loadModule loads the first of /nsm.ko.xz, /nsm.ko present, the way init does.
func loadModule() error {
	for _, name := range []string{"/nsm.ko.xz", "/nsm.ko"} {
		f, err := os.Open(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		defer f.Close()
		flags := 0
		if strings.HasSuffix(name, ".xz") {
			flags = unix.MODULE_INIT_COMPRESSED_FILE
		}
		if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil {
			return fmt.Errorf("finit_module %s (flags %#x): %w", name, flags, err)
		}
		fmt.Printf("smoke: loaded %s with finit_module flags %#x\n", name, flags)
		return nil
	}
	fmt.Println("smoke: no /nsm.ko(.xz): expecting a built-in driver")
	return nil
}

func waitFor(path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		_, err := os.Stat(path)
		if err == nil {
			fmt.Printf("smoke: %s present\n", path)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v: %w", path, limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// vsockLoopback sends a byte to ourselves over AF_VSOCK CID 1 (VSOCKETS_LOOPBACK).
func vsockLoopback() error {
	const port = 5555
	l, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("vsock socket: %w", err)
	}
	defer unix.Close(l)
	if err := unix.Bind(l, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		return fmt.Errorf("vsock bind: %w", err)
	}
	if err := unix.Listen(l, 1); err != nil {
		return fmt.Errorf("vsock listen: %w", err)
	}
	c, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("vsock socket: %w", err)
	}
	defer unix.Close(c)
	if err := unix.Connect(c, &unix.SockaddrVM{CID: unix.VMADDR_CID_LOCAL, Port: port}); err != nil {
		return fmt.Errorf("vsock connect to CID 1 port %d: %w", port, err)
	}
	a, _, err := unix.Accept(l)
	if err != nil {
		return fmt.Errorf("vsock accept: %w", err)
	}
	defer unix.Close(a)
	if _, err := unix.Write(c, []byte{0xB7}); err != nil {
		return fmt.Errorf("vsock write: %w", err)
	}
	b := make([]byte, 1)
	if n, err := unix.Read(a, b); err != nil || n != 1 || b[0] != 0xB7 {
		return fmt.Errorf("vsock read = %d %x %v, want 1 b7 <nil>", n, b, err)
	}
	fmt.Println("smoke: vsock loopback CID 1 ok")
	return nil
}
