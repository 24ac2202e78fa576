package eif

import (
	"bytes"
	"crypto/sha512"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// discardAt is an io.WriterAt that drops everything.
type discardAt struct{}

func (discardAt) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

// noiseReader yields n pseudo-random bytes without allocating.
type noiseReader struct {
	rng *rand.ChaCha8
	n   int64
}

func (r *noiseReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	r.rng.Read(p)
	r.n -= int64(len(p))
	return len(p), nil
}

func noise(n int64) io.Reader { return &noiseReader{rng: rand.NewChaCha8([32]byte{1}), n: n} }

func writeImage(t testing.TB, out io.WriterAt, app io.Reader) *Measurements {
	w := NewWriter(out, Options{})
	for _, err := range []error{
		w.WriteKernel(noise(1 << 20)),
		w.WriteCmdline("console=ttyS0"),
		w.WriteMetadata(&Metadata{}),
		w.WriteRamdisk(noise(1 << 16)),
		w.WriteRamdisk(app),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	m, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestWriterMemoryBounded streams a 128 MiB ramdisk: the allocations must
// not depend on its size (the pipeline's buffers are a few MiB).
func TestWriterMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 128 MiB")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	writeImage(t, discardAt{}, noise(128<<20))
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("writing a 128 MiB ramdisk allocated %d MiB, want < 16 MiB", alloc>>20)
	}
}

// BenchmarkWriteVsSHA384 writes an image with a 64 MiB application ramdisk
// (to nowhere) and reports the time relative to one SHA-384 pass over the
// same bytes, measured in the same run ("x-sha384"; two passes are needed,
// PCR0 and PCR2, so 1 means the two hashes ran fully in parallel).
func BenchmarkWriteVsSHA384(b *testing.B) {
	const size = 64 << 20
	data := make([]byte, size)
	noise(size).Read(data)
	var base time.Duration
	for range 3 {
		t0 := time.Now()
		sha512.Sum384(data)
		if d := time.Since(t0); base == 0 || d < base {
			base = d
		}
	}
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		writeImage(b, discardAt{}, bytes.NewReader(data))
	}
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(per)/float64(base), "x-sha384")
}
