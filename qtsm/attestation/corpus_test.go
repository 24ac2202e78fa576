package attestation_test

import (
	"crypto/ecdsa"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/attestation"
	"github.com/qtenclave/enclave/qtsm/pcr"
	"github.com/qtenclave/enclave/qtsm/sim"
)

// signerTime is when testdata/signer's chain was made; its leaf is valid
// for sim.LeafLifetime from a minute before.
var signerTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// TestWriteSigner regenerates testdata/signer (a fixed root, intermediate
// and leaf with its key, so that FuzzVerify's corpus stays valid across
// runs). Run with ATTESTATION_WRITE_SIGNER=1; then rerun with
// ATTESTATION_WRITE_FUZZ_CORPUS=1.
func TestWriteSigner(t *testing.T) {
	if os.Getenv("ATTESTATION_WRITE_SIGNER") != "1" {
		t.Skip("set ATTESTATION_WRITE_SIGNER=1 to regenerate testdata/signer")
	}
	ca, err := sim.NewCA(nil, signerTime, "attestation fuzz signer")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.NewLeaf(signerTime)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("testdata", "signer")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"root.der": ca.RootDER, "intermediate.der": ca.IntermediateDER, "leaf.der": leaf.DER, "leaf.key": key,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWriteFuzzCorpus writes the seed corpora of FuzzParse and FuzzVerify
// under testdata/fuzz. Run with ATTESTATION_WRITE_FUZZ_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("ATTESTATION_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set ATTESTATION_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz seeds")
	}
	write := func(target, name string, args ...any) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s := "go test fuzz v1\n"
		for _, a := range args {
			switch a := a.(type) {
			case []byte:
				s += fmt.Sprintf("[]byte(%q)\n", a)
			case bool:
				s += fmt.Sprintf("bool(%v)\n", a)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.ReadFile("testdata/signer/root.der")
	if err != nil {
		t.Fatal(err)
	}
	inter, err := os.ReadFile("testdata/signer/intermediate.der")
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := os.ReadFile("testdata/signer/leaf.der")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := os.ReadFile("testdata/signer/leaf.key")
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		t.Fatal(err)
	}
	pcrs := map[int][]byte{}
	for i := range 16 {
		pcrs[i] = pcr.Extend(pcr.Zero(), []byte{byte(i)})
	}
	for _, f := range fixtures {
		b := read(t, f.file)
		write("FuzzParse", f.file, b)
		d, err := attestation.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		write("FuzzVerify", f.file, d.Payload, f.vendor == qtsm.VendorQingtian)
	}
	for _, v := range []qtsm.Vendor{qtsm.VendorNitro, qtsm.VendorQingtian} {
		for _, unsigned := range []bool{false, true} {
			d := &attestation.Document{
				ModuleID: "i-0123456789abcdef0-enc0123456789abcdef", Timestamp: signerTime.Add(time.Hour), PCRs: pcrs,
				Certificate: leafDER, CABundle: [][]byte{root, inter},
				UserData: []byte("user data"), Nonce: []byte("nonce"), PublicKey: []byte("public key"),
			}
			b, err := attestation.Sign(d, key.(*ecdsa.PrivateKey), attestation.SignOptions{Vendor: v, Unsigned: unsigned, Tagged: unsigned})
			if err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("signed-%s-unsigned-%v", v, unsigned)
			write("FuzzParse", name, b)
			p, err := attestation.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if !unsigned {
				write("FuzzVerify", fmt.Sprintf("signed-%s", v), p.Payload, v == qtsm.VendorQingtian)
			}
		}
	}
}
