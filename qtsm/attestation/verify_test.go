package attestation_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/veraison/go-cose"

	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/attestation"
	"github.com/qtenclave/enclave/qtsm/pcr"
	"github.com/qtenclave/enclave/qtsm/sim"
)

type fixture struct {
	file   string
	vendor qtsm.Vendor
	debug  bool
	enc    attestation.SignatureEncoding
}

var fixtures = []fixture{
	{"nitro-debug-attestation.cose", qtsm.VendorNitro, true, attestation.BigEndian},
	{"qingtian-attestation.cose", qtsm.VendorQingtian, false, attestation.LittleEndian},
}

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// atDoc verifies at the document's own time (the leaves live 3 hours).
func atDoc(f fixture) attestation.Options {
	return attestation.Options{DocumentTime: true, AllowDebug: f.debug}
}

func TestFixturesVerify(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.file, func(t *testing.T) {
			for _, vendor := range []qtsm.Vendor{qtsm.VendorUnknown, f.vendor} {
				opts := atDoc(f)
				opts.Vendor = vendor
				res, err := attestation.VerifyBytes(read(t, f.file), opts)
				if err != nil {
					t.Fatalf("VerifyBytes(vendor %s) = %v, want ok", vendor, err)
				}
				if res.Vendor != f.vendor || res.Encoding != f.enc || res.Root.Vendor != f.vendor || res.Debug != f.debug || res.Unsigned {
					t.Errorf("result vendor %s encoding %s root %s debug %v unsigned %v; want %s %s %s %v false",
						res.Vendor, res.Encoding, res.Root.Vendor, res.Debug, res.Unsigned, f.vendor, f.enc, f.vendor, f.debug)
				}
				if len(res.Chain) != 5 || !bytes.Equal(res.Chain[0].Raw, res.Document.Certificate) || !bytes.Equal(res.Chain[4].Raw, res.Document.CABundle[0]) {
					t.Errorf("chain of %d, want leaf, 3 intermediates, cabundle[0] root", len(res.Chain))
				}
				if !res.Time.Equal(res.Document.Timestamp) {
					t.Errorf("verified at %s, want the document time %s", res.Time, res.Document.Timestamp)
				}
			}
			// An explicit time inside the leaf's validity works as well.
			opts := atDoc(f)
			opts.DocumentTime = false
			d, _ := attestation.Parse(read(t, f.file))
			opts.Time = d.Timestamp.Add(30 * time.Minute)
			if _, err := attestation.Verify(d, opts); err != nil {
				t.Errorf("Verify at document time + 30m = %v, want ok", err)
			}
		})
	}
}

func TestFixturesRefused(t *testing.T) {
	for _, f := range fixtures {
		d, err := attestation.Parse(read(t, f.file))
		if err != nil {
			t.Fatal(err)
		}
		other := qtsm.VendorNitro
		if f.vendor == qtsm.VendorNitro {
			other = qtsm.VendorQingtian
		}
		pcr4 := bytes.Clone(d.PCRs[4])
		pcr4[0] ^= 1
		for _, tc := range []struct {
			name string
			opts func(o *attestation.Options)
			want error
		}{
			{"now (leaf expired)", func(o *attestation.Options) { o.DocumentTime = false }, attestation.ErrExpired},
			{"a day later", func(o *attestation.Options) { o.DocumentTime, o.Time = false, d.Timestamp.Add(24*time.Hour) }, attestation.ErrExpired},
			{"before the leaf", func(o *attestation.Options) { o.DocumentTime, o.Time = false, d.Timestamp.Add(-24*time.Hour) }, attestation.ErrExpired},
			{"other vendor's root only", func(o *attestation.Options) { o.Roots = attestation.DefaultRoots(other) }, attestation.ErrChain},
			{"no roots", func(o *attestation.Options) { o.Roots = []attestation.Root{} }, attestation.ErrChain},
			{"nil root", func(o *attestation.Options) { o.Roots = []attestation.Root{{}} }, attestation.ErrChain},
			{"other vendor", func(o *attestation.Options) { o.Vendor = other }, attestation.ErrVendor},
			{"too old", func(o *attestation.Options) {
				o.DocumentTime, o.Time, o.MaxAge = false, d.Timestamp.Add(16*time.Minute), 15*time.Minute
			}, attestation.ErrTooOld},
			{"from the future", func(o *attestation.Options) {
				o.DocumentTime, o.Time, o.MaxAge = false, d.Timestamp.Add(-90*time.Second), 15*time.Minute
			}, attestation.ErrFuture},
			{"PCR4 differs", func(o *attestation.Options) { o.ExpectPCRs = map[int][]byte{4: pcr4} }, attestation.ErrPCRMismatch},
			{"PCR20 absent", func(o *attestation.Options) { o.ExpectPCRs = map[int][]byte{20: pcr.Zero()} }, attestation.ErrPCRMismatch},
			{"nonce differs", func(o *attestation.Options) { o.ExpectNonce = []byte("other") }, attestation.ErrNonceMismatch},
			{"user_data differs", func(o *attestation.Options) { o.ExpectUserData = []byte("other") }, attestation.ErrUserDataMismatch},
			{"public_key differs", func(o *attestation.Options) { o.ExpectPublicKey = []byte("other") }, attestation.ErrPublicKeyMismatch},
		} {
			t.Run(f.file+"/"+tc.name, func(t *testing.T) {
				opts := atDoc(f)
				tc.opts(&opts)
				if _, err := attestation.Verify(d, opts); !errors.Is(err, tc.want) {
					t.Errorf("Verify = %v, want %v", err, tc.want)
				}
			})
		}
		t.Run(f.file+"/expectations met", func(t *testing.T) {
			opts := atDoc(f)
			opts.ExpectPCRs = map[int][]byte{0: d.PCRs[0], 4: d.PCRs[4]}
			opts.ExpectNonce, opts.ExpectUserData, opts.ExpectPublicKey = []byte{}, []byte{}, []byte{}
			if d.Nonce != nil {
				opts.ExpectNonce = d.Nonce
			}
			if d.UserData != nil {
				opts.ExpectUserData = d.UserData
			}
			if d.PublicKey != nil {
				opts.ExpectPublicKey = d.PublicKey
			}
			opts.DocumentTime, opts.Time, opts.MaxAge = false, d.Timestamp.Add(14*time.Minute), 15*time.Minute
			if _, err := attestation.Verify(d, opts); err != nil {
				t.Errorf("Verify with every expectation met = %v, want ok", err)
			}
		})
	}
}

