package qtsm

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qtenclave/enclave/qtsm/pcr"
)

// fakeTransport answers with a function of the decoded request and records
// how many exchanges ran at once.
type fakeTransport struct {
	answer  func(Request) Response
	delay   time.Duration
	fail    func(n int) error // error for the n-th call (1-based), nil = answer
	calls   atomic.Int32
	inside  atomic.Int32
	maxSeen atomic.Int32
	closed  bool
}

func (f *fakeTransport) RoundTrip(_ context.Context, b []byte) ([]byte, error) {
	n := f.calls.Add(1)
	in := f.inside.Add(1)
	defer f.inside.Add(-1)
	for {
		m := f.maxSeen.Load()
		if in <= m || f.maxSeen.CompareAndSwap(m, in) {
			break
		}
	}
	time.Sleep(f.delay)
	if f.fail != nil {
		if err := f.fail(int(n)); err != nil {
			return nil, err
		}
	}
	req, err := DecodeRequest(b)
	if err != nil {
		return EncodeResponse(ErrorResponse{Code: CodeInvalidArgument})
	}
	return EncodeResponse(f.answer(req))
}

func (f *fakeTransport) Close() error { f.closed = true; return nil }

func echoAnswer(req Request) Response {
	switch r := req.(type) {
	case DescribeRequest:
		return DescribeResponse{Description{MaxPCRs: 32, Digest: "SHA384", ModuleID: "fake"}}
	case DescribePCRRequest:
		return DescribePCRResponse{Lock: r.Index < 16, Data: make([]byte, 48)}
	case ExtendPCRRequest:
		return ExtendPCRResponse{Data: pcr.Extend(pcr.Zero(), r.Data)}
	case LockPCRRequest:
		if r.Index < 16 {
			return ErrorResponse{Code: CodeReadOnlyIndex}
		}
		return LockPCRResponse{}
	case LockPCRsRequest:
		return LockPCRsResponse{}
	case AttestationRequest:
		return AttestationResponse{Document: append([]byte("doc:"), r.Nonce...)}
	case GetRandomRequest:
		return GetRandomResponse{Random: bytes.Repeat([]byte{0x5a}, 100)}
	}
	return ErrorResponse{Code: CodeInvalidOperation}
}

func TestSessionOperations(t *testing.T) {
	ft := &fakeTransport{answer: echoAnswer}
	s := NewSession(ft)
	ctx := context.Background()
	d, err := s.Describe(ctx)
	if err != nil || d.ModuleID != "fake" || d.MaxPCRs != 32 {
		t.Errorf("Describe() = %+v, %v, want module fake", d, err)
	}
	p, err := s.DescribePCR(ctx, 3)
	if err != nil || !p.Locked || p.Index != 3 || len(p.Value) != 48 {
		t.Errorf("DescribePCR(3) = %+v, %v", p, err)
	}
	v, err := s.ExtendPCR(ctx, 16, []byte{1, 2, 3})
	if err != nil || !bytes.Equal(v, pcr.Extend(pcr.Zero(), []byte{1, 2, 3})) {
		t.Errorf("ExtendPCR(16) = %x, %v", v, err)
	}
	if err := s.LockPCR(ctx, 16); err != nil {
		t.Errorf("LockPCR(16) = %v", err)
	}
	if err := s.LockPCR(ctx, 2); !errors.Is(err, ErrReadOnlyIndex) {
		t.Errorf("LockPCR(2) = %v, want ReadOnlyIndex", err)
	} else {
		var e *Error
		if !errors.As(err, &e) || e.Op != "LockPCR" {
			t.Errorf("LockPCR(2) error %#v, want *Error with Op LockPCR", err)
		}
	}
	if err := s.LockPCRs(ctx, 16); err != nil {
		t.Errorf("LockPCRs(16) = %v", err)
	}
	doc, err := s.Attestation(ctx, AttestationRequest{Nonce: []byte("n1")})
	if err != nil || string(doc) != "doc:n1" {
		t.Errorf("Attestation() = %q, %v", doc, err)
	}
	buf := make([]byte, 250)
	if n, err := s.Read(buf); n != 250 || err != nil || buf[249] != 0x5a {
		t.Errorf("Read(250) = %d, %v", n, err)
	}
	if err := s.Close(); err != nil || !ft.closed {
		t.Errorf("Close() = %v, closed %v", err, ft.closed)
	}
}

