package eif

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	icbor "github.com/qtenclave/enclave/internal/cbor"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// testSigner makes a self-signed certificate for a fresh key on curve and
// writes cert.pem and key.pem (SEC 1 or PKCS #8) into dir.
func testSigner(t testing.TB, dir string, curve elliptic.Curve, pkcs8 bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "eif signing test " + curve.Params().Name},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	var kb []byte
	typ := "EC PRIVATE KEY"
	if pkcs8 {
		kb, err = x509.MarshalPKCS8PrivateKey(key)
		typ = "PRIVATE KEY"
	} else {
		kb, err = x509.MarshalECPrivateKey(key)
	}
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: kb}), 0o600)
	return certFile, keyFile
}

// checkSignatureIndependently decodes the signature section with a generic
// CBOR decoder and verifies the COSE_Sign1 with crypto/ecdsa directly.
func checkSignatureIndependently(t *testing.T, section, certPEM, pcr0 []byte) {
	t.Helper()
	var entries []map[string][]uint16
	if err := cbor.Unmarshal(section, &entries); err != nil {
		t.Fatalf("signature section is not a CBOR array of maps of uint arrays: %v", err)
	}
	if len(entries) != 1 || len(entries[0]) != 2 {
		t.Fatalf("signature section = %d entries, want 1 map of 2", len(entries))
	}
	toBytes := func(u []uint16) []byte {
		b := make([]byte, len(u))
		for i, v := range u {
			if v > 255 {
				t.Fatalf("element %d = %d > 255", i, v)
			}
			b[i] = byte(v)
		}
		return b
	}
	if got := toBytes(entries[0]["signing_certificate"]); !bytes.Equal(got, certPEM) {
		t.Errorf("signing_certificate differs from the PEM file")
	}
	// QEMU's order: "signing_certificate" is the first key.
	if !bytes.HasPrefix(section, append([]byte{0x81, 0xa2, 0x73}, "signing_certificate"...)) {
		t.Errorf("section starts %x, want [ {\"signing_certificate\" ...", section[:8])
	}
	coseBytes := toBytes(entries[0]["signature"])
	if coseBytes[0] != 0x84 {
		t.Fatalf("COSE_Sign1 starts with %#x, want 0x84 (untagged array of 4)", coseBytes[0])
	}
	var msg struct {
		_           struct{} `cbor:",toarray"`
		Protected   []byte
		Unprotected map[any]any
		Payload     []byte
		Signature   []byte
	}
	if err := cbor.Unmarshal(coseBytes, &msg); err != nil {
		t.Fatal(err)
	}
	var prot map[int]int
	if err := cbor.Unmarshal(msg.Protected, &prot); err != nil {
		t.Fatal(err)
	}
	var payload struct {
		RegisterIndex int      `cbor:"register_index"`
		RegisterValue []uint16 `cbor:"register_value"`
	}
	if err := cbor.Unmarshal(msg.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	if payload.RegisterIndex != 0 || !bytes.Equal(toBytes(payload.RegisterValue), pcr0) {
		t.Errorf("payload = PCR%d %x, want PCR0 %x", payload.RegisterIndex, toBytes(payload.RegisterValue), pcr0)
	}
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub := cert.PublicKey.(*ecdsa.PublicKey)
	wantAlg, h := map[string]int{"P-256": -7, "P-384": -35, "P-521": -36}[pub.Curve.Params().Name],
		map[string]crypto.Hash{"P-256": crypto.SHA256, "P-384": crypto.SHA384, "P-521": crypto.SHA512}[pub.Curve.Params().Name]
	if len(prot) != 1 || prot[1] != wantAlg {
		t.Errorf("protected header = %v, want {1: %d}", prot, wantAlg)
	}
	tbs, err := cbor.Marshal([]any{"Signature1", msg.Protected, []byte{}, msg.Payload})
	if err != nil {
		t.Fatal(err)
	}
	d := h.New()
	d.Write(tbs)
	n := len(msg.Signature) / 2
	r, s := new(big.Int).SetBytes(msg.Signature[:n]), new(big.Int).SetBytes(msg.Signature[n:])
	if !ecdsa.Verify(pub, d.Sum(nil), r, s) {
		t.Error("COSE_Sign1 signature does not verify independently")
	}
}

func TestSignedImage(t *testing.T) {
	for _, tc := range []struct {
		curve elliptic.Curve
		pkcs8 bool
		alg   string
	}{
		{elliptic.P256(), false, "ES256"},
		{elliptic.P384(), true, "ES384"},
		{elliptic.P521(), false, "ES512"},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := testSigner(t, dir, tc.curve, tc.pkcs8)
			s, err := LoadSigner(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			if s.Algorithm() != tc.alg {
				t.Errorf("Algorithm() = %s, want %s", s.Algorithm(), tc.alg)
			}
			b := smallEIF(t, "console=ttyS0", s, "boot", "app")
			f, err := NewFile(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			m, err := f.Verify()
			if err != nil {
				t.Fatal(err)
			}
			// PCR8, computed independently from the certificate's DER.
			certPEM, _ := os.ReadFile(certFile)
			block, _ := pem.Decode(certPEM)
			inner := sha512.Sum384(block.Bytes)
			outer := sha512.Sum384(append(make([]byte, 48), inner[:]...))
			if !bytes.Equal(m.PCR8, outer[:]) {
				t.Errorf("PCR8 = %x, want %x", m.PCR8, outer)
			}
			if last := f.Sections[len(f.Sections)-1]; last.Type != SectionSignature {
				t.Errorf("last section is %s, want signature", last.Type)
			}
			alg, err := f.VerifySignature(m)
			if err != nil || alg != tc.alg {
				t.Errorf("VerifySignature = %q, %v, want %s", alg, err, tc.alg)
			}
			sec, _ := f.SignatureSection().Bytes()
			checkSignatureIndependently(t, sec, certPEM, m.PCR0)

			// The same inputs give the same file (RFC 6979 signatures).
			if b2 := smallEIF(t, "console=ttyS0", s, "boot", "app"); !bytes.Equal(b, b2) {
				t.Error("signing twice gave different files")
			}

			// The signature does not fit another image's PCR0.
			sig, _ := f.Signature()
			other := bytes.Repeat([]byte{1}, 48)
			if _, err := sig.Verify(other); err == nil || !strings.Contains(err.Error(), "the image's PCR0 is") {
				t.Errorf("Verify(other PCR0) = %v, want a PCR0 mismatch", err)
			}
			// A flipped bit in the COSE signature.
			sig.COSE = bytes.Clone(sig.COSE)
			sig.COSE[len(sig.COSE)-1] ^= 1
			if _, err := sig.Verify(m.PCR0); err == nil || !strings.Contains(err.Error(), "does not verify") {
				t.Errorf("Verify(tampered) = %v, want a verification error", err)
			}
		})
	}
}

func TestSignerRefuses(t *testing.T) {
	dir1, dir2 := t.TempDir(), t.TempDir()
	cert1, _ := testSigner(t, dir1, elliptic.P384(), false)
	_, key2 := testSigner(t, dir2, elliptic.P384(), false)
	if _, err := LoadSigner(cert1, key2); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("LoadSigner(mismatched) = %v, want a mismatch error", err)
	}
	// RSA certificate.
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &rk.PublicKey, rk)
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if _, err := NewSigner(rsaPEM, rk); err == nil || !strings.Contains(err.Error(), "want ECDSA") {
		t.Errorf("NewSigner(RSA) = %v, want an ECDSA error", err)
	}
	// P-224 is not a COSE curve here.
	k224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	der, _ = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k224.PublicKey, k224)
	if _, err := NewSigner(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), k224); err == nil || !strings.Contains(err.Error(), "unsupported curve") {
		t.Errorf("NewSigner(P-224) = %v, want unsupported curve", err)
	}
	if _, err := NewSigner([]byte("not pem"), k224); err == nil {
		t.Error("NewSigner(garbage) accepted")
	}
}

