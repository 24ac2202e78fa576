package rootfs

import (
	"context"
	"crypto/sha512"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/qtenclave/enclave/rootfs/dirtar"
	"github.com/qtenclave/enclave/rootfs/ocilayout"
)

// benchImage writes an OCI layout of about mb MiB in 256 files, half
// random, half repetitive, and returns its reference.
func benchImage(b *testing.B, mb int) string {
	b.Helper()
	root := filepath.Join(b.TempDir(), "root")
	r := rand.New(rand.NewSource(1))
	per := mb << 20 / 256
	for i := 0; i < 256; i++ {
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
		if err := os.WriteFile(p, data, 0o644); err != nil {
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
// and reports, besides MB/s, its time as a multiple of sha384 over the
// same ramdisk bytes (x-sha384), measured in the same run.
func BenchmarkWriteRamdisk(b *testing.B) {
	ref := benchImage(b, 32)
	img, err := Open(ref, Options{})
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "app.cpio")
	b.ResetTimer()
	var size int64
	for i := 0; i < b.N; i++ {
		_, st, err := WriteRamdiskFile(context.Background(), out, img, Options{})
		if err != nil {
			b.Fatal(err)
		}
		size = st.ArchiveBytes
	}
	elapsed := b.Elapsed()
	b.StopTimer()
	b.SetBytes(size)
	start := time.Now()
	for i := 0; i < b.N; i++ {
		f, err := os.Open(out)
		if err != nil {
			b.Fatal(err)
		}
		h := sha512.New384()
		io.Copy(h, f)
		f.Close()
	}
	b.ReportMetric(float64(elapsed)/float64(time.Since(start)), "x-sha384")
}
