package entropy

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/qtenclave/enclave/internal/backoff"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/sim"
)

// Sources must accept qtsm's Module: init's tests run against qtsm.Session.
var _ Source = qtsm.Module(nil)
var _ Source = Client{}
var _ Transport = qtsm.Transport(nil)

func TestGetRandomRequestKAT(t *testing.T) {
	want, _ := hex.DecodeString("6947657452616e646f6d") // docs/protocol.md §2
	if !bytes.Equal(GetRandomRequest, want) {
		t.Errorf("GetRandomRequest = %x, want %x", GetRandomRequest, want)
	}
	enc, err := qtsm.EncodeRequest(qtsm.GetRandomRequest{})
	if err != nil || !bytes.Equal(enc, GetRandomRequest) {
		t.Errorf("qtsm.EncodeRequest(GetRandom) = %x, %v; init sends %x", enc, err, GetRandomRequest)
	}
}

func TestDecodeGetRandomAgainstQtsm(t *testing.T) {
	for _, n := range []int{1, 23, 24, 255, 256, 300, 70000} {
		r := make([]byte, n)
		for i := range r {
			r[i] = byte(i * 7)
		}
		enc, err := qtsm.EncodeResponse(qtsm.GetRandomResponse{Random: r})
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeGetRandom(enc)
		if err != nil || !bytes.Equal(got, r) {
			t.Errorf("DecodeGetRandom(qtsm encoding of %d bytes) = %d bytes, %v", n, len(got), err)
		}
	}
	// Error answers, including the known-answer encoding (docs/protocol.md §2).
	kat, _ := hex.DecodeString("a1654572726f726c496e76616c6964496e646578")
	for _, enc := range [][]byte{kat, mustEncode(t, qtsm.ErrorResponse{Name: "InternalError"})} {
		_, err := DecodeGetRandom(enc)
		var me *ModuleError
		if !errors.As(err, &me) {
			t.Errorf("DecodeGetRandom(%x) = %v, want *ModuleError", enc, err)
		}
	}
	if _, err := DecodeGetRandom(kat); err.Error() != "secure module answered error InvalidIndex" {
		t.Errorf("error text %q", err)
	}
}

func mustEncode(t *testing.T, r qtsm.Response) []byte {
	t.Helper()
	b, err := qtsm.EncodeResponse(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeGetRandomMalformed(t *testing.T) {
	for _, h := range []string{
		"",
		"a0",                           // empty map
		"6947657452616e646f6d",         // bare text
		"a1694765745261",               // truncated key
		"a16b4465736372696265504352a0", // another variant
		"a16947657452616e646f6da0",     // empty body
		"a16947657452616e646f6da166726e646f6d4101",       // wrong field name
		"a16947657452616e646f6da16672616e646f6d40",       // zero bytes
		"a16947657452616e646f6da16672616e646f6d4201",     // short bytes
		"a16947657452616e646f6da16672616e646f6d410100",   // trailing byte
		"a16947657452616e646f6da16672616e646f6d5f4101ff", // indefinite length
		"a16947657452616e646f6da16672616e646f6d5bffffffffffffffff01",
	} {
		b, _ := hex.DecodeString(h)
		if got, err := DecodeGetRandom(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeGetRandom(%s) = %x, %v, want ErrMalformed", h, got, err)
		}
	}
}

// flaky fails its first failures round trips, then answers n bytes.
type flaky struct {
	failures, calls, n int
	answer             []byte
}

func (f *flaky) RoundTrip(ctx context.Context, req []byte) ([]byte, error) {
	f.calls++
	if !bytes.Equal(req, GetRandomRequest) {
		return nil, errors.New("unexpected request")
	}
	if f.calls <= f.failures {
		return qtsm.EncodeResponse(qtsm.ErrorResponse{Name: "InternalError"})
	}
	if f.answer != nil {
		return f.answer, nil
	}
	return qtsm.EncodeResponse(qtsm.GetRandomResponse{Random: bytes.Repeat([]byte{0xAB}, f.n)})
}

func TestClientRetries(t *testing.T) {
	f := &flaky{failures: 3, n: 256}
	c := Client{T: f, Retry: &backoff.Policy{Attempts: 5, Initial: time.Millisecond, Max: 2 * time.Millisecond}}
	b, err := c.GetRandom(context.Background())
	if err != nil || len(b) != 256 || f.calls != 4 {
		t.Errorf("GetRandom after 3 failures = %d bytes, %v, %d calls; want 256 bytes, 4 calls", len(b), err, f.calls)
	}
	f = &flaky{failures: 10}
	c = Client{T: f, Retry: &backoff.Policy{Attempts: 3, Initial: time.Millisecond}}
	_, err = c.GetRandom(context.Background())
	var me *ModuleError
	if !errors.As(err, &me) || me.Name != "InternalError" || f.calls != 3 {
		t.Errorf("GetRandom always failing = %v after %d calls, want ModuleError after 3", err, f.calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f = &flaky{failures: 10}
	if _, err := (Client{T: f, Retry: &backoff.Policy{Attempts: 8, Initial: time.Hour}}).GetRandom(ctx); !errors.Is(err, context.Canceled) || f.calls != 1 {
		t.Errorf("GetRandom cancelled = %v after %d calls", err, f.calls)
	}
}

// TestSeedFromSimulator seeds from the software secure module (qtsm/sim),
// both through init's minimal client and through qtsm.Session.
func TestSeedFromSimulator(t *testing.T) {
	for _, vendor := range []qtsm.Vendor{qtsm.VendorNitro, qtsm.VendorQingtian} {
		m, err := sim.New(sim.Options{Vendor: vendor})
		if err != nil {
			t.Fatal(err)
		}
		for name, src := range map[string]Source{"Client": Client{T: m}, "qtsm.Session": qtsm.NewSession(m)} {
			pool := &fakePool{}
			n, err := Seed(context.Background(), src, pool, 600)
			if err != nil || n != 600 || len(pool.added) != 600 || pool.bits != 4800 {
				t.Errorf("%v %s: Seed(600) = %d, %v; pool %d bytes %d bits", vendor, name, n, err, len(pool.added), pool.bits)
			}
			if bytes.Count(pool.added, []byte{0}) > 50 {
				t.Errorf("%v %s: simulator bytes look constant", vendor, name)
			}
		}
		m.Close()
	}
}

func FuzzDecodeGetRandom(f *testing.F) {
	f.Add(mustEncodeF(qtsm.GetRandomResponse{Random: []byte{1, 2, 3}}))
	f.Add(mustEncodeF(qtsm.ErrorResponse{Name: "InternalError"}))
	f.Add(mustEncodeF(qtsm.DescribePCRResponse{Lock: true, Data: []byte{1}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeGetRandom(b)
		ref, rerr := qtsm.DecodeResponse(b)
		if err != nil {
			return // init is stricter than qtsm; never looser
		}
		if rerr != nil {
			t.Fatalf("DecodeGetRandom(%x) = %x but qtsm rejects it: %v", b, got, rerr)
		}
		r, ok := ref.(qtsm.GetRandomResponse)
		if !ok || !bytes.Equal(r.Random, got) {
			t.Fatalf("DecodeGetRandom(%x) = %x, qtsm decodes %#v", b, got, ref)
		}
	})
}

func mustEncodeF(r qtsm.Response) []byte {
	b, err := qtsm.EncodeResponse(r)
	if err != nil {
		panic(err)
	}
	return b
}
