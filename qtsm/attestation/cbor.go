package attestation

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// A small CBOR reader and writer, just enough for COSE_Sign1 attestation
// documents. It exists (instead of a general decoder) because verification
// must see the document exactly as sent: the order of the payload's keys,
// how wide each integer was encoded, null versus empty byte string, and the
// raw bytes of the protected header and payload, which are signed as is.
//
// The reader never allocates from a length it reads: every length is checked
// against the bytes that remain before anything is sliced, and byte strings
// are returned as sub-slices of the input.

// CBOR major types.
const (
	majorUint   = 0
	majorNeg    = 1
	majorBytes  = 2
	majorText   = 3
	majorArray  = 4
	majorMap    = 5
	majorTag    = 6
	majorSimple = 7
)

const (
	cborNull  = 0xf6
	cborBreak = 0xff
	// maxDepth bounds nesting when skipping unknown values.
	maxDepth = 16
)

// head is one decoded item head: major type and argument.
type head struct {
	major byte
	arg   uint64
	// width is how many bytes the argument took after the initial byte
	// (0, 1, 2, 4 or 8); minimal reports whether that was the shortest form.
	width   int
	minimal bool
	// indef is set for an indefinite-length string, array or map.
	indef bool
}

type reader struct {
	b   []byte
	off int
}

func (r *reader) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrMalformed, r.off, fmt.Sprintf(format, args...))
}

func (r *reader) remaining() int { return len(r.b) - r.off }

// peek returns the next initial byte without consuming it.
func (r *reader) peek() (byte, error) {
	if r.off >= len(r.b) {
		return 0, r.errorf("unexpected end of data")
	}
	return r.b[r.off], nil
}

// head reads one item head.
func (r *reader) head() (head, error) {
	if r.off >= len(r.b) {
		return head{}, r.errorf("unexpected end of data")
	}
	ib := r.b[r.off]
	h := head{major: ib >> 5}
	ai := ib & 0x1f
	r.off++
	switch {
	case ai < 24:
		h.arg, h.minimal = uint64(ai), true
		return h, nil
	case ai <= 27:
		h.width = 1 << (ai - 24)
		if r.remaining() < h.width {
			r.off--
			return head{}, r.errorf("truncated item head")
		}
		p := r.b[r.off : r.off+h.width]
		switch h.width {
		case 1:
			h.arg = uint64(p[0])
			h.minimal = h.arg >= 24
		case 2:
			h.arg = uint64(binary.BigEndian.Uint16(p))
			h.minimal = h.arg > 0xff
		case 4:
			h.arg = uint64(binary.BigEndian.Uint32(p))
			h.minimal = h.arg > 0xffff
		case 8:
			h.arg = binary.BigEndian.Uint64(p)
			h.minimal = h.arg > 0xffffffff
		}
		if h.major == majorSimple {
			// Floats are not minimal or not: they are just not used here.
			h.minimal = true
		}
		r.off += h.width
		return h, nil
	case ai == 31:
		switch h.major {
		case majorBytes, majorText, majorArray, majorMap:
			h.indef, h.minimal = true, true
			return h, nil
		case majorSimple:
			r.off--
			return head{}, r.errorf("unexpected break")
		}
	}
	r.off--
	return head{}, r.errorf("reserved additional information %d in initial byte %#x", ai, ib)
}

// isNull consumes a null if one is next.
func (r *reader) isNull() bool {
	if r.off < len(r.b) && r.b[r.off] == cborNull {
		r.off++
		return true
	}
	return false
}

// isBreak consumes a break if one is next.
func (r *reader) isBreak() bool {
	if r.off < len(r.b) && r.b[r.off] == cborBreak {
		r.off++
		return true
	}
	return false
}

// stringBody returns the n-byte body of a definite-length string.
func (r *reader) stringBody(h head) ([]byte, error) {
	if h.indef {
		return nil, r.errorf("indefinite-length string not supported")
	}
	if h.arg > uint64(r.remaining()) {
		return nil, r.errorf("string of %d bytes but only %d remain", h.arg, r.remaining())
	}
	n := int(h.arg)
	s := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return s, nil
}

// bytes reads a definite-length byte string; the result aliases the input.
func (r *reader) bytes() ([]byte, head, error) {
	h, err := r.head()
	if err != nil {
		return nil, h, err
	}
	if h.major != majorBytes {
		r.off--
		return nil, h, r.errorf("want byte string, got major type %d", h.major)
	}
	b, err := r.stringBody(h)
	return b, h, err
}

// text reads a definite-length, valid UTF-8 text string.
func (r *reader) text() (string, error) {
	start := r.off
	h, err := r.head()
	if err != nil {
		return "", err
	}
	if h.major != majorText {
		r.off = start
		return "", r.errorf("want text string, got major type %d", h.major)
	}
	b, err := r.stringBody(h)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		r.off = start
		return "", r.errorf("text string is not valid UTF-8")
	}
	return string(b), nil
}

// uint reads an unsigned integer.
func (r *reader) uint() (uint64, head, error) {
	start := r.off
	h, err := r.head()
	if err != nil {
		return 0, h, err
	}
	if h.major != majorUint {
		r.off = start
		return 0, h, r.errorf("want unsigned integer, got major type %d", h.major)
	}
	return h.arg, h, nil
}

// int reads a signed integer that fits int64.
func (r *reader) int() (int64, head, error) {
	start := r.off
	h, err := r.head()
	if err != nil {
		return 0, h, err
	}
	switch h.major {
	case majorUint:
		if h.arg > 1<<63-1 {
			r.off = start
			return 0, h, r.errorf("integer %d overflows int64", h.arg)
		}
		return int64(h.arg), h, nil
	case majorNeg:
		if h.arg > 1<<63-1 {
			r.off = start
			return 0, h, r.errorf("negative integer overflows int64")
		}
		return -1 - int64(h.arg), h, nil
	}
	r.off = start
	return 0, h, r.errorf("want integer, got major type %d", h.major)
}