func TestNitroFixtureNeedsAllowDebug(t *testing.T) {
	_, err := attestation.VerifyBytes(read(t, "nitro-debug-attestation.cose"), attestation.Options{DocumentTime: true})
	if !errors.Is(err, attestation.ErrDebug) {
		t.Errorf("VerifyBytes(debug document) = %v, want ErrDebug", err)
	}
}

// flipAll runs the exhaustive flip tests (every byte with two masks, every
// signature bit: ~25 s); by default they sample.
var flipAll = os.Getenv("ATTESTATION_FLIP_ALL") == "1"

// TestFlipEveryByte: a single-byte change anywhere in a real document
// (envelope, protected header, payload, signature) makes it fail, whether
// in parsing or in verification. By default it covers the first 128 bytes
// (envelope, protected header, payload head, first PCRs), the last 128
// (optional fields, signature) and every 29th byte between;
// ATTESTATION_FLIP_ALL=1
// covers every byte with masks 0x01 and 0x80.
func TestFlipEveryByte(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.file, func(t *testing.T) {
			orig := read(t, f.file)
			opts := atDoc(f)
			if _, err := attestation.VerifyBytes(orig, opts); err != nil {
				t.Fatalf("unmodified: %v", err)
			}
			masks := []byte{0x01}
			if flipAll {
				masks = append(masks, 0x80)
			}
			var parseErrs, verifyErrs int
			b := slices.Clone(orig)
			for i := range b {
				if !flipAll && i >= 128 && i < len(b)-128 && i%29 != 0 {
					continue
				}
				for _, mask := range masks {
					b[i] ^= mask
					_, perr := attestation.Parse(b)
					_, err := attestation.VerifyBytes(b, opts)
					b[i] ^= mask
					switch {
					case err == nil:
						t.Errorf("byte %d ^ %#x: verifies, want an error", i, mask)
					case perr != nil:
						parseErrs++
					default:
						verifyErrs++
					}
				}
			}
			t.Logf("%d bytes: %d flips refused by Parse, %d by Verify", len(orig), parseErrs, verifyErrs)
		})
	}
}

// TestFlipSignatureBytes: every signature byte (every bit with
// ATTESTATION_FLIP_ALL=1) changed gives ErrSignature.
func TestFlipSignatureBytes(t *testing.T) {
	for _, f := range fixtures {
		d, err := attestation.Parse(read(t, f.file))
		if err != nil {
			t.Fatal(err)
		}
		orig := d.Signature
		for i := range orig {
			for bit := range 8 {
				if !flipAll && bit != i%8 {
					continue
				}
				sig := slices.Clone(orig)
				sig[i] ^= 1 << bit
				d.Signature = sig
				if _, err := attestation.Verify(d, atDoc(f)); !errors.Is(err, attestation.ErrSignature) {
					t.Errorf("%s: signature byte %d bit %d flipped: %v, want ErrSignature", f.file, i, bit, err)
				}
			}
		}
		d.Signature = orig
	}
}

