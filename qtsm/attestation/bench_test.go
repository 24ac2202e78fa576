package attestation_test

import (
	"crypto/ecdsa"
	"crypto/sha512"
	"crypto/x509"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/qtenclave/enclave/qtsm/attestation"
)

// Benchmarks report, besides ns/op, their cost as a multiple of one raw
// ecdsa.Verify (P-384) measured in the same run: the floor for verifying a
// document (its signature) is 1x, and a full Verify also checks the four
// chain signatures, so ~5x-6x is the expected figure.

var (
	baselineOnce sync.Once
	baselineNs   float64
)

// ecdsaBaseline returns the ns of one P-384 ecdsa.Verify of the Nitro
// fixture's signature with its leaf key, timed over at least 200 ms
// (testing.Benchmark cannot nest inside a running benchmark).
func ecdsaBaseline(b *testing.B) float64 {
	baselineOnce.Do(func() {
		pub, digest, r, s := rawSignature(b)
		n, start := 0, time.Now()
		for time.Since(start) < 200*time.Millisecond {
			if !ecdsa.Verify(pub, digest, r, s) {
				b.Fatal("baseline signature does not verify")
			}
			n++
		}
		baselineNs = float64(time.Since(start).Nanoseconds()) / float64(n)
	})
	return baselineNs
}

func rawSignature(b testing.TB) (*ecdsa.PublicKey, []byte, *big.Int, *big.Int) {
	d, err := attestation.Parse(read(b, "nitro-debug-attestation.cose"))
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(d.Certificate)
	if err != nil {
		b.Fatal(err)
	}
	// The Sig_structure of a document whose header and payload lengths
	// need 1- and 2-byte heads: 84 6a "Signature1" 44 <prot> 40 59 <len> <payload>.
	sig := []byte{0x84, 0x6a}
	sig = append(sig, "Signature1"...)
	sig = append(sig, 0x40|byte(len(d.Protected)))
	sig = append(sig, d.Protected...)
	sig = append(sig, 0x40, 0x59, byte(len(d.Payload)>>8), byte(len(d.Payload)))
	sig = append(sig, d.Payload...)
	digest := sha512.Sum384(sig)
	r := new(big.Int).SetBytes(d.Signature[:48])
	s := new(big.Int).SetBytes(d.Signature[48:])
	return leaf.PublicKey.(*ecdsa.PublicKey), digest[:], r, s
}

func reportRatio(b *testing.B) {
	base := ecdsaBaseline(b)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/base, "x-ecdsa")
}

func BenchmarkECDSAVerifyP384(b *testing.B) {
	pub, digest, r, s := rawSignature(b)
	b.ReportAllocs()
	for b.Loop() {
		if !ecdsa.Verify(pub, digest, r, s) {
			b.Fatal("does not verify")
		}
	}
}

func BenchmarkParse(b *testing.B) {
	for _, f := range fixtures {
		b.Run(f.vendor.String(), func(b *testing.B) {
			doc := read(b, f.file)
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := attestation.Parse(doc); err != nil {
					b.Fatal(err)
				}
			}
			reportRatio(b)
		})
	}
}

// BenchmarkVerify is Parse plus Verify (signature and chain) at the
// document's time.
func BenchmarkVerify(b *testing.B) {
	for _, f := range fixtures {
		b.Run(f.vendor.String(), func(b *testing.B) {
			doc := read(b, f.file)
			opts := atDoc(f)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := attestation.VerifyBytes(doc, opts); err != nil {
					b.Fatal(err)
				}
			}
			reportRatio(b)
		})
	}
}

// BenchmarkVerifyBadSignature is the cost of refusing a forged document in
// auto mode (both signature encodings tried, no chain).
func BenchmarkVerifyBadSignature(b *testing.B) {
	for _, f := range fixtures {
		b.Run(f.vendor.String(), func(b *testing.B) {
			doc := read(b, f.file)
			doc[len(doc)-1] ^= 1
			opts := atDoc(f)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := attestation.VerifyBytes(doc, opts); err == nil {
					b.Fatal("verifies")
				}
			}
			reportRatio(b)
		})
	}
}
