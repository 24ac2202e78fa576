package qtsm

import (
	"context"
	"fmt"
	"time"

	"github.com/qtenclave/enclave/internal/backoff"
	"github.com/qtenclave/enclave/qtsm/device"
	"github.com/qtenclave/enclave/qtsm/pcr"
)

// Module is the secure module's operation set. *Session implements it over a
// Transport; the agent's client implements it over the agent's socket, so an
// application can use either.
type Module interface {
	// Describe returns the module's description.
	Describe(ctx context.Context) (*Description, error)
	// DescribePCR reads PCR index.
	DescribePCR(ctx context.Context, index int) (*PCR, error)
	// ExtendPCR extends PCR index with data and returns its new value.
	ExtendPCR(ctx context.Context, index int, data []byte) ([]byte, error)
	// LockPCR locks PCR index against further extension.
	LockPCR(ctx context.Context, index int) error
	// LockPCRs locks PCRs [0, n).
	LockPCRs(ctx context.Context, n int) error
	// Attestation returns a signed attestation document (COSE_Sign1).
	Attestation(ctx context.Context, req AttestationRequest) ([]byte, error)
	// GetRandom returns the bytes of one GetRandom answer.
	GetRandom(ctx context.Context) ([]byte, error)
	// Close releases the module.
	Close() error
}

// PCR is one register's value and lock state.
type PCR struct {
	Index  int    `json:"index"`
	Locked bool   `json:"locked"`
	Value  []byte `json:"value"`
}

// RetryPolicy bounds GetRandom's retries while the module starts.
type RetryPolicy = backoff.Policy

// DefaultRetry is device.GetRandomRetry: about 3 seconds in all.
var DefaultRetry = device.GetRandomRetry

// Session is a client of one secure module. It is safe for concurrent use:
// calls are serialised, in arrival order, onto the one transport.
type Session struct {
	t     Transport
	sem   chan struct{}
	retry RetryPolicy
	sleep func(context.Context, time.Duration) error
}

// Option configures a Session.
type Option func(*Session)

// WithRetry sets GetRandom's retry policy.
func WithRetry(p RetryPolicy) Option { return func(s *Session) { s.retry = p } }

// NewSession returns a session over t.
func NewSession(t Transport, opts ...Option) *Session {
	s := &Session{t: t, sem: make(chan struct{}, 1), retry: DefaultRetry, sleep: backoff.Sleep}
	for _, o := range opts {
		o(s)
	}
	if s.retry.Attempts < 1 {
		s.retry.Attempts = 1
	}
	return s
}

// Open opens the secure-module device present on this machine (/dev/qtsm or
// /dev/nsm) and returns a session over it.
func Open(opts ...Option) (*Session, error) {
	spec, err := DetectDevice()
	if err != nil {
		return nil, err
	}
	d, err := OpenDevice(spec)
	if err != nil {
		return nil, err
	}
	return NewSession(d, opts...), nil
}

// Transport returns the session's transport.
func (s *Session) Transport() Transport { return s.t }

// Close closes the transport.
func (s *Session) Close() error { return s.t.Close() }

