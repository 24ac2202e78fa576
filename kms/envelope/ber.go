package envelope

import "fmt"

// maxDepth bounds the nesting of a BER input.
const maxDepth = 32

// toDER converts BER to DER as far as this package needs: indefinite
// lengths become definite, and a constructed OCTET STRING becomes the
// primitive one its chunks concatenate to. Tags, and the content of
// primitive values, are copied as they are; encoding/asn1 then checks the
// rest. The output is never longer than the input plus the length octets
// that definite lengths take.
func toDER(in []byte) ([]byte, error) {
	v, rest, err := parse(in, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the envelope", ErrMalformed, len(rest))
	}
	return v.der(nil), nil
}

// value is one parsed BER value.
type value struct {
	tag         []byte // identifier octets, as they were
	constructed bool
	content     []byte   // primitive content (a sub-slice of the input, or joined chunks)
	children    []*value // constructed content
}

func (v *value) der(out []byte) []byte {
	out = append(out, v.tag...)
	if !v.constructed {
		out = appendLength(out, len(v.content))
		return append(out, v.content...)
	}
	var body []byte
	for _, c := range v.children {
		body = c.der(body)
	}
	out = appendLength(out, len(body))
	return append(out, body...)
}

func appendLength(out []byte, n int) []byte {
	if n < 0x80 {
		return append(out, byte(n))
	}
	var b [8]byte
	i := len(b)
	for ; n > 0; n >>= 8 {
		i--
		b[i] = byte(n)
	}
	out = append(out, 0x80|byte(len(b)-i))
	return append(out, b[i:]...)
}

// parse reads one value from in.
func parse(in []byte, depth int) (*value, []byte, error) {
	if depth > maxDepth {
		return nil, nil, fmt.Errorf("%w: nested more than %d deep", ErrMalformed, maxDepth)
	}
	if len(in) < 2 {
		return nil, nil, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	// Identifier: one octet, or a high tag number in base-128 octets.
	n := 1
	if in[0]&0x1f == 0x1f {
		for {
			if n >= len(in) || n > 4 {
				return nil, nil, fmt.Errorf("%w: bad tag", ErrMalformed)
			}
			n++
			if in[n-1]&0x80 == 0 {
				break
			}
		}
	}
	v := &value{tag: in[:n], constructed: in[0]&0x20 != 0}
	in = in[n:]
	if len(in) == 0 {
		return nil, nil, fmt.Errorf("%w: truncated length", ErrMalformed)
	}
	l := int(in[0])
	in = in[1:]
	indefinite := false
	switch {
	case l == 0x80:
		if !v.constructed {
			return nil, nil, fmt.Errorf("%w: indefinite length on a primitive value", ErrMalformed)
		}
		indefinite = true
	case l > 0x80:
		k := l & 0x7f
		if k > 4 || k > len(in) {
			return nil, nil, fmt.Errorf("%w: length of %d octets", ErrMalformed, k)
		}
		l = 0
		for _, b := range in[:k] {
			l = l<<8 | int(b)
		}
		in = in[k:]
	}
	var body []byte
	if !indefinite {
		if l > len(in) {
			return nil, nil, fmt.Errorf("%w: length %d, %d bytes left", ErrMalformed, l, len(in))
		}
		body, in = in[:l], in[l:]
	}
	if !v.constructed {
		v.content = body
		return v, in, nil
	}
	// Constructed: children up to the end of body, or up to the
	// end-of-contents octets when indefinite.
	src := body
	if indefinite {
		src = in
	}
	for {
		if indefinite {
			if len(src) >= 2 && src[0] == 0 && src[1] == 0 {
				src = src[2:]
				break
			}
		} else if len(src) == 0 {
			break
		}
		c, rest, err := parse(src, depth+1)
		if err != nil {
			return nil, nil, err
		}
		v.children = append(v.children, c)
		src = rest
	}
	if indefinite {
		in = src
	}
	// A constructed OCTET STRING (universal 4): its chunks, joined.
	if len(v.tag) == 1 && v.tag[0] == 0x24 {
		var joined []byte
		for _, c := range v.children {
			if c.constructed || len(c.tag) != 1 || c.tag[0] != 0x04 {
				return nil, nil, fmt.Errorf("%w: an OCTET STRING chunk of another type", ErrMalformed)
			}
			joined = append(joined, c.content...)
		}
		return &value{tag: []byte{0x04}, content: joined}, in, nil
	}
	return v, in, nil
}
