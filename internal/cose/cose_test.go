package cose

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"strings"
	"testing"

	"github.com/qtenclave/enclave/internal/cbor"
)

func TestSign1RoundTrip(t *testing.T) {
	for _, tagged := range []bool{false, true} {
		m := &Sign1{Tagged: tagged, Protected: EncodeProtected(AlgES384), Payload: []byte("payload"), Signature: []byte{1, 2, 3}}
		b := m.Marshal()
		got, err := Parse(b, nil)
		if err != nil {
			t.Fatalf("Parse(Marshal(tagged=%v)) = %v", tagged, err)
		}
		if got.Tagged != tagged || !bytes.Equal(got.Protected, m.Protected) || !bytes.Equal(got.Payload, m.Payload) ||
			!bytes.Equal(got.Signature, m.Signature) || !got.UnprotectedEmpty() {
			t.Errorf("Parse(Marshal(%+v)) = %+v", m, got)
		}
		if again := got.Marshal(); !bytes.Equal(again, b) {
			t.Errorf("Marshal(Parse(b)) = %x, want %x", again, b)
		}
	}
	if got := EncodeProtected(AlgES384); !bytes.Equal(got, []byte{0xa1, 0x01, 0x38, 0x22}) {
		t.Errorf("EncodeProtected(ES384) = %x, want a1013822", got)
	}
}

func TestParseRefuses(t *testing.T) {
	sentinel := errors.New("sentinel")
	for name, in := range map[string][]byte{
		"empty":           nil,
		"not an array":    {0xa0},
		"three elements":  {0x83, 0x40, 0xa0, 0x40},
		"wrong tag":       {0xd1, 0x84, 0x40, 0xa0, 0x40, 0x40},
		"detached":        {0x84, 0x40, 0xa0, 0xf6, 0x40},
		"unprotected bad": {0x84, 0x40, 0x40, 0x40, 0x40},
		"trailing":        {0x84, 0x40, 0xa0, 0x40, 0x40, 0x00},
	} {
		if _, err := Parse(in, sentinel); !errors.Is(err, sentinel) {
			t.Errorf("Parse(%s) = %v, want an error wrapping the caller's", name, err)
		}
	}
}

func TestProtectedHeader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []byte
		alg     int64
		minimal bool
		err     string
	}{
		{"nitro", []byte{0xa1, 0x01, 0x38, 0x22}, AlgES384, true, ""},
		{"qingtian", []byte{0xa1, 0x1a, 0, 0, 0, 1, 0x3a, 0, 0, 0, 0x22}, AlgES384, false, ""},
		{"crit alg", []byte{0xa2, 0x01, 0x38, 0x22, 0x02, 0x81, 0x01}, AlgES384, true, ""},
		{"crit unknown", []byte{0xa2, 0x01, 0x38, 0x22, 0x02, 0x81, 0x03}, 0, false, "critical parameter 3"},
		{"crit text", []byte{0xa2, 0x01, 0x38, 0x22, 0x02, 0x81, 0x61, 'x'}, 0, false, "text label"},
		{"crit empty", []byte{0xa2, 0x01, 0x38, 0x22, 0x02, 0x80}, 0, false, "empty"},
		{"crit not array", []byte{0xa2, 0x01, 0x38, 0x22, 0x02, 0x01}, 0, false, "crit"},
		{"no alg", []byte{0xa1, 0x04, 0x40}, 0, false, "no alg"},
		{"duplicate", []byte{0xa2, 0x01, 0x38, 0x22, 0x01, 0x38, 0x22}, 0, false, "duplicate"},
		{"trailing", []byte{0xa1, 0x01, 0x38, 0x22, 0x00}, 0, false, "trailing"},
	} {
		h, err := ParseProtected(tc.in, nil)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, cbor.ErrMalformed) {
				t.Errorf("ParseProtected(%s) = %+v, %v; want an error containing %q", tc.name, h, err, tc.err)
			}
			continue
		}
		if err != nil || h.Alg != tc.alg || h.Minimal != tc.minimal {
			t.Errorf("ParseProtected(%s) = %+v, %v; want alg %d minimal %v", tc.name, h, err, tc.alg, tc.minimal)
		}
	}
}

func TestECDSA(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha512.Sum384(SigStructure(EncodeProtected(AlgES384), []byte("x")))
	sig, err := SignECDSA(key, rand.Reader, digest[:], crypto.SHA384, 48)
	if err != nil || len(sig) != 96 {
		t.Fatalf("SignECDSA = %d bytes, %v; want 96", len(sig), err)
	}
	if !VerifyECDSA(&key.PublicKey, digest[:], sig) {
		t.Error("VerifyECDSA(own signature) = false")
	}
	sig[10] ^= 1
	if VerifyECDSA(&key.PublicKey, digest[:], sig) || VerifyECDSA(&key.PublicKey, digest[:], sig[:95]) {
		t.Error("VerifyECDSA accepted a changed or short signature")
	}
}

func FuzzParse(f *testing.F) {
	f.Add((&Sign1{Protected: EncodeProtected(AlgES384), Payload: []byte("p"), Signature: []byte("s")}).Marshal())
	f.Add((&Sign1{Tagged: true, Protected: []byte{0xa2, 0x01, 0x38, 0x22, 0x02, 0x81, 0x01}, Unprotected: []byte{0xa1, 0x04, 0x40}}).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b, nil)
		if err != nil {
			return
		}
		if again := m.Marshal(); !bytes.Equal(again, b) && !m.Tagged {
			// Parse accepts non-minimal heads; Marshal writes minimal
			// ones, so only the parts must survive.
			m2, err := Parse(again, nil)
			if err != nil || !bytes.Equal(m2.Payload, m.Payload) || !bytes.Equal(m2.Protected, m.Protected) || !bytes.Equal(m2.Signature, m.Signature) {
				t.Fatalf("re-parse of Marshal(Parse(%x)) = %+v, %v", b, m2, err)
			}
		}
		ParseProtected(m.Protected, nil)
	})
}
