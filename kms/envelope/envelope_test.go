package envelope

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	keyOnce sync.Once
	keyA    *rsa.PrivateKey
	keyB    *rsa.PrivateKey
)

func keys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	keyOnce.Do(func() {
		var err error
		if keyA, err = rsa.GenerateKey(rand.Reader, 2048); err == nil {
			keyB, err = rsa.GenerateKey(rand.Reader, 2048)
		}
		if err != nil {
			panic(err)
		}
	})
	return keyA, keyB
}

func TestSealOpen(t *testing.T) {
	a, b := keys(t)
	for _, n := range []int{0, 1, 15, 16, 17, 32, 1000, 5000} {
		msg := make([]byte, n)
		rand.Read(msg)
		env, err := Seal(rand.Reader, &a.PublicKey, msg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Open(env, a)
		if err != nil || !bytes.Equal(got, msg) {
			t.Errorf("Open(Seal(%d bytes)) = %d bytes, %v", n, len(got), err)
		}
		if _, err := Open(env, b); !errors.Is(err, ErrRecipient) {
			t.Errorf("Open with another key = %v, want ErrRecipient", err)
		}
	}
}

// recipient writes key a and a self-signed certificate whose
// subjectKeyIdentifier is the SHA-256 of its SPKI (as KMS computes the
// rid) for OpenSSL.
func recipient(t *testing.T, key *rsa.PrivateKey) (keyPath, certPath string) {
	t.Helper()
	ski, err := SubjectKeyID(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "enclave recipient"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), SubjectKeyId: ski,
		KeyUsage: x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPath, certPath = filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	return keyPath, certPath
}

func openssl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("skipped: no openssl (scripts/deps.sh installs it) for the cross-check")
	}
	return p
}

// TestOpenSSLEnvelopeOpens: an envelope made by openssl cms -encrypt with
// the parameters KMS uses opens with Open.
func TestOpenSSLEnvelopeOpens(t *testing.T) {
	bin := openssl(t)
	a, _ := keys(t)
	_, cert := recipient(t, a)
	msg := []byte("the secret KMS releases to a measured enclave\n")
	in := filepath.Join(t.TempDir(), "msg")
	os.WriteFile(in, msg, 0o600)
	cmd := exec.Command(bin, "cms", "-encrypt", "-binary", "-keyid", "-aes-256-cbc", "-recip", cert,
		"-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256", "-keyopt", "rsa_mgf1_md:sha256",
		"-outform", "DER", "-in", in)
	env, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl cms -encrypt: %v", err)
	}
	got, err := Open(env, a)
	if err != nil || !bytes.Equal(got, msg) {
		t.Errorf("Open(openssl's envelope) = %q, %v; want %q", got, err, msg)
	}
}

// TestSealedOpensWithOpenSSL: an envelope Seal makes (the fake KMS's)
// opens with openssl cms -decrypt.
func TestSealedOpensWithOpenSSL(t *testing.T) {
	bin := openssl(t)
	a, _ := keys(t)
	key, cert := recipient(t, a)
	msg := make([]byte, 3000) // several chunks
	rand.Read(msg)
	env, err := Seal(rand.Reader, &a.PublicKey, msg)
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "env.ber")
	os.WriteFile(in, env, 0o600)
	out, err := exec.Command(bin, "cms", "-decrypt", "-binary", "-inform", "DER", "-in", in, "-inkey", key, "-recip", cert).Output()
	if err != nil {
		t.Fatalf("openssl cms -decrypt of Seal's envelope: %v", err)
	}
	if !bytes.Equal(out, msg) {
		t.Errorf("openssl decrypted %d bytes, not the %d sealed", len(out), len(msg))
	}
}

// TestBadEnvelopes: each kind of damage is its typed error.
func TestBadEnvelopes(t *testing.T) {
	a, _ := keys(t)
	good, err := Seal(rand.Reader, &a.PublicKey, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	der, err := toDER(good)
	if err != nil {
		t.Fatal(err)
	}
	replace := func(b []byte, old, new []byte) []byte {
		i := bytes.Index(b, old)
		if i < 0 {
			t.Fatalf("%x not found", old)
		}
		return append(append(append([]byte(nil), b[:i]...), new...), b[i+len(old):]...)
	}
	// The EnvelopedData's version INTEGER 2 is the first 02 01 02.
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"truncated", good[:len(good)/2], ErrMalformed},
		{"trailing byte", append(append([]byte(nil), good...), 0), ErrMalformed},
		{"DER form opens too", der, nil},
		{"version 0", replace(der, []byte{0x02, 0x01, 0x02}, []byte{0x02, 0x01, 0x00}), ErrVersion},
		{"not enveloped data", replace(der, oidBytes(oidEnvelopedData), oidBytes(oidData)), ErrAlgorithm},
		{"AES-128", replace(der, oidBytes(oidAES256CBC), oidBytes(asnOID(2, 16, 840, 1, 101, 3, 4, 1, 2))), ErrAlgorithm},
		{"OAEP with SHA-1 MGF", replace(der, oidBytes(oidMGF1), oidBytes(asnOID(1, 2, 840, 113549, 1, 1, 9))), ErrAlgorithm},
		{"huge length", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x00}, ErrMalformed},
		{"deep nesting", nest(100), ErrMalformed},
		{"indefinite primitive", []byte{0x04, 0x80, 0x00, 0x00}, ErrMalformed},
		{"chunk of another type", []byte{0x24, 0x80, 0x02, 0x01, 0x00, 0x00, 0x00}, ErrMalformed},
	} {
		_, err := Open(c.in, a)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: Open = %v, want %v", c.name, err, c.want)
		}
	}
	// A flipped bit in the content: bad padding, or at least not the secret.
	bad := append([]byte(nil), good...)
	bad[len(bad)-6] ^= 1
	if got, err := Open(bad, a); err == nil && string(got) == "secret" {
		t.Errorf("a corrupted envelope opened to the secret")
	}
}

func asnOID(v ...int) []int { return v }

func oidBytes(o []int) []byte {
	b, err := asn1Marshal(o)
	if err != nil {
		panic(err)
	}
	return b
}

func nest(n int) []byte {
	b := []byte{0x05, 0x00}
	for range n {
		b = append([]byte{0x30, 0x80}, append(b, 0, 0)...)
	}
	return b
}

// FuzzOpen: no panic, no success without the key's rid, and the DER
// conversion never grows past its bound.
func FuzzOpen(f *testing.F) {
	a, _ := keys(f)
	good, _ := Seal(rand.Reader, &a.PublicKey, []byte("secret"))
	f.Add(good)
	der, _ := toDER(good)
	f.Add(der)
	f.Add(nest(5))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := toDER(b); err == nil && len(d) > 2*len(b)+16 {
			t.Fatalf("toDER grew %d bytes to %d", len(b), len(d))
		}
		Open(b, a)
	})
}

func asn1Marshal(o []int) ([]byte, error) { return asn1.Marshal(asn1.ObjectIdentifier(o)) }

// BenchmarkOpen opens a 4 KiB envelope; BenchmarkDecryptOAEP is its RSA
// step alone, the baseline in the same run (the rest is parsing and AES).
func BenchmarkOpen(b *testing.B) {
	a, _ := keys(b)
	msg := make([]byte, 4096)
	env, err := Seal(rand.Reader, &a.PublicKey, msg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Open(env, a); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecryptOAEP(b *testing.B) {
	a, _ := keys(b)
	ek, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &a.PublicKey, make([]byte, 32), nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := rsa.DecryptOAEP(sha256.New(), nil, a, ek, nil); err != nil {
			b.Fatal(err)
		}
	}
}
