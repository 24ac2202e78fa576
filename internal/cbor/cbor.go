// Package cbor is the project's one CBOR reader and writer, small and
// strict, for what must be read or written byte for byte: attestation
// documents and the COSE_Sign1 around them (qtsm/attestation,
// internal/cose), and the EIF signature section (image/eif). It exists
// instead of a general decoder (fxamacker/cbor, which the secure-module
// messages use) because verification must see a document exactly as sent:
// the order of a map's keys, how wide each integer was encoded (Qingtian
// writes non-minimal integers), null versus empty byte string, and the raw
// bytes of the protected header and payload, which are signed as is.
//
// The reader never allocates from a length it reads: every length is
// checked against the bytes that remain before anything is sliced, and byte
// strings are returned as sub-slices of the input.
package cbor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Major types.
const (
	MajorUint   = 0
	MajorNeg    = 1
	MajorBytes  = 2
	MajorText   = 3
	MajorArray  = 4
	MajorMap    = 5
	MajorTag    = 6
	MajorSimple = 7
)

const (
	Null  = 0xf6
	Break = 0xff
	// MaxDepth bounds nesting when skipping unknown values.
	MaxDepth = 16
)

// Head is one decoded item head: major type and argument.
type Head struct {
	Major byte
	Arg   uint64
	// width is how many bytes the argument took after the initial byte
	// (0, 1, 2, 4 or 8); minimal reports whether that was the shortest form.
	Width   int
	Minimal bool
	// indef is set for an indefinite-length string, array or map.
	Indef bool
}

// ErrMalformed is what the reader's errors wrap unless NewReader is given
// the caller's own.
var ErrMalformed = errors.New("cbor: malformed")

// Reader reads CBOR items from a byte slice.
type Reader struct {
	b   []byte
	off int
	err error // what errors wrap
}

// NewReader reads b; its errors wrap errMalformed (ErrMalformed when nil).
func NewReader(b []byte, errMalformed error) *Reader {
	if errMalformed == nil {
		errMalformed = ErrMalformed
	}
	return &Reader{b: b, err: errMalformed}
}

// Offset is how many bytes have been read.
func (r *Reader) Offset() int { return r.off }

// Errorf is a malformed-input error at the current offset.
func (r *Reader) Errorf(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", r.err, r.off, fmt.Sprintf(format, args...))
}

// Remaining is how many bytes are left.
func (r *Reader) Remaining() int { return len(r.b) - r.off }

// Peek returns the next initial byte without consuming it.
func (r *Reader) Peek() (byte, error) {
	if r.off >= len(r.b) {
		return 0, r.Errorf("unexpected end of data")
	}
	return r.b[r.off], nil
}

// Head reads one item head.
func (r *Reader) Head() (Head, error) {
	if r.off >= len(r.b) {
		return Head{}, r.Errorf("unexpected end of data")
	}
	ib := r.b[r.off]
	h := Head{Major: ib >> 5}
	ai := ib & 0x1f
	r.off++
	switch {
	case ai < 24:
		h.Arg, h.Minimal = uint64(ai), true
		return h, nil
	case ai <= 27:
		h.Width = 1 << (ai - 24)
		if r.Remaining() < h.Width {
			r.off--
			return Head{}, r.Errorf("truncated item head")
		}
		p := r.b[r.off : r.off+h.Width]
		switch h.Width {
		case 1:
			h.Arg = uint64(p[0])
			h.Minimal = h.Arg >= 24
		case 2:
			h.Arg = uint64(binary.BigEndian.Uint16(p))
			h.Minimal = h.Arg > 0xff
		case 4:
			h.Arg = uint64(binary.BigEndian.Uint32(p))
			h.Minimal = h.Arg > 0xffff
		case 8:
			h.Arg = binary.BigEndian.Uint64(p)
			h.Minimal = h.Arg > 0xffffffff
		}
		if h.Major == MajorSimple {
			// Floats are not minimal or not: they are just not used here.
			h.Minimal = true
		}
		r.off += h.Width
		return h, nil
	case ai == 31:
		switch h.Major {
		case MajorBytes, MajorText, MajorArray, MajorMap:
			h.Indef, h.Minimal = true, true
			return h, nil
		case MajorSimple:
			r.off--
			return Head{}, r.Errorf("unexpected break")
		}
	}
	r.off--
	return Head{}, r.Errorf("reserved additional information %d in initial byte %#x", ai, ib)
}

