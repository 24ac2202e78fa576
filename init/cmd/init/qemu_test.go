package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qtenclave/enclave/init/internal/nstest"
	"github.com/qtenclave/enclave/internal/cache"
	"github.com/qtenclave/enclave/rootfs/cpio"
)

// findQEMU locates the project's QEMU (with virtio-nsm) and guest kernel:
// QTENCLAVE_QEMU and QTENCLAVE_KERNEL_DIR, else the newest in the cache.
func findQEMU(t *testing.T) (qemu, kdir string) {
	t.Helper()
	qemu = os.Getenv("QTENCLAVE_QEMU")
	if qemu == "" {
		qemu = cache.Newest("qemu", "bin/qemu-system-x86_64")
	}
	kdir = os.Getenv("QTENCLAVE_KERNEL_DIR")
	if kdir == "" {
		if k := cache.Newest("kernel", "bzImage"); k != "" {
			kdir = filepath.Dir(k)
		}
	}
	if qemu == "" || kdir == "" {
		t.Skipf("no QEMU/kernel (build them with scripts/build-qemu.sh and scripts/build-kernel.sh, or set QTENCLAVE_QEMU and QTENCLAVE_KERNEL_DIR): qemu=%q kernel=%q", qemu, kdir)
	}
	return qemu, kdir
}

// newc writes a cpio "newc" archive of the tree at root (what the kernel
// unpacks as an initramfs), in sorted order with fixed metadata.
func newc(root string) ([]byte, error) {
	var entries []cpio.Entry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		perm := uint32(st.Mode().Perm())
		if d.IsDir() {
			entries = append(entries, cpio.Dir(rel, perm))
			return nil
		}
		e, err := cpio.HostFile(rel, perm, p)
		entries = append(entries, e)
		return err
	})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := cpio.WriteArchive(&buf, cpio.Options{}, entries...); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// TestIntegrationQEMU (QTENCLAVE_QEMU_TEST=1; QTENCLAVE_QEMU_BOOTS=N boots N
// times; QTENCLAVE_QEMU_NOAGENT=1 leaves the agent out;
// QTENCLAVE_QEMU_MODULE=ko uses the uncompressed module;
// QTENCLAVE_QEMU_ARGS adds QEMU arguments such as "-icount shift=0")
// boots the real init in QEMU (microvm, TCG) with the
// project's kernel and a virtio-nsm device: it loads nsm.ko.xz, seeds
// entropy from the device, starts qtsm-agent when it can be built, runs a
// workload that exits 7, and ends with reboot(RB_AUTOBOOT), which makes
// QEMU with -no-reboot exit by itself. It reports init's ready time under
// TCG.
func TestIntegrationQEMU(t *testing.T) {
	if testing.Short() || os.Getenv("QTENCLAVE_QEMU_TEST") == "" {
		t.Skip("boots QEMU (builds init and qtsm-agent, ~5-15 s): set QTENCLAVE_QEMU_TEST=1 to run it")
	}
	qemu, kdir := findQEMU(t)
	if !nstest.StaticSelf() {
		t.Skip("test binary is dynamically linked (-race?); it cannot be the guest's workload")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for _, d := range []string{"rootfs/bin", "rootfs/etc", "rootfs/tmp", "rootfs/dev", "rootfs/proc", "rootfs/sys", "rootfs/run"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build(t, filepath.Join(root, "init"))
	module := "nsm.ko.xz"
	if os.Getenv("QTENCLAVE_QEMU_MODULE") == "ko" {
		module = "nsm.ko"
	}
	if b, err := os.ReadFile(filepath.Join(kdir, module)); err == nil {
		os.WriteFile(filepath.Join(root, module), b, 0o644)
	} else {
		t.Logf("no %s in %s: the driver must be built in", module, kdir)
	}
	// The agent, built like the Makefile does; optional.
	agent := exec.Command(goTool(t), append(buildFlags, "-o", filepath.Join(root, "qtsm-agent"), "github.com/qtenclave/enclave/agent/cmd/qtsm-agent")...)
	agent.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	withAgent := os.Getenv("QTENCLAVE_QEMU_NOAGENT") == ""
	if !withAgent {
		t.Log("QTENCLAVE_QEMU_NOAGENT set: booting without qtsm-agent")
	} else if out, err := agent.CombinedOutput(); err != nil {
		t.Logf("qtsm-agent does not build, booting without it: %v\n%s", err, out)
		withAgent = false
	}
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "rootfs/bin/workload"), self, 0o755)
	os.WriteFile(filepath.Join(root, "launch.json"), []byte(`{"version":1,"entrypoint":["workload"],"cmd":["qemu"],"env":["PATH=/bin"]}`), 0o644)
	img, err := newc(root)
	if err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	os.WriteFile(initrd, img, 0o644)

	// tsc=reliable: under a loaded host the clocksource watchdog otherwise
	// drops the TSC for jiffies, and every duration init reports becomes a
	// multiple of 4 ms.
	cmdline := "console=ttyS0 reboot=t panic=-1 nomodules tsc=reliable qtenclave.heartbeat=off qtenclave.status_port=0 " + os.Getenv("QTENCLAVE_TEST_APPEND")
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`(?m)^cpu MHz\s*:\s*([0-9.]+)`).FindSubmatch(b); m != nil {
			var mhz float64
			fmt.Sscanf(string(m[1]), "%f", &mhz)
			cmdline += fmt.Sprintf(" tsc_early_khz=%d", int(mhz*1000))
		}
	}
	boots := 1
	if n, err := strconv.Atoi(os.Getenv("QTENCLAVE_QEMU_BOOTS")); err == nil && n > 1 {
		boots = n
	}
	var readies, owns []float64
	for i := 0; i < boots && !t.Failed(); i++ {
		ready, own := bootOnce(t, qemu, kdir, initrd, cmdline, withAgent)
		readies, owns = append(readies, ready), append(owns, own)
	}
	sort.Float64s(readies)
	sort.Float64s(owns)
	t.Logf("QEMU TCG, %d boot(s): ready min %.3fms median %.3fms; own time min %.3fms median %.3fms",
		boots, readies[0], readies[len(readies)/2], owns[0], owns[len(owns)/2])
}