// container reads an array or map head of the given major type. For a
// definite length it returns the count, checked to be plausible: every
// element takes at least one byte (two for a map pair).
func (r *reader) container(major byte) (head, error) {
	start := r.off
	h, err := r.head()
	if err != nil {
		return h, err
	}
	if h.major != major {
		r.off = start
		return h, r.errorf("want major type %d, got %d", major, h.major)
	}
	if !h.indef {
		per := uint64(1)
		if major == majorMap {
			per = 2
		}
		if h.arg > uint64(r.remaining())/per {
			r.off = start
			return h, r.errorf("container of %d entries cannot fit in %d bytes", h.arg, r.remaining())
		}
	}
	return h, nil
}

// more reports whether another element of a container follows: for a
// definite container it counts down n, for an indefinite one it consumes the
// break at the end.
func (r *reader) more(h head, n *uint64) (bool, error) {
	if h.indef {
		if r.isBreak() {
			return false, nil
		}
		if r.off >= len(r.b) {
			return false, r.errorf("indefinite-length container not terminated")
		}
		return true, nil
	}
	if *n == 0 {
		return false, nil
	}
	*n--
	return true, nil
}

// each calls fn once per element (per key-value pair of a map) of the
// container whose head r.container returned; fn reads the element.
func (r *reader) each(h head, fn func() error) error {
	n := h.arg
	for {
		ok, err := r.more(h, &n)
		if err != nil || !ok {
			return err
		}
		if err := fn(); err != nil {
			return err
		}
	}
}

// skip skips one complete item, of any type, up to maxDepth levels deep.
// Tags are refused: nothing in an attestation document is tagged.
func (r *reader) skip(depth int) error {
	if depth > maxDepth {
		return r.errorf("nesting deeper than %d", maxDepth)
	}
	start := r.off
	h, err := r.head()
	if err != nil {
		return err
	}
	switch h.major {
	case majorUint, majorNeg:
		return nil
	case majorBytes, majorText:
		if h.indef {
			for {
				if r.isBreak() {
					return nil
				}
				c, err := r.head()
				if err != nil {
					return err
				}
				if c.major != h.major || c.indef {
					return r.errorf("bad chunk in indefinite-length string")
				}
				b, err := r.stringBody(c)
				if err != nil {
					return err
				}
				if c.major == majorText && !utf8.Valid(b) {
					return r.errorf("text string is not valid UTF-8")
				}
			}
		}
		b, err := r.stringBody(h)
		if err != nil {
			return err
		}
		if h.major == majorText && !utf8.Valid(b) {
			return r.errorf("text string is not valid UTF-8")
		}
		return nil
	case majorArray, majorMap:
		r.off = start
		h, err := r.container(h.major)
		if err != nil {
			return err
		}
		return r.each(h, func() error {
			if err := r.skip(depth + 1); err != nil {
				return err
			}
			if h.major == majorMap {
				return r.skip(depth + 1)
			}
			return nil
		})
	case majorTag:
		r.off = start
		return r.errorf("unexpected tag %d", h.arg)
	default: // simple values and floats
		if h.width == 1 && h.arg < 32 {
			r.off = start
			return r.errorf("simple value %d in two bytes", h.arg)
		}
		return nil
	}
}

// writer encodes CBOR. Integers are minimal unless a width is forced.
type writer struct{ b []byte }

// headWidth appends an item head with the argument in exactly width bytes
// after the initial byte (0 for the initial byte itself, when arg < 24).
func (w *writer) headWidth(major byte, arg uint64, width int) {
	m := major << 5
	switch width {
	case 0:
		w.b = append(w.b, m|byte(arg))
	case 1:
		w.b = append(w.b, m|24, byte(arg))
	case 2:
		w.b = append(w.b, m|25)
		w.b = binary.BigEndian.AppendUint16(w.b, uint16(arg))
	case 4:
		w.b = append(w.b, m|26)
		w.b = binary.BigEndian.AppendUint32(w.b, uint32(arg))
	default:
		w.b = append(w.b, m|27)
		w.b = binary.BigEndian.AppendUint64(w.b, arg)
	}
}

// head appends a minimal item head.
func (w *writer) head(major byte, arg uint64) {
	switch {
	case arg < 24:
		w.headWidth(major, arg, 0)
	case arg <= 0xff:
		w.headWidth(major, arg, 1)
	case arg <= 0xffff:
		w.headWidth(major, arg, 2)
	case arg <= 0xffffffff:
		w.headWidth(major, arg, 4)
	default:
		w.headWidth(major, arg, 8)
	}
}

func (w *writer) bytes(b []byte) {
	w.head(majorBytes, uint64(len(b)))
	w.b = append(w.b, b...)
}

func (w *writer) text(s string) {
	w.head(majorText, uint64(len(s)))
	w.b = append(w.b, s...)
}

func (w *writer) null() { w.b = append(w.b, cborNull) }

// sigStructure returns the COSE Sig_structure for a Sign1 message with no
// external data: ["Signature1", protected, empty bstr, payload], where protected
// and payload are the raw bytes from the document, never re-encoded.
func sigStructure(protected, payload []byte) []byte {
	w := writer{b: make([]byte, 0, len(protected)+len(payload)+32)}
	w.head(majorArray, 4)
	w.text("Signature1")
	w.bytes(protected)
	w.bytes(nil)
	w.bytes(payload)
	return w.b
}
