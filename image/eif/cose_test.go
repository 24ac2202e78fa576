package eif

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"testing"

	"github.com/veraison/go-cose"
)

// TestCOSEAgainstGoCOSE cross-checks the project's COSE_Sign1 (internal/cose)
// with an independent implementation, both ways: go-cose verifies what
// Signer writes, and Signature.Verify accepts what go-cose writes, tagged
// or not.
func TestCOSEAgainstGoCOSE(t *testing.T) {
	for _, tc := range []struct {
		curve elliptic.Curve
		alg   cose.Algorithm
	}{{elliptic.P256(), cose.AlgorithmES256}, {elliptic.P384(), cose.AlgorithmES384}, {elliptic.P521(), cose.AlgorithmES512}} {
		t.Run(tc.alg.String(), func(t *testing.T) {
			certFile, keyFile := testSigner(t, t.TempDir(), tc.curve, false)
			s, err := LoadSigner(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			pcr0 := make([]byte, 48)
			rand.Read(pcr0)
			section, err := s.SignatureSection(pcr0)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := ParseSignature(section)
			if err != nil {
				t.Fatal(err)
			}
			pub := s.Certificate().PublicKey.(*ecdsa.PublicKey)
			v, err := cose.NewVerifier(tc.alg, pub)
			if err != nil {
				t.Fatal(err)
			}
			var ours cose.UntaggedSign1Message
			if err := ours.UnmarshalCBOR(sig.COSE); err != nil {
				t.Fatalf("go-cose cannot decode our COSE_Sign1: %v", err)
			}
			if err := ours.Verify(nil, v); err != nil {
				t.Errorf("go-cose does not verify our COSE_Sign1: %v", err)
			}

			// go-cose signs the same payload; our Verify must accept it.
			key := loadKey(t, keyFile)
			signer, err := cose.NewSigner(tc.alg, key)
			if err != nil {
				t.Fatal(err)
			}
			theirs := cose.UntaggedSign1Message{
				Headers: cose.Headers{Protected: cose.ProtectedHeader{cose.HeaderLabelAlgorithm: tc.alg}},
				Payload: encodePCRInfo(0, pcr0),
			}
			if err := theirs.Sign(rand.Reader, nil, signer); err != nil {
				t.Fatal(err)
			}
			untagged, err := theirs.MarshalCBOR()
			if err != nil {
				t.Fatal(err)
			}
			tagged, err := (*cose.Sign1Message)(&theirs).MarshalCBOR()
			if err != nil {
				t.Fatal(err)
			}
			for name, msg := range map[string][]byte{"untagged": untagged, "tagged": tagged} {
				other := &Signature{CertificatePEM: sig.CertificatePEM, Certificate: sig.Certificate, COSE: msg, Entries: 1}
				if alg, err := other.Verify(pcr0); err != nil || alg != tc.alg.String() {
					t.Errorf("Verify(go-cose's %s COSE_Sign1) = %q, %v; want %s", name, alg, err, tc.alg)
				}
			}
		})
	}
}

func loadKey(t *testing.T, keyFile string) *ecdsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
