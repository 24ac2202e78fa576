package rootfs

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// ErrDigest is returned when a layer's blob does not match its manifest
// descriptor (digest or size), or its content does not match the config's
// diff_id.
var ErrDigest = errors.New("rootfs: layer digest mismatch")

// ErrCompression is a layer blob whose bytes are not compressed the way
// its media type says (gzip bytes under a zstd type, say). Such a blob is
// refused, not guessed at: the media type is part of what the manifest
// digest signs.
var ErrCompression = errors.New("rootfs: layer compression does not match its media type")

// compression is how a layer blob is compressed.
type compression int

const (
	plain compression = iota
	gzipped
	zstded
)

func (c compression) String() string { return [...]string{"uncompressed", "gzip", "zstd"}[c] }

// byMediaType is the compression a layer media type promises.
func byMediaType(mt types.MediaType) compression {
	switch mt {
	case types.OCILayer, types.DockerLayer, types.OCIRestrictedLayer:
		return gzipped
	case types.OCILayerZStd:
		return zstded
	}
	return plain
}

// byMagic is the compression a blob's first bytes show.
func byMagic(b []byte) compression {
	switch {
	case len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b:
		return gzipped
	case len(b) >= 4 && bytes.Equal(b[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return zstded
	}
	return plain
}

// storedBlobOpener reads a layer whose blob is stored as is (OCI layouts):
// the blob, whatever its media type, is hashed and counted as it is read
// and checked against the manifest descriptor's digest and size; it is
// decompressed as its media type says (gzip with klauspost/compress, about
// twice as fast as compress/gzip; zstd), and a blob whose bytes say
// otherwise is ErrCompression.
func storedBlobOpener(l v1.Layer) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		want, err := l.Digest()
		if err != nil {
			return nil, err
		}
		size, err := l.Size()
		if err != nil {
			return nil, err
		}
		mt, err := l.MediaType()
		if err != nil {
			return nil, err
		}
		raw, err := l.Compressed()
		if err != nil {
			return nil, err
		}
		blob, err := newChecked(raw, want, size, "blob")
		if err != nil {
			raw.Close()
			return nil, err
		}
		br := bufio.NewReaderSize(blob, 1<<16)
		magic, _ := br.Peek(4)
		promised := byMediaType(mt)
		if got := byMagic(magic); got != promised {
			raw.Close()
			return nil, fmt.Errorf("%w: media type %s promises %s, the blob is %s", ErrCompression, mt, promised, got)
		}
		content, closeContent, err := decompress(promised, br)
		if err != nil {
			raw.Close()
			return nil, err
		}
		return &storedLayer{content: content, closeContent: closeContent, br: br, blob: blob}, nil
	}
}

// decompress reads r's content as compressed by c.
func decompress(c compression, r io.Reader) (io.Reader, func(), error) {
	switch c {
	case gzipped:
		zr, err := kgzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("gunzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case zstded:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return r, func() {}, nil
}

// storedLayer is a stored blob's content.
type storedLayer struct {
	content      io.Reader
	closeContent func()
	br           *bufio.Reader
	blob         *checked
	closed       bool
}

func (s *storedLayer) Read(p []byte) (int, error) { return s.content.Read(p) }

// Close reads the rest of the content and of the blob, then checks the
// blob's digest and size.
func (s *storedLayer) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	defer s.blob.raw.Close()
	if _, err := io.Copy(io.Discard, s.content); err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	s.closeContent()
	if _, err := io.Copy(io.Discard, s.br); err != nil {
		return err
	}
	return s.blob.Close()
}

// checked hashes and counts what is read through it; Close compares both
// with what was promised.
type checked struct {
	raw  io.ReadCloser
	h    hash.Hash
	want v1.Hash
	size int64 // -1: not checked
	n    int64
	what string
}

// newChecked checks raw against want (sha256 or sha512) and, when size >=
// 0, its length.
func newChecked(raw io.ReadCloser, want v1.Hash, size int64, what string) (*checked, error) {
	c := &checked{raw: raw, want: want, size: size, what: what}
	switch want.Algorithm {
	case "sha256":
		c.h = sha256.New()
	case "sha512":
		c.h = sha512.New()
	default:
		return nil, fmt.Errorf("%w: %s digest %q: algorithm not supported", ErrDigest, what, want)
	}
	return c, nil
}

func (c *checked) Read(p []byte) (int, error) {
	n, err := c.raw.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if c.size >= 0 && c.n > c.size {
		return n, fmt.Errorf("%w: %s is longer than the %d bytes its descriptor says", ErrDigest, c.what, c.size)
	}
	return n, err
}

// Close drains the rest and checks size and digest.
func (c *checked) Close() error {
	if _, err := io.Copy(io.Discard, c); err != nil {
		return err
	}
	return c.verify()
}

// verify compares what was read with what was promised: the size (when
// checked), then the digest.
func (c *checked) verify() error {
	if c.size >= 0 && c.n != c.size {
		return fmt.Errorf("%w: %s is %d bytes, its descriptor says %d", ErrDigest, c.what, c.n, c.size)
	}
	if got := hex.EncodeToString(c.h.Sum(nil)); got != c.want.Hex {
		says := "the manifest says "
		if c.what == "content" {
			says = "the config's diff_id is "
		}
		return fmt.Errorf("%w: %s is %s:%s, %s%s", ErrDigest, c.what, c.want.Algorithm, got, says, c.want)
	}
	return nil
}

// diffChecked wraps a layer's content so that, once read to its end and
// closed, it is checked against the config's diff_id.
func diffChecked(open func() (io.ReadCloser, error), diffID v1.Hash) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		rc, err := open()
		if err != nil {
			return nil, err
		}
		c, err := newChecked(rc, diffID, -1, "content")
		if err != nil {
			rc.Close()
			return nil, err
		}
		return &diffReader{c: c}, nil
	}
}

type diffReader struct{ c *checked }

func (d *diffReader) Read(p []byte) (int, error) { return d.c.Read(p) }

// Close checks the content (after draining it), then closes the layer
// (which checks its blob); the blob's verdict comes first.
func (d *diffReader) Close() error {
	_, derr := io.Copy(io.Discard, d.c)
	if err := d.c.raw.Close(); err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	return d.c.verify()
}