// TestGoCOSECrossCheck: an independent COSE implementation agrees with
// Verify on the real documents (Qingtian's after reversing the halves).
func TestGoCOSECrossCheck(t *testing.T) {
	for _, f := range fixtures {
		b := read(t, f.file)
		if err := goCOSEVerify(b, f.enc); err != nil {
			t.Errorf("go-cose on %s: %v", f.file, err)
		}
		other := attestation.BigEndian
		if f.enc == attestation.BigEndian {
			other = attestation.LittleEndian
		}
		if err := goCOSEVerify(b, other); err == nil {
			t.Errorf("go-cose on %s with %s halves verifies, want failure", f.file, other)
		}
	}
}

func goCOSEVerify(b []byte, e attestation.SignatureEncoding) error {
	var m cose.UntaggedSign1Message
	if err := m.UnmarshalCBOR(b); err != nil {
		return err
	}
	d, err := attestation.Parse(b)
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(d.Certificate)
	if err != nil {
		return err
	}
	v, err := cose.NewVerifier(cose.AlgorithmES384, leaf.PublicKey.(*ecdsa.PublicKey))
	if err != nil {
		return err
	}
	if e == attestation.LittleEndian {
		m.Signature = slices.Clone(m.Signature)
		slices.Reverse(m.Signature[:48])
		slices.Reverse(m.Signature[48:])
	}
	return m.Verify(nil, v)
}

// testChain returns a sim CA and a leaf valid at now.
func testChain(t testing.TB, now time.Time) (*sim.CA, *sim.Leaf) {
	t.Helper()
	ca, err := sim.NewCA(nil, now, "attestation test")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.NewLeaf(now)
	if err != nil {
		t.Fatal(err)
	}
	return ca, leaf
}

func TestSignBothDialects(t *testing.T) {
	now := time.Now().Truncate(time.Millisecond)
	ca, leaf := testChain(t, now)
	pcrs := map[int][]byte{}
	for i := range 16 {
		pcrs[i] = pcr.Extend(pcr.Zero(), []byte{byte(i)})
	}
	for _, v := range []qtsm.Vendor{qtsm.VendorNitro, qtsm.VendorQingtian} {
		for _, tagged := range []bool{false, true} {
			in := &attestation.Document{
				ModuleID: "i-0123456789abcdef0-enc0123456789abcdef", Timestamp: now, PCRs: pcrs,
				Certificate: leaf.DER, CABundle: ca.Bundle(), Nonce: []byte("nonce"),
			}
			b, err := attestation.Sign(in, leaf.Key, attestation.SignOptions{Vendor: v, Tagged: tagged})
			if err != nil {
				t.Fatalf("Sign(%s): %v", v, err)
			}
			if got := b[0]; (got == 0xd2) != tagged || (!tagged && got != 0x84) {
				t.Errorf("Sign(%s, tagged %v) starts %#x", v, tagged, got)
			}
			opts := attestation.Options{Roots: []attestation.Root{{Vendor: v, Cert: ca.Root()}}, Vendor: v,
				ExpectNonce: []byte("nonce"), ExpectPCRs: pcrs, MaxAge: time.Second}
			res, err := attestation.VerifyBytes(b, opts)
			if err != nil {
				t.Fatalf("VerifyBytes(Sign(%s)) = %v", v, err)
			}
			d := res.Document
			if d.Vendor != v || !d.Timestamp.Equal(now) || d.ModuleID != in.ModuleID || d.Digest != "SHA384" || d.Layout.Tagged != tagged {
				t.Errorf("round trip %s: %+v", v, d)
			}
			wantKeys := map[qtsm.Vendor]string{
				qtsm.VendorNitro:    "module_id digest timestamp pcrs certificate cabundle public_key user_data nonce",
				qtsm.VendorQingtian: "module_id timestamp digest pcrs certificate cabundle user_data nonce public_key",
			}[v]
			if got := strings.Join(d.Layout.Keys, " "); got != wantKeys {
				t.Errorf("%s keys %q, want %q", v, got, wantKeys)
			}
			if v == qtsm.VendorQingtian {
				if d.Layout.MinimalProtected || d.Layout.PCRKeyWidth != 2 || !slices.Equal(d.Layout.EmptyFields, []string{"user_data", "public_key"}) ||
					hex.EncodeToString(d.Protected) != "a11a000000013a00000022" {
					t.Errorf("qingtian layout %+v protected %x", d.Layout, d.Protected)
				}
			} else if !d.Layout.MinimalProtected || d.Layout.PCRKeyWidth != 0 || !slices.Equal(d.Layout.NullFields, []string{"public_key", "user_data"}) ||
				hex.EncodeToString(d.Protected) != "a1013822" {
				t.Errorf("nitro layout %+v protected %x", d.Layout, d.Protected)
			}
			if !tagged {
				if err := goCOSEVerify(b, res.Encoding); err != nil {
					t.Errorf("go-cose on Sign(%s): %v", v, err)
				}
			}
		}
	}
}