func TestParseSignatureRefuses(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testSigner(t, dir, elliptic.P256(), false)
	s, err := LoadSigner(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	good, err := s.SignatureSection(make([]byte, 48))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseSignature(good); err != nil {
		t.Fatalf("ParseSignature(good) = %v", err)
	}
	certPEM, _ := os.ReadFile(certFile)
	wideCert := cborHead(nil, cborArray, uint64(len(certPEM)))
	for _, c := range certPEM {
		wideCert = append(wideCert, 0x19, 0, c) // 2-byte width: QEMU refuses it
	}
	for _, tc := range []struct {
		name string
		data []byte
		msg  string
	}{
		{"empty", nil, "unexpected end"},
		{"not an array", []byte{0xa0}, "want major type 4, got 5"},
		{"empty array", []byte{0x80}, "no PCR signature"},
		{"indefinite array", []byte{0x9f, 0xff}, "indefinite"},
		{"keys swapped", func() []byte {
			b := cborHead(nil, cborArray, 1)
			b = cborHead(b, cborMap, 2)
			b = cborTextString(b, "signature")
			b = cborByteArray(b, []byte{1})
			b = cborTextString(b, "signing_certificate")
			return cborByteArray(b, certPEM)
		}(), `key "signature", want "signing_certificate"`},
		{"three keys", append([]byte{0x81, 0xa3}, good[2:]...), "map of 3 entries"},
		{"wide integers", func() []byte {
			b := cborHead(nil, cborArray, 1)
			b = cborHead(b, cborMap, 2)
			b = cborTextString(b, "signing_certificate")
			b = append(b, wideCert...)
			b = cborTextString(b, "signature")
			return cborByteArray(b, []byte{1})
		}(), "not a one-byte unsigned integer"},
		{"byte string instead of array", func() []byte {
			b := cborHead(nil, cborArray, 1)
			b = cborHead(b, cborMap, 2)
			b = cborTextString(b, "signing_certificate")
			b = append(cborHead(b, 2, uint64(len(certPEM))), certPEM...)
			return b
		}(), "want major type 4, got 2"},
		{"huge array length", []byte{0x81, 0xa2, 0x73, 's', 'i', 'g', 'n', 'i', 'n', 'g', '_', 'c', 'e', 'r', 't', 'i', 'f', 'i', 'c', 'a', 't', 'e', 0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "cannot fit"},
		{"trailing bytes", append(bytes.Clone(good), 0), "1 trailing bytes"},
		{"not a certificate", func() []byte {
			b := cborHead(nil, cborArray, 1)
			b = cborHead(b, cborMap, 2)
			b = cborTextString(b, "signing_certificate")
			b = cborByteArray(b, []byte("-----BEGIN JUNK-----\n-----END JUNK-----\n"))
			b = cborTextString(b, "signature")
			return cborByteArray(b, []byte{1})
		}(), "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSignature(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("ParseSignature = %v, want an error containing %q", err, tc.msg)
			}
		})
	}
}

