package sim_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/attestation"
	"github.com/qtenclave/enclave/qtsm/pcr"
	"github.com/qtenclave/enclave/qtsm/sim"
)

var vendors = []qtsm.Vendor{qtsm.VendorNitro, qtsm.VendorQingtian}

func newSim(t *testing.T, opts sim.Options) *sim.Module {
	t.Helper()
	m, err := sim.New(opts)
	if err != nil {
		t.Fatalf("sim.New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// image is a preset PCR0-2 as an image build would measure them.
func image() map[int][]byte {
	return map[int][]byte{
		0: pcr.Measure([]byte("kernel+cmdline+ramdisks")),
		1: pcr.Measure([]byte("kernel+cmdline+bootstrap")),
		2: pcr.Measure([]byte("application")),
	}
}

func TestSessionRoundTrip(t *testing.T) {
	for _, v := range vendors {
		t.Run(v.String(), func(t *testing.T) {
			ctx := context.Background()
			m := newSim(t, sim.Options{Vendor: v, PCRs: image()})
			s := qtsm.NewSession(m)

			d, err := s.Describe(ctx)
			if err != nil {
				t.Fatalf("Describe: %v", err)
			}
			wantLocked := make([]uint16, 16)
			for i := range wantLocked {
				wantLocked[i] = uint16(i)
			}
			if d.MaxPCRs != 32 || d.Digest != "SHA384" || d.VersionMajor != 1 || !slices.Equal(d.LockedPCRs, wantLocked) || d.ModuleID != m.ModuleID() {
				t.Errorf("Describe = %+v, want max_pcrs 32, SHA384, version 1, locked 0-15, module %s", d, m.ModuleID())
			}
			idPattern := map[qtsm.Vendor]string{
				qtsm.VendorNitro:    `^i-[0-9a-f]{17}-enc[0-9a-f]{16}$`,
				qtsm.VendorQingtian: `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.enc-[0-9a-f]{16}$`,
			}[v]
			if !regexp.MustCompile(idPattern).MatchString(d.ModuleID) {
				t.Errorf("module ID %q does not match %s", d.ModuleID, idPattern)
			}

			p0, err := s.DescribePCR(ctx, 0)
			if err != nil || !p0.Locked || !bytes.Equal(p0.Value, image()[0]) {
				t.Errorf("DescribePCR(0) = %+v, %v; want locked preset value", p0, err)
			}
			want16 := pcr.Zero()
			for _, data := range []string{"first", "second"} {
				want16 = pcr.Extend(want16, []byte(data))
				got, err := s.ExtendPCR(ctx, 16, []byte(data))
				if err != nil || !bytes.Equal(got, want16) {
					t.Fatalf("ExtendPCR(16, %q) = %x, %v; want %x", data, got, err, want16)
				}
			}
			p16, err := s.DescribePCR(ctx, 16)
			if err != nil || p16.Locked || !bytes.Equal(p16.Value, want16) {
				t.Errorf("DescribePCR(16) = %+v, %v; want unlocked %x", p16, err, want16)
			}
			if err := s.LockPCR(ctx, 16); err != nil {
				t.Fatalf("LockPCR(16): %v", err)
			}

			rnd, err := s.GetRandom(ctx)
			if err != nil || len(rnd) != sim.RandomSize {
				t.Errorf("GetRandom = %d bytes, %v; want %d", len(rnd), err, sim.RandomSize)
			}

			req := qtsm.AttestationRequest{
				UserData:  []byte("user data"),
				Nonce:     bytes.Repeat([]byte{0x5a}, 32),
				PublicKey: bytes.Repeat([]byte{0x07}, 1024),
			}
			doc, err := s.Attestation(ctx, req)
			if err != nil {
				t.Fatalf("Attestation: %v", err)
			}
			opts := m.VerifyOptions()
			opts.ExpectNonce, opts.ExpectUserData, opts.ExpectPublicKey = req.Nonce, req.UserData, req.PublicKey
			opts.ExpectPCRs = map[int][]byte{0: image()[0], 1: image()[1], 2: image()[2], 16: want16}
			opts.MaxAge = time.Minute
			res, err := attestation.VerifyBytes(doc, opts)
			if err != nil {
				t.Fatalf("VerifyBytes(sim document) = %v, want ok", err)
			}
			if res.Vendor != v || res.Encoding != map[qtsm.Vendor]attestation.SignatureEncoding{qtsm.VendorNitro: attestation.BigEndian, qtsm.VendorQingtian: attestation.LittleEndian}[v] {
				t.Errorf("result vendor %s encoding %s, want %s and its encoding", res.Vendor, res.Encoding, v)
			}
			if !bytes.Equal(res.Chain[len(res.Chain)-1].Raw, m.RootDER()) || len(res.Chain) != 3 {
				t.Errorf("chain has %d certificates ending in %q, want 3 ending in the sim root", len(res.Chain), res.Chain[len(res.Chain)-1].Subject)
			}
			// The document holds exactly the locked PCRs, like AWS's.
			var idx []int
			for i := range res.Document.PCRs {
				idx = append(idx, i)
			}
			slices.Sort(idx)
			if want := append(slices.Collect(func(yield func(int) bool) {
				for i := range 16 {
					if !yield(i) {
						return
					}
				}
			}), 16); !slices.Equal(idx, want) {
				t.Errorf("document PCRs %v, want %v (the locked ones)", idx, want)
			}

			// The real roots do not trust the simulator.
			if _, err := attestation.VerifyBytes(doc, attestation.Options{}); !errors.Is(err, attestation.ErrChain) {
				t.Errorf("VerifyBytes(sim document, embedded roots) = %v, want ErrChain", err)
			}
			// Absent fields use the vendor's encoding.
			doc, err = s.Attestation(ctx, qtsm.AttestationRequest{})
			if err != nil {
				t.Fatalf("Attestation(empty): %v", err)
			}
			pd, err := attestation.Parse(doc)
			if err != nil {
				t.Fatal(err)
			}
			absent := pd.Layout.NullFields
			if v == qtsm.VendorQingtian {
				absent = pd.Layout.EmptyFields
			}
			if len(absent) != 3 {
				t.Errorf("%s document with no inputs: null %v, empty %v; want all three absent in the vendor's way", v, pd.Layout.NullFields, pd.Layout.EmptyFields)
			}
		})
	}
}

// countingTransport counts what reaches the module.
type countingTransport struct {
	qtsm.Transport
	n atomic.Int64
}

func (c *countingTransport) RoundTrip(ctx context.Context, b []byte) ([]byte, error) {
	c.n.Add(1)
	return c.Transport.RoundTrip(ctx, b)
}

func mustEncode(t *testing.T, r qtsm.Request) []byte {
	t.Helper()
	b, err := qtsm.EncodeRequest(r)
	if err != nil {
		t.Fatalf("EncodeRequest(%#v): %v", r, err)
	}
	return b
}

func TestErrors(t *testing.T) {
	big := func(n int) []byte { return bytes.Repeat([]byte{1}, n) }
	for _, tc := range []struct {
		name string
		// raw is the hand-encoded request sent with RoundTrip, bypassing
		// the session's validation.
		raw func(t *testing.T) []byte
		// call does the same through a session; validated reports whether
		// the session refuses it itself (nothing reaches the module).
		call      func(ctx context.Context, s *qtsm.Session) error
		validated bool
		want      error
	}{
		{
			name: "DescribePCR index 32",
			raw:  func(t *testing.T) []byte { return mustEncode(t, qtsm.DescribePCRRequest{Index: 32}) },
			call: func(ctx context.Context, s *qtsm.Session) error { _, err := s.DescribePCR(ctx, 32); return err },
			want: qtsm.ErrInvalidIndex, validated: true,
		},
		{
			name: "ExtendPCR index 32",
			raw:  func(t *testing.T) []byte { return mustEncode(t, qtsm.ExtendPCRRequest{Index: 32, Data: []byte{1}}) },
			call: func(ctx context.Context, s *qtsm.Session) error {
				_, err := s.ExtendPCR(ctx, 32, []byte{1})
				return err
			},
			want: qtsm.ErrInvalidIndex, validated: true,
		},
		{
			name: "LockPCR index 65535",
			raw:  func(t *testing.T) []byte { return mustEncode(t, qtsm.LockPCRRequest{Index: 65535}) },
			call: func(ctx context.Context, s *qtsm.Session) error { return s.LockPCR(ctx, 65535) },
			want: qtsm.ErrInvalidIndex, validated: true,
		},
		{
			name: "LockPCRs range 33",
			raw:  func(t *testing.T) []byte { return mustEncode(t, qtsm.LockPCRsRequest{Range: 33}) },
			call: func(ctx context.Context, s *qtsm.Session) error { return s.LockPCRs(ctx, 33) },
			want: qtsm.ErrInvalidIndex, validated: true,
		},
		{
			name: "ExtendPCR locked 0",
			raw:  func(t *testing.T) []byte { return mustEncode(t, qtsm.ExtendPCRRequest{Index: 0, Data: []byte{1}}) },
			call: func(ctx context.Context, s *qtsm.Session) error { _, err := s.ExtendPCR(ctx, 0, []byte{1}); return err },
			want: qtsm.ErrReadOnlyIndex,
		},
		{
			name: "ExtendPCR locked 15",
			raw:  func(t *testing.T) []byte { return mustEncode(t, qtsm.ExtendPCRRequest{Index: 15, Data: nil}) },
			call: func(ctx context.Context, s *qtsm.Session) error { _, err := s.ExtendPCR(ctx, 15, nil); return err },
			want: qtsm.ErrReadOnlyIndex,
		},
		{
			name: "LockPCR locked 3",
			raw:  func(t *testing.T) []byte { return mustEncode(t, qtsm.LockPCRRequest{Index: 3}) },
			call: func(ctx context.Context, s *qtsm.Session) error { return s.LockPCR(ctx, 3) },
			want: qtsm.ErrReadOnlyIndex,
		},
		{
			name: "user_data 513",
			raw:  func(t *testing.T) []byte { return mustEncode(t, qtsm.AttestationRequest{UserData: big(513)}) },
			call: func(ctx context.Context, s *qtsm.Session) error {
				_, err := s.Attestation(ctx, qtsm.AttestationRequest{UserData: big(513)})
				return err
			},
			want: qtsm.ErrInputTooLarge, validated: true,
		},
		{
			name: "nonce 513",
			raw:  func(t *testing.T) []byte { return mustEncode(t, qtsm.AttestationRequest{Nonce: big(513)}) },
			call: func(ctx context.Context, s *qtsm.Session) error {
				_, err := s.Attestation(ctx, qtsm.AttestationRequest{Nonce: big(513)})
				return err
			},
			want: qtsm.ErrInputTooLarge, validated: true,
		},
		{
			name: "public_key 1025",
			raw:  func(t *testing.T) []byte { return mustEncode(t, qtsm.AttestationRequest{PublicKey: big(1025)}) },
			call: func(ctx context.Context, s *qtsm.Session) error {
				_, err := s.Attestation(ctx, qtsm.AttestationRequest{PublicKey: big(1025)})
				return err
			},
			want: qtsm.ErrInputTooLarge, validated: true,
		},
		{
			name: "request over 0x1000 bytes",
			raw: func(t *testing.T) []byte {
				return mustEncode(t, qtsm.ExtendPCRRequest{Index: 16, Data: big(sim.MaxRequest)})
			},
			call: func(ctx context.Context, s *qtsm.Session) error {
				_, err := s.ExtendPCR(ctx, 16, big(sim.MaxRequest))
				return err
			},
			want: qtsm.ErrInputTooLarge,
		},
		{
			name: "undecodable request",
			raw:  func(t *testing.T) []byte { return []byte{0xa1, 0x6b} },
			want: qtsm.ErrInvalidOperation,
		},
		{
			name: "unknown request",
			raw:  func(t *testing.T) []byte { return []byte("\x67Unknown") },
			want: qtsm.ErrInvalidOperation,
		},
		{
			name: "index beyond u16",
			raw:  func(t *testing.T) []byte { return []byte("\xa1\x6bDescribePCR\xa1\x65index\x1a\x00\x01\x00\x00") },
			want: qtsm.ErrInvalidOperation,
		},
		{
			name: "ExtendPCR without data",
			raw:  func(t *testing.T) []byte { return []byte("\xa1\x69ExtendPCR\xa1\x65index\x10") },
			want: qtsm.ErrInvalidOperation,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			m := newSim(t, sim.Options{})
			out, err := m.RoundTrip(ctx, tc.raw(t))
			if err != nil {
				t.Fatalf("RoundTrip: transport error %v", err)
			}
			resp, err := qtsm.DecodeResponse(out)
			if err != nil {
				t.Fatalf("DecodeResponse(%x): %v", out, err)
			}
			e, ok := resp.(qtsm.ErrorResponse)
			if !ok {
				t.Fatalf("RoundTrip answered %T, want an error", resp)
			}
			if err := e.Err("test"); !errors.Is(err, tc.want) {
				t.Errorf("RoundTrip answered %v, want %v", err, tc.want)
			}

			if tc.call == nil {
				return
			}
			ct := &countingTransport{Transport: m}
			err = tc.call(ctx, qtsm.NewSession(ct))
			if !errors.Is(err, tc.want) {
				t.Errorf("session call = %v, want %v", err, tc.want)
			}
			if reached := ct.n.Load() > 0; reached == tc.validated {
				t.Errorf("request reached the module: %v, want %v (validated by the session: %v)", reached, !tc.validated, tc.validated)
			}
		})
	}
}

func TestLockSemantics(t *testing.T) {
	ctx := context.Background()
	preset := pcr.Measure([]byte("preset 20"))
	m := newSim(t, sim.Options{PCRs: map[int][]byte{20: preset}})
	s := qtsm.NewSession(m)

	// A preset application PCR starts unlocked and extends from its value.
	got, err := s.ExtendPCR(ctx, 20, []byte("x"))
	if want := pcr.Extend(preset, []byte("x")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("ExtendPCR(20) = %x, %v; want %x", got, err, want)
	}
	if err := s.LockPCR(ctx, 17); err != nil {
		t.Fatalf("LockPCR(17): %v", err)
	}
	if err := s.LockPCR(ctx, 17); !errors.Is(err, qtsm.ErrReadOnlyIndex) {
		t.Errorf("second LockPCR(17) = %v, want ReadOnlyIndex", err)
	}
	if _, err := s.ExtendPCR(ctx, 17, []byte("y")); !errors.Is(err, qtsm.ErrReadOnlyIndex) {
		t.Errorf("ExtendPCR(locked 17) = %v, want ReadOnlyIndex", err)
	}
	// LockPCRs locks [0, n) and tolerates locked ones.
	if err := s.LockPCRs(ctx, 20); err != nil {
		t.Fatalf("LockPCRs(20): %v", err)
	}
	want := make([]int, 20)
	for i := range want {
		want[i] = i
	}
	if got := m.LockedPCRs(); !slices.Equal(got, want) {
		t.Errorf("locked after LockPCRs(20) = %v, want %v", got, want)
	}
	d, err := s.Describe(ctx)
	if err != nil || len(d.LockedPCRs) != 20 || d.LockedPCRs[19] != 19 {
		t.Errorf("Describe locked = %v, %v; want 0..19", d.LockedPCRs, err)
	}
	if err := s.LockPCRs(ctx, 32); err != nil {
		t.Errorf("LockPCRs(32) = %v, want ok", err)
	}
	if _, err := s.ExtendPCR(ctx, 31, nil); !errors.Is(err, qtsm.ErrReadOnlyIndex) {
		t.Errorf("ExtendPCR(31) after LockPCRs(32) = %v, want ReadOnlyIndex", err)
	}
	if err := s.LockPCRs(ctx, 0); err != nil {
		t.Errorf("LockPCRs(0) = %v, want ok", err)
	}
}

func TestNewRejectsBadPresets(t *testing.T) {
	for name, opts := range map[string]sim.Options{
		"short value":  {PCRs: map[int][]byte{0: make([]byte, 32)}},
		"index 32":     {PCRs: map[int][]byte{32: pcr.Zero()}},
		"index -1":     {PCRs: map[int][]byte{-1: pcr.Zero()}},
		"vendor 7":     {Vendor: qtsm.Vendor(7)},
		"long id":      {ModuleID: strings.Repeat("x", 300)},
		"empty random": {Rand: bytes.NewReader(nil)},
	} {
		if m, err := sim.New(opts); err == nil {
			m.Close()
			t.Errorf("New(%s) = ok, want error", name)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	m := newSim(t, sim.Options{Vendor: qtsm.VendorQingtian, PCRs: image()})
	s := qtsm.NewSession(m)
	const workers, rounds = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				// Everyone extends PCR16 with the same data: the final
				// value is order independent.
				if _, err := s.ExtendPCR(ctx, 16, []byte("same")); err != nil {
					errs <- err
				}
				if r%5 == 0 {
					nonce := []byte(fmt.Sprintf("w%d r%d", w, r))
					doc, err := m.RoundTrip(ctx, mustEncodeNoT(qtsm.AttestationRequest{Nonce: nonce}))
					if err == nil {
						err = checkAttestation(m, doc, nonce)
					}
					if err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want := pcr.Zero()
	for range workers * rounds {
		want = pcr.Extend(want, []byte("same"))
	}
	if got, _ := m.PCR(16); !bytes.Equal(got, want) {
		t.Errorf("PCR16 after %d concurrent extends = %x, want %x", workers*rounds, got, want)
	}
}

func mustEncodeNoT(r qtsm.Request) []byte {
	b, err := qtsm.EncodeRequest(r)
	if err != nil {
		panic(err)
	}
	return b
}

func checkAttestation(m *sim.Module, resp []byte, nonce []byte) error {
	r, err := qtsm.DecodeResponse(resp)
	if err != nil {
		return err
	}
	a, ok := r.(qtsm.AttestationResponse)
	if !ok {
		return fmt.Errorf("answer %T, want AttestationResponse", r)
	}
	opts := m.VerifyOptions()
	opts.ExpectNonce = nonce
	_, err = attestation.VerifyBytes(a.Document, opts)
	return err
}

func TestClose(t *testing.T) {
	m := newSim(t, sim.Options{})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := qtsm.NewSession(m, qtsm.WithRetry(qtsm.RetryPolicy{Attempts: 1})).GetRandom(context.Background()); !errors.Is(err, qtsm.ErrClosed) {
		t.Errorf("GetRandom after Close = %v, want ErrClosed", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := newSim(t, sim.Options{}).RoundTrip(ctx, mustEncodeNoT(qtsm.GetRandomRequest{})); !errors.Is(err, context.Canceled) {
		t.Errorf("RoundTrip with canceled context = %v, want context.Canceled", err)
	}
}

// TestLeafRotation: leaves live 3 h like AWS's; the module issues a new one
// as its clock moves, and each document verifies at its own time.
func TestLeafRotation(t *testing.T) {
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var now atomic.Int64
	now.Store(start.UnixNano())
	m := newSim(t, sim.Options{PCRs: image(), Now: func() time.Time { return time.Unix(0, now.Load()) }})
	s := qtsm.NewSession(m)
	var leaves [][]byte
	for _, step := range []time.Duration{0, time.Hour, 5 * time.Hour, 24 * time.Hour} {
		at := start.Add(step)
		now.Store(at.UnixNano())
		doc, err := s.Attestation(context.Background(), qtsm.AttestationRequest{})
		if err != nil {
			t.Fatal(err)
		}
		opts := m.VerifyOptions()
		opts.Time, opts.MaxAge = at, time.Second
		res, err := attestation.VerifyBytes(doc, opts)
		if err != nil {
			t.Fatalf("document at +%s: %v", step, err)
		}
		if !res.Document.Timestamp.Equal(at) {
			t.Errorf("timestamp %s, want %s", res.Document.Timestamp, at)
		}
		leaves = append(leaves, res.Document.Certificate)
		// A document is useless once its leaf expires.
		opts.Time, opts.MaxAge = at.Add(sim.LeafLifetime+time.Minute), 0
		if _, err := attestation.VerifyBytes(doc, opts); !errors.Is(err, attestation.ErrExpired) {
			t.Errorf("document at +%s verified 3 h later: %v, want ErrExpired", step, err)
		}
	}
	if !bytes.Equal(leaves[0], leaves[1]) || bytes.Equal(leaves[1], leaves[2]) || bytes.Equal(leaves[2], leaves[3]) {
		t.Errorf("leaf reuse across 0, +1h, +5h, +24h = %v %v %v, want same, new, new",
			bytes.Equal(leaves[0], leaves[1]), bytes.Equal(leaves[1], leaves[2]), bytes.Equal(leaves[2], leaves[3]))
	}
}

func TestRootIsP384CA(t *testing.T) {
	m := newSim(t, sim.Options{})
	c, err := x509.ParseCertificate(m.RootDER())
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsCA || c.PublicKeyAlgorithm != x509.ECDSA || c.SignatureAlgorithm != x509.ECDSAWithSHA384 {
		t.Errorf("root: CA %v, key %s, sig %s; want a P-384 CA", c.IsCA, c.PublicKeyAlgorithm, c.SignatureAlgorithm)
	}
	if hex.EncodeToString(m.RootDER()) == hex.EncodeToString(newSim(t, sim.Options{}).RootDER()) {
		t.Error("two modules share a root, want a fresh chain each")
	}
}