func TestSignRefuses(t *testing.T) {
	now := time.Now()
	ca, leaf := testChain(t, now)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := func() *attestation.Document {
		return &attestation.Document{ModuleID: "m", Timestamp: now, PCRs: map[int][]byte{0: pcr.Zero()},
			Certificate: leaf.DER, CABundle: ca.Bundle()}
	}
	for name, tc := range map[string]struct {
		mod func(d *attestation.Document)
		key *ecdsa.PrivateKey
	}{
		"P-256 key":       {func(*attestation.Document) {}, p256},
		"no key":          {func(*attestation.Document) {}, nil},
		"no PCRs":         {func(d *attestation.Document) { d.PCRs = nil }, leaf.Key},
		"PCR 32":          {func(d *attestation.Document) { d.PCRs[32] = pcr.Zero() }, leaf.Key},
		"user_data 513":   {func(d *attestation.Document) { d.UserData = make([]byte, 513) }, leaf.Key},
		"empty module_id": {func(d *attestation.Document) { d.ModuleID = "" }, leaf.Key},
		"no cabundle":     {func(d *attestation.Document) { d.CABundle = nil }, leaf.Key},
	} {
		d := good()
		tc.mod(d)
		var err error
		if tc.key == nil {
			_, err = attestation.Sign(d, nil, attestation.SignOptions{})
		} else {
			_, err = attestation.Sign(d, tc.key, attestation.SignOptions{})
		}
		if err == nil {
			t.Errorf("Sign(%s) = ok, want error", name)
		}
	}
}

