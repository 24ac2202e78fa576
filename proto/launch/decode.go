package launch

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// decode parses a manifest without encoding/json, so that init does not
// link a reflection-based codec (about 365 KB, and slow on first use under
// emulation). It accepts a subset of what encoding/json accepts for
// Manifest — exact field names, no duplicates, valid UTF-8, nothing after
// the object — and yields the same value (FuzzDecodeMatchesJSON).
func decode(data []byte) (*Manifest, error) {
	d := &decoder{b: data}
	m := &Manifest{}
	if err := d.object(m); err != nil {
		return nil, err
	}
	d.space()
	if d.i != len(d.b) {
		return nil, d.errorf("trailing data")
	}
	return m, nil
}

type decoder struct {
	b []byte
	i int
}

var errEOF = errors.New("unexpected end of input")

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", d.i, fmt.Sprintf(format, args...))
}

func (d *decoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte.
func (d *decoder) peek() (byte, error) {
	d.space()
	if d.i >= len(d.b) {
		return 0, errEOF
	}
	return d.b[d.i], nil
}

func (d *decoder) expect(c byte) error {
	got, err := d.peek()
	if err != nil {
		return err
	}
	if got != c {
		return d.errorf("got %q, want %q", got, c)
	}
	d.i++
	return nil
}

// null consumes a null literal if one is next.
func (d *decoder) null() bool {
	if c, err := d.peek(); err == nil && c == 'n' && d.literal("null") {
		return true
	}
	return false
}

func (d *decoder) literal(s string) bool {
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

// list reads open, then elements separated by ',' up to close; elem reads
// one element.
func (d *decoder) list(open, close byte, elem func() error) error {
	if err := d.expect(open); err != nil {
		return err
	}
	if c, err := d.peek(); err != nil {
		return err
	} else if c == close {
		d.i++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		c, err := d.peek()
		if err != nil {
			return err
		}
		d.i++
		switch c {
		case ',':
		case close:
			return nil
		default:
			d.i--
			return d.errorf("got %q, want ',' or '%c'", c, close)
		}
	}
}

func (d *decoder) object(m *Manifest) error {
	return d.members("", func(key string) error { return d.field(m, key) })
}

// members reads an object, calling field for each member's value, by
// key; prefix names the object in errors.
func (d *decoder) members(prefix string, field func(key string) error) error {
	seen := map[string]bool{}
	return d.list('{', '}', func() error {
		key, err := d.str()
		if err != nil {
			return err
		}
		if seen[key] {
			return d.errorf("duplicate field %q", prefix+key)
		}
		seen[key] = true
		if err := d.expect(':'); err != nil {
			return err
		}
		return field(key)
	})
}

func (d *decoder) field(m *Manifest, key string) error {
	var err error
	switch key {
	case "version":
		var text string
		var ok bool
		if text, ok, err = d.number(); err == nil && ok {
			v, perr := strconv.ParseInt(text, 10, 0)
			if perr != nil {
				return d.errorf("version %s out of range", text)
			}
			m.Version = int(v)
		}
	case "entrypoint":
		err = d.strings(&m.Entrypoint)
	case "cmd":
		err = d.strings(&m.Cmd)
	case "env":
		err = d.strings(&m.Env)
	case "working_dir":
		err = d.optString(&m.WorkingDir)
	case "user":
		err = d.optString(&m.User)
	case "hostname":
		err = d.optString(&m.Hostname)
	case "tmp_noexec":
		var b, ok bool
		if b, ok, err = d.boolean(); err == nil && ok {
			m.TmpNoexec = b
		}
	case "nofile_limit":
		var n uint64
		var ok bool
		if n, ok, err = d.unsigned(key, 64); err == nil && ok {
			m.NofileLimit = n
		}
	case "stop_timeout":
		var n uint64
		var ok bool
		if n, ok, err = d.unsigned(key, 32); err == nil && ok {
			m.StopTimeout = uint32(n)
		}
	case "agent":
		var b, ok bool
		if b, ok, err = d.boolean(); err == nil {
			if ok {
				m.Agent = &b
			} else {
				m.Agent = nil
			}
		}
	case "publish":
		if d.null() {
			m.Publish = nil
			return nil
		}
		m.Publish = []uint16{}
		err = d.list('[', ']', func() error {
			n, ok, err := d.unsigned("publish", 16)
			if err == nil && !ok {
				err = d.errorf("publish: null port")
			}
			m.Publish = append(m.Publish, uint16(n))
			return err
		})
	case "egress":
		if d.null() {
			m.Egress = nil
			return nil
		}
		if m.Egress == nil {
			m.Egress = &Egress{}
		}
		err = d.egress(m.Egress)
	default:
		return d.errorf("unknown field %q", key)
	}
	return err
}

func (d *decoder) egress(e *Egress) error {
	return d.members("egress.", func(key string) error {
		switch key {
		case "allow":
			return d.strings(&e.Allow)
		case "deny":
			return d.strings(&e.Deny)
		case "proxy_port":
			n, ok, err := d.unsigned("egress.proxy_port", 16)
			if err == nil && ok {
				e.ProxyPort = uint16(n)
			}
			return err
		case "forwards":
			return d.strings(&e.Forwards)
		}
		return d.errorf("unknown field %q", "egress."+key)
	})
}

// unsigned reads a number that fits bits unsigned bits, or null (ok
// false); key names it in the error.
func (d *decoder) unsigned(key string, bits int) (n uint64, ok bool, err error) {
	text, ok, err := d.number()
	if err != nil || !ok {
		return 0, ok, err
	}
	if n, err = strconv.ParseUint(text, 10, bits); err != nil {
		return 0, false, d.errorf("%s %s out of range", key, text)
	}
	return n, true, nil
}

// number reads an integer literal (JSON number syntax without fraction or
// exponent) and returns its text, or reads null (ok false).
func (d *decoder) number() (text string, ok bool, err error) {
	if d.null() {
		return "", false, nil
	}
	if _, err := d.peek(); err != nil {
		return "", false, err
	}
	start := d.i
	if d.b[d.i] == '-' {
		d.i++
	}
	digits := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	switch {
	case d.i == digits:
		return "", false, d.errorf("want a number")
	case d.b[digits] == '0' && d.i-digits > 1:
		return "", false, d.errorf("leading zero")
	case d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E'):
		return "", false, d.errorf("want an integer")
	}
	return string(d.b[start:d.i]), true, nil
}

func (d *decoder) boolean() (v, ok bool, err error) {
	if _, err := d.peek(); err != nil {
		return false, false, err
	}
	switch {
	case d.literal("true"):
		return true, true, nil
	case d.literal("false"):
		return false, true, nil
	case d.literal("null"):
		return false, false, nil
	}
	return false, false, d.errorf("want true, false or null")
}

func (d *decoder) optString(dst *string) error {
	if d.null() {
		return nil
	}
	s, err := d.str()
	if err != nil {
		return err
	}
	*dst = s
	return nil
}

func (d *decoder) strings(dst *[]string) error {
	if d.null() {
		*dst = nil
		return nil
	}
	out := []string{}
	if err := d.list('[', ']', func() error {
		s, err := d.str()
		out = append(out, s)
		return err
	}); err != nil {
		return err
	}
	*dst = out
	return nil
}

// str reads a JSON string.
func (d *decoder) str() (string, error) {
	if err := d.expect('"'); err != nil {
		return "", err
	}
	var out []byte
	for {
		if d.i >= len(d.b) {
			return "", errEOF
		}
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return string(out), nil
		case c < 0x20:
			return "", d.errorf("control character in string")
		case c == '\\':
			d.i++
			if d.i >= len(d.b) {
				return "", errEOF
			}
			e := d.b[d.i]
			d.i++
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, err := d.hex4()
				if err != nil {
					return "", err
				}
				if utf16.IsSurrogate(r) {
					// A valid pair makes one rune; anything else is U+FFFD, as
					// encoding/json does.
					save := d.i
					if d.literal(`\u`) {
						if r2, err := d.hex4(); err == nil {
							if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
								out = utf8.AppendRune(out, dec)
								continue
							}
						}
					}
					d.i = save
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
			default:
				return "", d.errorf("bad escape \\%c", e)
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			d.i++
		default:
			r, size := utf8.DecodeRune(d.b[d.i:])
			if r == utf8.RuneError && size == 1 {
				return "", d.errorf("invalid UTF-8 in string")
			}
			out = append(out, d.b[d.i:d.i+size]...)
			d.i += size
		}
	}
}

func (d *decoder) hex4() (rune, error) {
	if len(d.b)-d.i < 4 {
		return 0, errEOF
	}
	var r rune
	for _, c := range d.b[d.i : d.i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, d.errorf("bad \\u escape")
		}
	}
	d.i += 4
	return r, nil
}