// IsNull consumes a null if one is next.
func (r *Reader) IsNull() bool {
	if r.off < len(r.b) && r.b[r.off] == Null {
		r.off++
		return true
	}
	return false
}

// IsBreak consumes a break if one is next.
func (r *Reader) IsBreak() bool {
	if r.off < len(r.b) && r.b[r.off] == Break {
		r.off++
		return true
	}
	return false
}

// stringBody returns the n-byte body of a definite-length string.
func (r *Reader) stringBody(h Head) ([]byte, error) {
	if h.Indef {
		return nil, r.Errorf("indefinite-length string not supported")
	}
	if h.Arg > uint64(r.Remaining()) {
		return nil, r.Errorf("string of %d bytes but only %d remain", h.Arg, r.Remaining())
	}
	n := int(h.Arg)
	s := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return s, nil
}

// ByteString reads a definite-length byte string; the result aliases the input.
func (r *Reader) ByteString() ([]byte, Head, error) {
	h, err := r.Head()
	if err != nil {
		return nil, h, err
	}
	if h.Major != MajorBytes {
		r.off--
		return nil, h, r.Errorf("want byte string, got major type %d", h.Major)
	}
	b, err := r.stringBody(h)
	return b, h, err
}

// TextString reads a definite-length, valid UTF-8 text string.
func (r *Reader) TextString() (string, error) {
	start := r.off
	h, err := r.Head()
	if err != nil {
		return "", err
	}
	if h.Major != MajorText {
		r.off = start
		return "", r.Errorf("want text string, got major type %d", h.Major)
	}
	b, err := r.stringBody(h)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		r.off = start
		return "", r.Errorf("text string is not valid UTF-8")
	}
	return string(b), nil
}

// Uint reads an unsigned integer.
func (r *Reader) Uint() (uint64, Head, error) {
	start := r.off
	h, err := r.Head()
	if err != nil {
		return 0, h, err
	}
	if h.Major != MajorUint {
		r.off = start
		return 0, h, r.Errorf("want unsigned integer, got major type %d", h.Major)
	}
	return h.Arg, h, nil
}

// Int reads a signed integer that fits int64.
func (r *Reader) Int() (int64, Head, error) {
	start := r.off
	h, err := r.Head()
	if err != nil {
		return 0, h, err
	}
	switch h.Major {
	case MajorUint:
		if h.Arg > 1<<63-1 {
			r.off = start
			return 0, h, r.Errorf("integer %d overflows int64", h.Arg)
		}
		return int64(h.Arg), h, nil
	case MajorNeg:
		if h.Arg > 1<<63-1 {
			r.off = start
			return 0, h, r.Errorf("negative integer overflows int64")
		}
		return -1 - int64(h.Arg), h, nil
	}
	r.off = start
	return 0, h, r.Errorf("want integer, got major type %d", h.Major)
}

// Container reads an array or map head of the given major type. For a
// definite length it returns the count, checked to be plausible: every
// element takes at least one byte (two for a map pair).
func (r *Reader) Container(major byte) (Head, error) {
	start := r.off
	h, err := r.Head()
	if err != nil {
		return h, err
	}
	if h.Major != major {
		r.off = start
		return h, r.Errorf("want major type %d, got %d", major, h.Major)
	}
	if !h.Indef {
		per := uint64(1)
		if major == MajorMap {
			per = 2
		}
		if h.Arg > uint64(r.Remaining())/per {
			r.off = start
			return h, r.Errorf("container of %d entries cannot fit in %d bytes", h.Arg, r.Remaining())
		}
	}
	return h, nil
}

// More reports whether another element of a container follows: for a
// definite container it counts down n, for an indefinite one it consumes the
// break at the end.
func (r *Reader) More(h Head, n *uint64) (bool, error) {
	if h.Indef {
		if r.IsBreak() {
			return false, nil
		}
		if r.off >= len(r.b) {
			return false, r.Errorf("indefinite-length container not terminated")
		}
		return true, nil
	}
	if *n == 0 {
		return false, nil
	}
	*n--
	return true, nil
}

