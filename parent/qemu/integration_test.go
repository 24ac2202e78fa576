//go:build linux

package qemu

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/qtenclave/enclave/internal/cache"
)

// newc writes a cpio "newc" archive. Entries: name, mode (with type bits),
// data, and for device nodes rdev major/minor.
type cpioEntry struct {
	name       string
	mode       uint32
	data       []byte
	rmaj, rmin uint32
}

func newc(entries []cpioEntry) []byte {
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	write := func(ino int, e cpioEntry) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, e.rmaj, e.rmin, len(e.name)+1, 0)
		b.WriteString(e.name)
		b.WriteByte(0)
		pad()
		b.Write(e.data)
		pad()
	}
	for i, e := range entries {
		write(i+1, e)
	}
	write(0, cpioEntry{name: "TRAILER!!!"})
	return b.Bytes()
}

// TestIntegrationBoot boots a real kernel with a tiny Go /init under QEMU's
// nitro-enclave machine through runEnclave's machinery. It needs QEMU and the
// kernel from scripts/build-qemu.sh and scripts/build-kernel.sh (or
// $QTENCLAVE_QEMU and $QTENCLAVE_KERNEL or $QTENCLAVE_KERNEL_DIR). QTENCLAVE_BOOTS=N boots N times
// and reports the boot-to-exit times.
func TestIntegrationBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping QEMU boot in -short mode")
	}
	qemu := os.Getenv("QTENCLAVE_QEMU")
	if qemu == "" {
		qemu = cache.Newest("qemu", "bin/qemu-system-x86_64")
	}
	if qemu == "" {
		t.Skip("no QEMU with -M nitro-enclave: run scripts/build-qemu.sh or set QTENCLAVE_QEMU")
	}
	kernel := os.Getenv("QTENCLAVE_KERNEL")
	if d := os.Getenv("QTENCLAVE_KERNEL_DIR"); kernel == "" && d != "" {
		kernel = filepath.Join(d, "bzImage")
	}
	if kernel == "" {
		kernel = cache.Newest("kernel", "bzImage")
	}
	if kernel == "" {
		t.Skip("no enclave kernel: run scripts/build-kernel.sh or set QTENCLAVE_KERNEL")
	}
	kimg, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	initBin := filepath.Join(dir, "init")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", initBin, "./testdata/testinit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build testinit: %v\n%s", err, out)
	}
	initData, err := os.ReadFile(initBin)
	if err != nil {
		t.Fatal(err)
	}
	ramdisk := newc([]cpioEntry{
		{name: "dev", mode: 0o40755},
		{name: "dev/console", mode: 0o20600, rmaj: 5, rmin: 1},
		{name: "proc", mode: 0o40755},
		{name: "init", mode: 0o100755, data: initData},
	})
	img := filepath.Join(dir, "test.eif")
	writeEIF(t, img, kimg, ramdisk, "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on")

	boots := 1
	if n, err := strconv.Atoi(os.Getenv("QTENCLAVE_BOOTS")); err == nil && n > 0 {
		boots = n
	}
	var times []time.Duration
	for i := 0; i < boots; i++ {
		want := []int{0, 7}[i%2]
		o := &Options{EIF: img, CID: 4, QEMU: qemu, Timeout: 90 * time.Second, ModuleID: "i-test-enc0", Append: fmt.Sprintf("testinit.exit=%d", want)}
		var console, stderr bytes.Buffer
		start := time.Now()
		code, err := Run(o, nil, &console, &stderr)
		d := time.Since(start)
		if code != want {
			t.Fatalf("boot %d: exit code %d (%v), want %d\nstderr:\n%s\nconsole:\n%s", i, code, err, want, stderr.String(), console.String())
		}
		if !bytes.Contains(console.Bytes(), []byte("testinit: done")) {
			t.Errorf("boot %d: console lacks the init's last line:\n%s", i, console.String())
		}
		times = append(times, d)
		t.Logf("boot %d: exit %d after %.2fs", i, code, d.Seconds())
	}
	slices.Sort(times)
	t.Logf("%d boots, boot-to-exit min %.2fs median %.2fs max %.2fs", len(times), times[0].Seconds(), times[len(times)/2].Seconds(), times[len(times)-1].Seconds())
}
