package entropy

import (
	"context"
	"errors"
	"fmt"

	"github.com/qtenclave/enclave/internal/backoff"
	"github.com/qtenclave/enclave/qtsm/device"
)

// Source gives random bytes from the secure module. qtsm.Module (a
// qtsm.Session over the device or the simulator, or the agent's client)
// satisfies it; so does Client, init's own minimal implementation.
type Source interface {
	GetRandom(ctx context.Context) ([]byte, error)
}

// Transport exchanges one encoded request for one encoded response: the
// method of qtsm.Transport, which the device, the simulator (qtsm/sim) and
// test fakes implement.
type Transport interface {
	RoundTrip(ctx context.Context, req []byte) ([]byte, error)
}

// GetRandomRequest is the encoded GetRandom request: the CBOR text
// "GetRandom" (docs/protocol.md §2: 6947657452616e646f6d).
var GetRandomRequest = []byte("\x69GetRandom")

// Client is a GetRandom-only client of the secure module. init uses it
// instead of qtsm.Session so that it does not link a general CBOR codec
// (about 330 KB); its decoder is checked against qtsm's in tests. It
// retries like qtsm.Session, by the same policy (device.GetRandomRetry
// unless Retry is set), since the module may fail requests right after
// the enclave starts.
type Client struct {
	T     Transport
	Retry *backoff.Policy // nil: device.GetRandomRetry
}

// ModuleError is an error answer from the module ({"Error": name}).
type ModuleError struct{ Name string }

func (e *ModuleError) Error() string { return "secure module answered error " + e.Name }

// ErrMalformed is a response this client cannot decode.
var ErrMalformed = errors.New("malformed GetRandom response")

// GetRandom implements Source.
func (c Client) GetRandom(ctx context.Context) ([]byte, error) {
	p := device.GetRandomRetry
	if c.Retry != nil {
		p = *c.Retry
	}
	var out []byte
	n, err := backoff.Loop{Policy: p}.Do(ctx, func(int) error {
		resp, err := c.T.RoundTrip(ctx, GetRandomRequest)
		if err == nil {
			out, err = DecodeGetRandom(resp)
		}
		return err
	})
	switch {
	case err == nil:
		return out, nil
	case ctx.Err() != nil:
		return nil, fmt.Errorf("GetRandom: %w (last error: %v)", ctx.Err(), err)
	}
	return nil, fmt.Errorf("GetRandom failed after %d attempts: %w", n, err)
}

// DecodeGetRandom decodes {"GetRandom":{"random":bstr}} (returning the
// bytes) or {"Error":"Name"} (returning *ModuleError). Only the definite
// length encodings the modules produce are accepted; the bytes must be
// non-empty.
func DecodeGetRandom(b []byte) ([]byte, error) {
	r := reader{b: b}
	if n, ok := r.head(5); !ok || n != 1 {
		return nil, fmt.Errorf("%w: not a one-entry map", ErrMalformed)
	}
	key, ok := r.text()
	if !ok {
		return nil, fmt.Errorf("%w: bad variant name", ErrMalformed)
	}
	switch key {
	case "Error":
		name, ok := r.text()
		if !ok || !r.done() {
			return nil, fmt.Errorf("%w: bad error name", ErrMalformed)
		}
		return nil, &ModuleError{Name: name}
	case "GetRandom":
	default:
		return nil, fmt.Errorf("%w: answered %q", ErrMalformed, key)
	}
	if n, ok := r.head(5); !ok || n != 1 {
		return nil, fmt.Errorf("%w: GetRandom body is not a one-entry map", ErrMalformed)
	}
	if f, ok := r.text(); !ok || f != "random" {
		return nil, fmt.Errorf("%w: GetRandom body lacks random", ErrMalformed)
	}
	n, ok := r.head(2)
	if !ok || n == 0 || n > uint64(len(r.b)) {
		return nil, fmt.Errorf("%w: bad random bytes", ErrMalformed)
	}
	out := append([]byte(nil), r.b[:n]...)
	r.b = r.b[n:]
	if !r.done() {
		return nil, fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	return out, nil
}

// reader reads the few CBOR items DecodeGetRandom needs.
type reader struct{ b []byte }

// head reads an item head of the given major type with a definite argument.
func (r *reader) head(major byte) (uint64, bool) {
	if len(r.b) == 0 || r.b[0]>>5 != major {
		return 0, false
	}
	info := r.b[0] & 0x1f
	r.b = r.b[1:]
	var size int
	switch {
	case info < 24:
		return uint64(info), true
	case info == 24:
		size = 1
	case info == 25:
		size = 2
	case info == 26:
		size = 4
	case info == 27:
		size = 8
	default:
		return 0, false // indefinite or reserved
	}
	if len(r.b) < size {
		return 0, false
	}
	var n uint64
	for _, c := range r.b[:size] {
		n = n<<8 | uint64(c)
	}
	r.b = r.b[size:]
	return n, true
}

func (r *reader) text() (string, bool) {
	n, ok := r.head(3)
	if !ok || n > uint64(len(r.b)) {
		return "", false
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s, true
}

func (r *reader) done() bool { return len(r.b) == 0 }