func TestUnsigned(t *testing.T) {
	now := time.Now()
	zero := make([]byte, 64)
	in := &attestation.Document{ModuleID: "i-234-enc5678", Timestamp: now,
		PCRs: map[int][]byte{0: pcr.Measure([]byte("image"))}, Certificate: zero, CABundle: [][]byte{zero}, Nonce: []byte("n")}
	b, err := attestation.Sign(in, nil, attestation.SignOptions{Unsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := attestation.VerifyBytes(b, attestation.Options{}); !errors.Is(err, attestation.ErrUnsigned) {
		t.Errorf("VerifyBytes(unsigned) = %v, want ErrUnsigned", err)
	}
	res, err := attestation.VerifyBytes(b, attestation.Options{AllowUnsigned: true, ExpectNonce: []byte("n")})
	if err != nil || !res.Unsigned || res.Chain != nil || res.Encoding != 0 {
		t.Errorf("VerifyBytes(unsigned, AllowUnsigned) = %+v, %v; want ok, unsigned, no chain", res, err)
	}
	// Policy still applies to unsigned documents.
	if _, err := attestation.VerifyBytes(b, attestation.Options{AllowUnsigned: true, ExpectNonce: []byte("x")}); !errors.Is(err, attestation.ErrNonceMismatch) {
		t.Errorf("VerifyBytes(unsigned, wrong nonce) = %v, want ErrNonceMismatch", err)
	}
	// A signed document's algorithm must be ES384.
	d, _ := attestation.Parse(read(t, "qingtian-attestation.cose"))
	d.Algorithm = -36
	if _, err := attestation.Verify(d, attestation.Options{DocumentTime: true}); !errors.Is(err, attestation.ErrAlgorithm) {
		t.Errorf("Verify(alg -36) = %v, want ErrAlgorithm", err)
	}
}

// TestChainRules: the bundle's root may be a trusted root itself or chain
// to one; a leaf that is not P-384 or from another chain is refused.
func TestChainRules(t *testing.T) {
	now := time.Now()
	ca, leaf := testChain(t, now)
	_, strangerLeaf := testChain(t, now)
	doc := func(certDER []byte, key *ecdsa.PrivateKey, bundle [][]byte) []byte {
		b, err := attestation.Sign(&attestation.Document{ModuleID: "m", Timestamp: now,
			PCRs: map[int][]byte{0: pcr.Measure(nil)}, Certificate: certDER, CABundle: bundle}, key, attestation.SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	trust := attestation.Options{Roots: []attestation.Root{attestation.RootOf(ca.Root())}}
	for _, tc := range []struct {
		name string
		doc  []byte
		want error
	}{
		{"root first", doc(leaf.DER, leaf.Key, ca.Bundle()), nil},
		{"intermediate only: chains to the trusted root", doc(leaf.DER, leaf.Key, [][]byte{ca.IntermediateDER}), nil},
		{"leaf from another chain", doc(strangerLeaf.DER, strangerLeaf.Key, ca.Bundle()), attestation.ErrChain},
		{"missing intermediate", doc(leaf.DER, leaf.Key, [][]byte{ca.RootDER}), attestation.ErrChain},
		{"bundle entry not a certificate", doc(leaf.DER, leaf.Key, [][]byte{ca.RootDER, {0x30, 0x00}}), attestation.ErrChain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := attestation.VerifyBytes(tc.doc, trust)
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("VerifyBytes = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseRoots(t *testing.T) {
	der, err := os.ReadFile("roots/aws-nitro-enclaves-root-g1.der")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := attestation.ParseRoots(der)
	if err != nil || len(rs) != 1 || rs[0].Vendor != qtsm.VendorNitro || !rs[0].Cert.Equal(attestation.NitroRoot()) {
		t.Fatalf("ParseRoots(AWS DER) = %+v, %v; want the Nitro root", rs, err)
	}
	m, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := append(pemOf(attestation.QingtianRoot().Raw), pemOf(m.RootDER())...)
	rs, err = attestation.ParseRoots(pemBytes)
	if err != nil || len(rs) != 2 || rs[0].Vendor != qtsm.VendorQingtian || rs[1].Vendor != qtsm.VendorUnknown {
		t.Errorf("ParseRoots(PEM x2) = %+v, %v; want Qingtian root then an unknown one", rs, err)
	}
	for _, bad := range [][]byte{nil, []byte("-----BEGIN NOTHING-----\n-----END NOTHING-----\n"), {0x30, 0x01, 0x00}} {
		if _, err := attestation.ParseRoots(bad); err == nil {
			t.Errorf("ParseRoots(%q) = ok, want error", bad)
		}
	}
	// The sim's documents verify against its root given as PEM.
	doc, err := qtsm.NewSession(m).Attestation(context.Background(), qtsm.AttestationRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := attestation.VerifyBytes(doc, attestation.Options{Roots: rs, AllowDebug: true}); err != nil {
		t.Errorf("VerifyBytes(sim doc, PEM roots) = %v", err)
	}
}

func pemOf(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestFutureDocumentRefusedByDefault: a document stamped an hour ahead of
// the verifier's clock is refused even when no MaxAge is asked for (issue
// 14, item 9); a negative ClockSkew turns the check off.
func TestFutureDocumentRefusedByDefault(t *testing.T) {
	now := time.Now().Truncate(time.Millisecond)
	ca, leaf := testChain(t, now)
	pcrs := map[int][]byte{0: pcr.Extend(pcr.Zero(), []byte("k"))}
	in := &attestation.Document{ModuleID: "m", Timestamp: now.Add(time.Hour), PCRs: pcrs, Certificate: leaf.DER, CABundle: ca.Bundle()}
	b, err := attestation.Sign(in, leaf.Key, attestation.SignOptions{Vendor: qtsm.VendorNitro})
	if err != nil {
		t.Fatal(err)
	}
	opts := attestation.Options{Roots: []attestation.Root{{Vendor: qtsm.VendorNitro, Cert: ca.Root()}}, Vendor: qtsm.VendorNitro, Time: now.Add(time.Second)}
	if _, err := attestation.VerifyBytes(b, opts); !errors.Is(err, attestation.ErrFuture) {
		t.Errorf("Verify(an hour ahead, no MaxAge) = %v, want ErrFuture", err)
	}
	opts.ClockSkew = -1
	if _, err := attestation.VerifyBytes(b, opts); err != nil {
		t.Errorf("Verify(an hour ahead, ClockSkew < 0) = %v, want nil", err)
	}
	in.Timestamp = now.Add(30 * time.Second) // within the default skew
	b, _ = attestation.Sign(in, leaf.Key, attestation.SignOptions{Vendor: qtsm.VendorNitro})
	opts.ClockSkew = 0
	if _, err := attestation.VerifyBytes(b, opts); err != nil {
		t.Errorf("Verify(30 s ahead) = %v, want nil", err)
	}
}