var (
	readyRE = regexp.MustCompile(`(?m)^init: ready in ([0-9.]+)ms`)
	ownRE   = regexp.MustCompile(`(?m)^init: own time (-?[0-9.]+)ms`)
)

// bootOnce boots once and returns init's ready and own times.
func bootOnce(t *testing.T, qemu, kdir, initrd, cmdline string, withAgent bool) (ready, own float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	args := []string{"-L", "/usr/share/seabios", "-L", "/usr/share/qemu",
		"-M", "microvm,acpi=off", "-accel", "tcg", "-smp", "2", "-m", "512",
		"-nographic", "-nic", "none", "-no-reboot",
		"-kernel", filepath.Join(kdir, "bzImage"), "-initrd", initrd,
		"-device", "virtio-nsm-device", "-append", cmdline}
	// QTENCLAVE_QEMU_ARGS adds arguments, e.g. "-icount shift=0" to measure
	// guest work independently of the host's load.
	args = append(args, strings.Fields(os.Getenv("QTENCLAVE_QEMU_ARGS"))...)
	cmd := exec.CommandContext(ctx, qemu, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	console := strings.ReplaceAll(string(out), "\r", "")
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("QEMU still running after %v: -no-reboot did not end the run\n%s", elapsed, console)
	}
	if err != nil {
		t.Errorf("QEMU: %v (want exit 0 after the guest's reboot)", err)
	}
	if testing.Verbose() {
		t.Logf("console (%v):\n%s", elapsed, console)
	}
	wants := []string{
		"init: start pid=1 uptime=",
		"init: step modules ok in",
		"init: step device ok in",
		"bytes from /dev/nsm, crng ready",
		"CHECK nsm ok\n",
		"CHECK vsock-loopback ok\n", // init's dialer, heartbeat and report over a real AF_VSOCK
		"qtenclave-exit: code=7 signal=0 reason=exited\n",
		"init: rebooting (RB_AUTOBOOT)\n",
	}
	if withAgent {
		wants = append(wants, "init: step agent-ready ok in", "CHECK agent-socket ok\n")
	}
	for _, w := range wants {
		if !strings.Contains(console, w) {
			t.Errorf("console lacks %q", w)
		}
	}
	if strings.Contains(console, "Kernel panic") {
		t.Errorf("kernel panicked:\n%s", console)
	}
	for _, l := range strings.Split(console, "\n") {
		if strings.HasPrefix(l, "init: ready in") || strings.HasPrefix(l, "init: own time") {
			t.Logf("QEMU TCG: %s", l)
		}
	}
	t.Logf("QEMU run ended by itself in %v", elapsed)
	if m := readyRE.FindStringSubmatch(console); m != nil {
		ready, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := ownRE.FindStringSubmatch(console); m != nil {
		own, _ = strconv.ParseFloat(m[1], 64)
	}
	return ready, own
}