func TestSessionValidation(t *testing.T) {
	ft := &fakeTransport{answer: echoAnswer}
	s := NewSession(ft)
	ctx := context.Background()
	big := make([]byte, 513)
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"DescribePCR(32)", func() error { _, err := s.DescribePCR(ctx, 32); return err }(), ErrInvalidIndex},
		{"DescribePCR(-1)", func() error { _, err := s.DescribePCR(ctx, -1); return err }(), ErrInvalidIndex},
		{"ExtendPCR(40)", func() error { _, err := s.ExtendPCR(ctx, 40, nil); return err }(), ErrInvalidIndex},
		{"LockPCR(99)", s.LockPCR(ctx, 99), ErrInvalidIndex},
		{"LockPCRs(33)", s.LockPCRs(ctx, 33), ErrInvalidIndex},
		{"user_data 513", func() error { _, err := s.Attestation(ctx, AttestationRequest{UserData: big}); return err }(), ErrInputTooLarge},
		{"nonce 513", func() error { _, err := s.Attestation(ctx, AttestationRequest{Nonce: big}); return err }(), ErrInputTooLarge},
		{"public_key 1025", func() error {
			_, err := s.Attestation(ctx, AttestationRequest{PublicKey: make([]byte, 1025)})
			return err
		}(), ErrInputTooLarge},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if n := ft.calls.Load(); n != 0 {
		t.Errorf("transport calls after invalid requests = %d, want 0", n)
	}
	// At the limits the request goes through.
	if _, err := s.Attestation(ctx, AttestationRequest{UserData: make([]byte, 512), Nonce: make([]byte, 512), PublicKey: make([]byte, 1024)}); err != nil {
		t.Errorf("Attestation at limits = %v, want nil", err)
	}
}

func TestSessionSerialises(t *testing.T) {
	ft := &fakeTransport{answer: echoAnswer, delay: 2 * time.Millisecond}
	s := NewSession(ft)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := s.DescribePCR(ctx, i%32); err != nil {
				t.Errorf("DescribePCR(%d) = %v", i, err)
			}
		}()
	}
	wg.Wait()
	if m := ft.maxSeen.Load(); m != 1 {
		t.Errorf("max concurrent transport calls = %d, want 1", m)
	}
}

func TestSessionDeadline(t *testing.T) {
	// The exchange takes far longer than the deadline, so that even on a
	// loaded machine the deadline fires first.
	ft := &fakeTransport{answer: echoAnswer, delay: 3 * time.Second}
	s := NewSession(ft)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Describe(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Describe with 20ms deadline = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Describe returned after %v, want about 20ms", d)
	}
	// The device exchange still completes before the next caller goes in.
	if _, err := s.Describe(context.Background()); err != nil {
		t.Errorf("Describe after abandoned call = %v", err)
	}
	if m := ft.maxSeen.Load(); m != 1 {
		t.Errorf("max concurrent transport calls = %d, want 1", m)
	}
}

func TestSessionWrongVariant(t *testing.T) {
	ft := &fakeTransport{answer: func(Request) Response { return LockPCRResponse{} }}
	_, err := NewSession(ft).Describe(context.Background())
	if !errors.Is(err, ErrInvalidResponse) {
		t.Errorf("Describe answered by LockPCR = %v, want InvalidResponse", err)
	}
}

func TestGetRandomRetries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failFirst int
		attempts  int
		wantErr   bool
	}{
		{"ready at once", 0, 4, false},
		{"ready after 3", 3, 4, false},
		{"never ready", 100, 4, true},
	} {
		ft := &fakeTransport{answer: echoAnswer, fail: func(n int) error {
			if n <= tc.failFirst {
				return errors.New("device not ready")
			}
			return nil
		}}
		var slept []time.Duration
		s := NewSession(ft, WithRetry(RetryPolicy{Attempts: tc.attempts, Initial: 10 * time.Millisecond, Max: 25 * time.Millisecond}))
		s.sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
		b, err := s.GetRandom(context.Background())
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: GetRandom() = %d bytes, %v, want error %v", tc.name, len(b), err, tc.wantErr)
		}
		wantCalls := min(tc.failFirst+1, tc.attempts)
		if got := int(ft.calls.Load()); got != wantCalls {
			t.Errorf("%s: transport calls = %d, want %d", tc.name, got, wantCalls)
		}
		if tc.name == "never ready" {
			want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 25 * time.Millisecond}
			if len(slept) != len(want) || slept[0] != want[0] || slept[1] != want[1] || slept[2] != want[2] {
				t.Errorf("%s: back-off = %v, want %v", tc.name, slept, want)
			}
		}
	}
}

func TestDetectDevice(t *testing.T) {
	for _, tc := range []struct {
		present []string
		want    Vendor
		err     error
	}{
		{[]string{"/dev/nsm"}, VendorNitro, nil},
		{[]string{"/dev/qtsm"}, VendorQingtian, nil},
		{nil, VendorUnknown, ErrNoDevice},
	} {
		got, err := detectDevice(func(p string) bool {
			for _, q := range tc.present {
				if p == q {
					return true
				}
			}
			return false
		})
		if got.Vendor != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("detectDevice(%v) = %v, %v, want %v, %v", tc.present, got.Vendor, err, tc.want, tc.err)
		}
	}
}

func TestParseVendor(t *testing.T) {
	for in, want := range map[string]Vendor{"nitro": VendorNitro, "AWS": VendorNitro, "qingtian": VendorQingtian, "qtsm": VendorQingtian, "auto": VendorUnknown} {
		if got, err := ParseVendor(in); got != want || err != nil {
			t.Errorf("ParseVendor(%q) = %v, %v, want %v", in, got, err, want)
		}
	}
	if _, err := ParseVendor("sgx"); err == nil {
		t.Error("ParseVendor(sgx) = nil error, want error")
	}
}