// roundTrip serialises one exchange. When ctx ends first the caller gets
// ctx's error; the exchange itself, which the device cannot abandon, runs to
// completion in the background and only then lets the next caller in.
func (s *Session) roundTrip(ctx context.Context, req []byte) ([]byte, error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if ctx.Done() == nil {
		defer func() { <-s.sem }()
		return s.t.RoundTrip(ctx, req)
	}
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := s.t.RoundTrip(ctx, req)
		<-s.sem
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Prepared is a request checked (Validate) and encoded once, ready for
// Session.Send: a server that refuses bad requests before they queue does
// not check or encode them again on their way to the device.
type Prepared struct {
	Request Request
	b       []byte
}

// Size is the encoded request's length.
func (p *Prepared) Size() int { return len(p.b) }

// Prepare validates req and encodes it; an encoding over maxSize bytes
// (0: no limit) is refused with the InputTooLarge error the device would
// give.
func Prepare(req Request, maxSize int) (*Prepared, error) {
	if err := Validate(req); err != nil {
		return nil, err
	}
	b, err := EncodeRequest(req)
	if err != nil {
		return nil, err
	}
	if maxSize > 0 && len(b) > maxSize {
		return nil, codeError(CodeInputTooLarge, req.Op(), "encoded request is %d bytes, device limit %d", len(b), maxSize)
	}
	return &Prepared{Request: req, b: b}, nil
}

// Call sends any request and returns the module's answer. An error answer
// is returned as *Error; an answer of the wrong variant is ErrInvalidResponse.
func (s *Session) Call(ctx context.Context, req Request) (Response, error) {
	p, err := Prepare(req, 0)
	if err != nil {
		return nil, err
	}
	return s.Send(ctx, p)
}

// Send is Call for a request already prepared.
func (s *Session) Send(ctx context.Context, p *Prepared) (Response, error) {
	req := p.Request
	out, err := s.roundTrip(ctx, p.b)
	if err != nil {
		return nil, fmt.Errorf("qtsm: %s: %w", req.Op(), err)
	}
	resp, err := DecodeResponse(out)
	if err != nil {
		return nil, fmt.Errorf("qtsm: %s: %w", req.Op(), err)
	}
	if e, ok := resp.(ErrorResponse); ok {
		return nil, e.Err(req.Op())
	}
	if resp.Op() != req.Op() {
		return nil, &Error{Code: CodeInvalidResponse, Name: CodeInvalidResponse.String(), Op: req.Op(),
			Detail: fmt.Sprintf("answered with %s", resp.Op())}
	}
	return resp, nil
}

// Validate refuses, with the *Error the module would answer, a request the
// module would refuse for its arguments alone.
func Validate(req Request) error {
	switch r := req.(type) {
	case DescribePCRRequest:
		return checkIndex(r.Op(), int(r.Index))
	case ExtendPCRRequest:
		return checkIndex(r.Op(), int(r.Index))
	case LockPCRRequest:
		return checkIndex(r.Op(), int(r.Index))
	case LockPCRsRequest:
		if r.Range > pcr.Count {
			return codeError(CodeInvalidIndex, r.Op(), "range %d exceeds %d PCRs", r.Range, pcr.Count)
		}
	case AttestationRequest:
		for _, f := range []struct {
			name   string
			n, max int
		}{{"user_data", len(r.UserData), MaxUserData}, {"nonce", len(r.Nonce), MaxNonce}, {"public_key", len(r.PublicKey), MaxPublicKey}} {
			if f.n > f.max {
				return codeError(CodeInputTooLarge, r.Op(), "%s is %d bytes, limit %d", f.name, f.n, f.max)
			}
		}
	}
	return nil
}

func checkIndex(op string, i int) error {
	if i < 0 || i >= pcr.Count {
		return codeError(CodeInvalidIndex, op, "PCR index %d out of range [0,%d)", i, pcr.Count)
	}
	return nil
}

func index16(op string, i int) (uint16, error) {
	if err := checkIndex(op, i); err != nil {
		return 0, err
	}
	return uint16(i), nil
}

// Describe implements Module.
func (s *Session) Describe(ctx context.Context) (*Description, error) {
	r, err := s.Call(ctx, DescribeRequest{})
	if err != nil {
		return nil, err
	}
	d := r.(DescribeResponse).Description
	return &d, nil
}

// DescribePCR implements Module.
func (s *Session) DescribePCR(ctx context.Context, index int) (*PCR, error) {
	i, err := index16(opDescribePCR, index)
	if err != nil {
		return nil, err
	}
	r, err := s.Call(ctx, DescribePCRRequest{Index: i})
	if err != nil {
		return nil, err
	}
	p := r.(DescribePCRResponse)
	return &PCR{Index: index, Locked: p.Lock, Value: p.Data}, nil
}

// ExtendPCR implements Module.
func (s *Session) ExtendPCR(ctx context.Context, index int, data []byte) ([]byte, error) {
	i, err := index16(opExtendPCR, index)
	if err != nil {
		return nil, err
	}
	if data == nil {
		data = []byte{}
	}
	r, err := s.Call(ctx, ExtendPCRRequest{Index: i, Data: data})
	if err != nil {
		return nil, err
	}
	return r.(ExtendPCRResponse).Data, nil
}

// LockPCR implements Module.
func (s *Session) LockPCR(ctx context.Context, index int) error {
	i, err := index16(opLockPCR, index)
	if err != nil {
		return err
	}
	_, err = s.Call(ctx, LockPCRRequest{Index: i})
	return err
}

// LockPCRs implements Module.
func (s *Session) LockPCRs(ctx context.Context, n int) error {
	if n < 0 || n > pcr.Count {
		return codeError(CodeInvalidIndex, opLockPCRs, "range %d outside [0,%d]", n, pcr.Count)
	}
	_, err := s.Call(ctx, LockPCRsRequest{Range: uint16(n)})
	return err
}

// Attestation implements Module.
func (s *Session) Attestation(ctx context.Context, req AttestationRequest) ([]byte, error) {
	r, err := s.Call(ctx, req)
	if err != nil {
		return nil, err
	}
	return r.(AttestationResponse).Document, nil
}

// GetRandom implements Module. It retries with back-off per the session's
// RetryPolicy, since the module may not answer right after enclave start.
func (s *Session) GetRandom(ctx context.Context) ([]byte, error) {
	var out []byte
	_, err := backoff.Loop{Policy: s.retry, Sleep: s.sleep}.Do(ctx, func(int) error {
		r, err := s.Call(ctx, GetRandomRequest{})
		if err != nil {
			return err
		}
		if out = r.(GetRandomResponse).Random; len(out) == 0 {
			return &Error{Code: CodeInvalidResponse, Name: CodeInvalidResponse.String(), Op: opGetRandom, Detail: "no random bytes"}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("qtsm: GetRandom failed after retries: %w", err)
	}
	return out, nil
}

// Read fills p with random bytes from the module; Session is an io.Reader.
// It uses a one-minute deadline per call; use ReadRandom for your own.
func (s *Session) Read(p []byte) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return ReadRandom(ctx, s, p)
}

// ReadRandom fills p from m's GetRandom, as many calls as it takes
// (device.ReadRandom).
func ReadRandom(ctx context.Context, m Module, p []byte) (int, error) {
	return device.ReadRandom(ctx, m, p)
}

var _ Module = (*Session)(nil)
