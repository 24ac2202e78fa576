package rootfs

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	kgzip "github.com/klauspost/compress/gzip"
)

// ErrDigest is returned when a layer blob does not match its digest.
var ErrDigest = errors.New("rootfs: layer digest mismatch")

// storedBlobOpener reads a layer whose blob is stored as is (OCI layouts):
// the blob is hashed while read and checked against the manifest's digest
// when the reader is closed, and a gzip blob is decompressed with
// klauspost/compress, about twice as fast as compress/gzip. A blob that is
// not gzip falls back to go-containerregistry's Uncompressed.
func storedBlobOpener(l v1.Layer) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		want, err := l.Digest()
		if err != nil {
			return nil, err
		}
		raw, err := l.Compressed()
		if err != nil {
			return nil, err
		}
		v := &verifier{raw: raw, want: want}
		if want.Algorithm == "sha256" {
			v.h = sha256.New()
		}
		br := bufio.NewReaderSize(v, 1<<16)
		if magic, _ := br.Peek(2); len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
			raw.Close()
			return l.Uncompressed()
		}
		zr, err := kgzip.NewReader(br)
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("gunzip: %w", err)
		}
		return &gzipLayer{zr: zr, br: br, v: v}, nil
	}
}

// verifier hashes what is read through it.
type verifier struct {
	raw  io.ReadCloser
	h    hash.Hash
	want v1.Hash
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.raw.Read(p)
	if v.h != nil {
		v.h.Write(p[:n])
	}
	return n, err
}

type gzipLayer struct {
	zr     *kgzip.Reader
	br     *bufio.Reader
	v      *verifier
	closed bool
}

func (g *gzipLayer) Read(p []byte) (int, error) { return g.zr.Read(p) }

// Close reads the rest of the blob and checks its digest.
func (g *gzipLayer) Close() error {
	if g.closed {
		return nil
	}
	g.closed = true
	defer g.v.raw.Close()
	if _, err := io.Copy(io.Discard, g.zr); err != nil {
		return fmt.Errorf("gunzip: %w", err)
	}
	if err := g.zr.Close(); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, g.br); err != nil {
		return err
	}
	if g.v.h != nil {
		if got := hex.EncodeToString(g.v.h.Sum(nil)); got != g.v.want.Hex {
			return fmt.Errorf("%w: blob is sha256:%s, manifest says %s", ErrDigest, got, g.v.want)
		}
	}
	return nil
}