// Each calls fn once per element (per key-value pair of a map) of the
// container whose head r.container returned; fn reads the element.
func (r *Reader) Each(h Head, fn func() error) error {
	n := h.Arg
	for {
		ok, err := r.More(h, &n)
		if err != nil || !ok {
			return err
		}
		if err := fn(); err != nil {
			return err
		}
	}
}

// Skip skips one complete item, of any type, up to MaxDepth levels deep.
// Tags are refused: nothing this project reads is tagged inside.
func (r *Reader) Skip(depth int) error {
	if depth > MaxDepth {
		return r.Errorf("nesting deeper than %d", MaxDepth)
	}
	start := r.off
	h, err := r.Head()
	if err != nil {
		return err
	}
	switch h.Major {
	case MajorUint, MajorNeg:
		return nil
	case MajorBytes, MajorText:
		if h.Indef {
			for {
				if r.IsBreak() {
					return nil
				}
				c, err := r.Head()
				if err != nil {
					return err
				}
				if c.Major != h.Major || c.Indef {
					return r.Errorf("bad chunk in indefinite-length string")
				}
				b, err := r.stringBody(c)
				if err != nil {
					return err
				}
				if c.Major == MajorText && !utf8.Valid(b) {
					return r.Errorf("text string is not valid UTF-8")
				}
			}
		}
		b, err := r.stringBody(h)
		if err != nil {
			return err
		}
		if h.Major == MajorText && !utf8.Valid(b) {
			return r.Errorf("text string is not valid UTF-8")
		}
		return nil
	case MajorArray, MajorMap:
		r.off = start
		h, err := r.Container(h.Major)
		if err != nil {
			return err
		}
		return r.Each(h, func() error {
			if err := r.Skip(depth + 1); err != nil {
				return err
			}
			if h.Major == MajorMap {
				return r.Skip(depth + 1)
			}
			return nil
		})
	case MajorTag:
		r.off = start
		return r.Errorf("unexpected tag %d", h.Arg)
	default: // simple values and floats
		if h.Width == 1 && h.Arg < 32 {
			r.off = start
			return r.Errorf("simple value %d in two bytes", h.Arg)
		}
		return nil
	}
}

// Writer encodes CBOR. Integers are minimal unless a width is forced.
type Writer struct{ B []byte }

// HeadWidth appends an item head with the argument in exactly width bytes
// after the initial byte (0 for the initial byte itself, when arg < 24).
func (w *Writer) HeadWidth(major byte, arg uint64, width int) {
	m := major << 5
	switch width {
	case 0:
		w.B = append(w.B, m|byte(arg))
	case 1:
		w.B = append(w.B, m|24, byte(arg))
	case 2:
		w.B = append(w.B, m|25)
		w.B = binary.BigEndian.AppendUint16(w.B, uint16(arg))
	case 4:
		w.B = append(w.B, m|26)
		w.B = binary.BigEndian.AppendUint32(w.B, uint32(arg))
	default:
		w.B = append(w.B, m|27)
		w.B = binary.BigEndian.AppendUint64(w.B, arg)
	}
}

// Head appends a minimal item head.
func (w *Writer) Head(major byte, arg uint64) {
	switch {
	case arg < 24:
		w.HeadWidth(major, arg, 0)
	case arg <= 0xff:
		w.HeadWidth(major, arg, 1)
	case arg <= 0xffff:
		w.HeadWidth(major, arg, 2)
	case arg <= 0xffffffff:
		w.HeadWidth(major, arg, 4)
	default:
		w.HeadWidth(major, arg, 8)
	}
}

// ByteString appends a definite-length byte string.
func (w *Writer) ByteString(b []byte) {
	w.Head(MajorBytes, uint64(len(b)))
	w.B = append(w.B, b...)
}

// TextString appends a definite-length text string.
func (w *Writer) TextString(s string) {
	w.Head(MajorText, uint64(len(s)))
	w.B = append(w.B, s...)
}

// Null appends null.
func (w *Writer) Null() { w.B = append(w.B, Null) }
