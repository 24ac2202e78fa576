package eif

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// failAt fails every write at or beyond limit.
type failAt struct{ limit int64 }

var errDiskFull = errors.New("disk full")

func (f failAt) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.limit {
		return 0, errDiskFull
	}
	return len(p), nil
}

// countReader counts what was read from it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestWriterStopsOnWriteError(t *testing.T) {
	w := NewWriter(failAt{limit: 4 << 20}, Options{})
	if err := w.WriteKernel(strings.NewReader("k")); err != nil {
		t.Fatal(err)
	}
	w.WriteCmdline("")
	w.WriteMetadata(&Metadata{})
	src := &countReader{r: noise(256 << 20)}
	err := w.WriteRamdisk(src)
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("WriteRamdisk on a full disk = %v, want %v", err, errDiskFull)
	}
	if src.n > 64<<20 {
		t.Errorf("the writer read %d MiB of input after the output failed at 4 MiB", src.n>>20)
	}
	if _, err := w.Close(); !errors.Is(err, errDiskFull) {
		t.Errorf("Close = %v, want %v", err, errDiskFull)
	}
	if err := w.WriteRamdisk(strings.NewReader("x")); err == nil {
		t.Error("WriteRamdisk after Close succeeded")
	}
}
