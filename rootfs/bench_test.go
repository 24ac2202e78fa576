package rootfs

import (
	"context"
	"crypto/sha512"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/qtenclave/enclave/rootfs/dirtar"
	"github.com/qtenclave/enclave/rootfs/ocilayout"
)

// benchImage writes an OCI layout of about mb MiB in n files, half
// random, half repetitive, and returns its reference.
func benchImage(b testing.TB, mb, n int) string {
	b.Helper()
	root := filepath.Join(b.TempDir(), "root")
	r := rand.New(rand.NewSource(1))
	per := mb << 20 / n
	for i := 0; i < n; i++ {
		data := make([]byte, per)
		if i%2 == 0 {
			r.Read(data)
		} else {
			for j := range data {
				data[j] = "compressible text\n"[j%18]
			}
		}
		p := filepath.Join(root, fmt.Sprintf("d%02d", i%16), fmt.Sprintf("f%03d", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o755); err != nil { // the command must be runnable
			b.Fatal(err)
		}
	}
	img, err := ocilayout.Build(ocilayout.Config{Cmd: []string{"/d00/f000"}},
		[]ocilayout.Layer{ocilayout.DirLayer(root, dirtar.Options{})}, ocilayout.Options{})
	if err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(b.TempDir(), "layout")
	if err := ocilayout.WriteLayout(dir, "bench", img); err != nil {
		b.Fatal(err)
	}
	return "oci:" + dir + ":bench"
}

// BenchmarkWriteRamdisk builds a ramdisk from a 32 MiB gzip-layered image
// and reports, besides MB/s, its CPU time (user + system, steadier than
// wall time on a shared machine) as a multiple of the CPU time of sha384
// over the same ramdisk bytes (x-sha384-cpu), measured in the same run.
func BenchmarkWriteRamdisk(b *testing.B) {
	ref := benchImage(b, 32, 256)
	img, err := Open(ref, Options{})
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "app.cpio")
	b.ResetTimer()
	c0 := cpuTime()
	var size int64
	for i := 0; i < b.N; i++ {
		_, st, err := WriteRamdiskFile(context.Background(), out, img, Options{})
		if err != nil {
			b.Fatal(err)
		}
		size = st.ArchiveBytes
	}
	c1 := cpuTime()
	b.StopTimer()
	b.SetBytes(size)
	for i := 0; i < b.N; i++ {
		f, err := os.Open(out)
		if err != nil {
			b.Fatal(err)
		}
		h := sha512.New384()
		io.Copy(h, f)
		f.Close()
	}
	c2 := cpuTime()
	b.ReportMetric(float64(c1-c0)/float64(c2-c1), "x-sha384-cpu")
}

// cpuTime is the process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestMemoryDoesNotGrowWithContent writes a ramdisk of 16 MiB of content
// in 4 files: the allocations during the build must stay far below the
// content size (contents are streamed through fixed buffers, never held).
func TestMemoryDoesNotGrowWithContent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 16 MiB image")
	}
	ref := benchImage(t, 16, 4)
	img, err := Open(ref, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, st, err := WriteRamdisk(context.Background(), io.Discard, img, Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if st.Bytes < 16<<20 {
		t.Fatalf("ramdisk holds %d content bytes, want >= 16 MiB", st.Bytes)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("WriteRamdisk of %d MiB allocated %d KiB in total, want < 4 MiB", st.Bytes>>20, alloc>>10)
	} else {
		t.Logf("WriteRamdisk of %d MiB allocated %d KiB in total", st.Bytes>>20, alloc>>10)
	}
}