func TestPCRInfoEncoding(t *testing.T) {
	// serde_cbor's encoding of PcrInfo{register_index: 0, register_value}.
	v := make([]byte, 48)
	v[0], v[1] = 23, 24 // the two sides of the 1-byte/2-byte uint boundary
	got := encodePCRInfo(0, v)
	want := "a2" + "6e" + hex.EncodeToString([]byte("register_index")) + "00" +
		"6e" + hex.EncodeToString([]byte("register_value")) + "9830" + "17" + "1818" + strings.Repeat("00", 46)
	if hex.EncodeToString(got) != want {
		t.Errorf("encodePCRInfo = %x, want %s", got, want)
	}
	idx, val, err := decodePCRInfo(got)
	if err != nil || idx != 0 || !bytes.Equal(val, v) {
		t.Errorf("decodePCRInfo = %d, %x, %v", idx, val, err)
	}
}

// Test helpers that append CBOR in the shapes the hostile cases need.
const (
	cborArray = icbor.MajorArray
	cborMap   = icbor.MajorMap
)

func cborHead(b []byte, major byte, n uint64) []byte {
	w := icbor.Writer{B: b}
	w.Head(major, n)
	return w.B
}

func cborTextString(b []byte, s string) []byte {
	w := icbor.Writer{B: b}
	w.TextString(s)
	return w.B
}

func cborByteArray(b []byte, p []byte) []byte {
	w := icbor.Writer{B: b}
	byteArray(&w, p)
	return w.B
}
