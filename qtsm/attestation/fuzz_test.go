package attestation

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"maps"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"

	"github.com/qtenclave/enclave/qtsm"
)

// wellformed is an independent CBOR decoder's view (fxamacker/cbor).
var wellformed = func() cbor.DecMode {
	m, err := cbor.DecOptions{IndefLength: cbor.IndefLengthAllowed, MaxNestedLevels: 64}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}()

// FuzzParse: Parse never panics, every failure is ErrMalformed, and what it
// accepts is well-formed CBOR by an independent decoder, within every
// limit, and survives a re-encode in its own dialect unchanged.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"nitro-debug-attestation.cose", "qingtian-attestation.cose"} {
		f.Add(readFixture(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v is not ErrMalformed", err)
			}
			return
		}
		if err := wellformed.Wellformed(b); err != nil {
			t.Fatalf("Parse accepted what fxamacker/cbor calls malformed: %v", err)
		}
		var m map[string]cbor.RawMessage
		if err := wellformed.Unmarshal(d.Payload, &m); err != nil {
			t.Fatalf("payload does not decode as a map: %v", err)
		}
		if got, want := slices.Sorted(maps.Keys(m)), slices.Sorted(slices.Values(d.Layout.Keys)); !slices.Equal(got, want) {
			t.Fatalf("payload keys %v, Parse saw %v", got, want)
		}
		switch {
		case len(d.UserData) > MaxUserData, len(d.Nonce) > MaxNonce, len(d.PublicKey) > MaxPublicKey:
			t.Fatal("optional field over its limit")
		case len(d.PCRs) < 1 || len(d.PCRs) > MaxPCRs:
			t.Fatalf("%d PCRs", len(d.PCRs))
		case len(d.CABundle) < 1 || len(d.CABundle) > MaxCABundle:
			t.Fatalf("%d cabundle entries", len(d.CABundle))
		case d.Vendor != qtsm.VendorNitro && d.Vendor != qtsm.VendorQingtian:
			t.Fatalf("vendor %v", d.Vendor)
		case d.ModuleID == "" || d.TimestampMillis == 0:
			t.Fatal("empty module_id or timestamp")
		}
		for i, v := range d.PCRs {
			if i < 0 || i >= MaxPCRs || len(v) != digestSizes[d.Digest] {
				t.Fatalf("PCR%d of %d bytes", i, len(v))
			}
		}
		// Re-encode in the detected dialect and parse again: same fields.
		p, err := encodePayload(d, d.Vendor)
		if err != nil {
			t.Fatalf("encodePayload: %v", err)
		}
		d2, err := Parse(coseOf(d.Protected, p, d.Signature))
		if err != nil {
			t.Fatalf("re-encoded document does not parse: %v", err)
		}
		if d2.Vendor != d.Vendor || d2.ModuleID != d.ModuleID || d2.Digest != d.Digest || d2.TimestampMillis != d.TimestampMillis ||
			!bytes.Equal(d2.Certificate, d.Certificate) || !slices.EqualFunc(d2.CABundle, d.CABundle, bytes.Equal) ||
			!maps.EqualFunc(d2.PCRs, d.PCRs, bytes.Equal) || !bytes.Equal(d2.UserData, d.UserData) ||
			!bytes.Equal(d2.Nonce, d.Nonce) || !bytes.Equal(d2.PublicKey, d.PublicKey) {
			t.Fatalf("re-encoded document differs:\n%+v\n%+v", d, d2)
		}
	})
}

type testSigner struct {
	key   *ecdsa.PrivateKey
	leaf  []byte
	roots []Root
	at    time.Time
}

func loadSigner(tb testing.TB) *testSigner {
	tb.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile("testdata/signer/" + name)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	k, err := x509.ParsePKCS8PrivateKey(read("leaf.key"))
	if err != nil {
		tb.Fatal(err)
	}
	root, err := x509.ParseCertificate(read("root.der"))
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(read("leaf.der"))
	if err != nil {
		tb.Fatal(err)
	}
	return &testSigner{key: k.(*ecdsa.PrivateKey), leaf: leaf.Raw, roots: []Root{{Cert: root}}, at: leaf.NotBefore.Add(time.Hour)}
}

// FuzzVerify fuzzes the payload of a document that is then properly signed
// with the fixed test signer (testdata/signer), so that everything after
// the signature check (chain, time, policy) sees arbitrary payloads. A
// document that verifies must carry the signer's own leaf, pass the same
// check in go-cose, and be refused with ErrDebug without AllowDebug exactly
// when PCR0 is zero or absent.
func FuzzVerify(f *testing.F) {
	s := loadSigner(f)
	f.Fuzz(func(t *testing.T, payload []byte, qingtian bool) {
		protected, enc := es384, BigEndian
		if qingtian {
			protected, enc = []byte{0xa1, 0x1a, 0, 0, 0, 1, 0x3a, 0, 0, 0, 0x22}, LittleEndian
		}
		doc := signRaw(t, s.key, protected, payload, enc)
		res, err := VerifyBytes(doc, Options{Roots: s.roots, Time: s.at, AllowDebug: true})
		if err != nil {
			return
		}
		d := res.Document
		if !bytes.Equal(d.Certificate, s.leaf) {
			t.Fatalf("verified with a certificate other than the signer's leaf")
		}
		if res.Encoding != enc {
			t.Fatalf("verified as %s, signed %s", res.Encoding, enc)
		}
		if err := crossCheckCOSE(doc, &s.key.PublicKey, enc); err != nil {
			t.Fatalf("Verify accepts, go-cose refuses: %v", err)
		}
		_, err = VerifyBytes(doc, Options{Roots: s.roots, Time: s.at})
		if d.Debug() != errors.Is(err, ErrDebug) || (!d.Debug() && err != nil) {
			t.Fatalf("debug %v, without AllowDebug: %v", d.Debug(), err)
		}
	})
}

func crossCheckCOSE(doc []byte, pub *ecdsa.PublicKey, enc SignatureEncoding) error {
	var m cose.UntaggedSign1Message
	if err := m.UnmarshalCBOR(doc); err != nil {
		return err
	}
	v, err := cose.NewVerifier(cose.AlgorithmES384, pub)
	if err != nil {
		return err
	}
	if enc == LittleEndian {
		m.Signature = slices.Clone(m.Signature)
		slices.Reverse(m.Signature[:48])
		slices.Reverse(m.Signature[48:])
	}
	return m.Verify(nil, v)
}

// TestFixedSigner: the fuzz signer's chain verifies, so FuzzVerify's seeds
// reach past the signature check.
func TestFixedSigner(t *testing.T) {
	s := loadSigner(t)
	for _, v := range []qtsm.Vendor{qtsm.VendorNitro, qtsm.VendorQingtian} {
		d := &Document{ModuleID: "m", Timestamp: s.at, PCRs: map[int][]byte{0: bytes.Repeat([]byte{1}, 48)},
			Certificate: s.leaf, CABundle: [][]byte{s.roots[0].Cert.Raw, mustRead(t, "testdata/signer/intermediate.der")}}
		doc, err := Sign(d, s.key, SignOptions{Vendor: v})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyBytes(doc, Options{Roots: s.roots, Time: s.at}); err != nil {
			t.Errorf("%s document by the fixed signer: %v", v, err)
		}
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
