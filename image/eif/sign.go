package eif

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	_ "crypto/sha256" // ES256
	"crypto/sha512"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/qtenclave/enclave/internal/cbor"
	"github.com/qtenclave/enclave/internal/cose"
	"github.com/qtenclave/enclave/qtsm/pcr"
)

// maxSignatureSize caps the signature section read into memory.
const maxSignatureSize = 1 << 20

// Signer signs images: it holds the signing certificate (stored in the
// image as given, PEM) and the matching ECDSA private key.
type Signer struct {
	certPEM []byte
	cert    *x509.Certificate
	key     crypto.Signer
	alg     int64 // COSE algorithm

	// Rand is the randomness for ECDSA. Nil means a deterministic signature
	// (RFC 6979) when the key is an *ecdsa.PrivateKey, so that signing the
	// same image with the same key gives the same file; crypto/rand otherwise.
	Rand io.Reader
}

// NewSigner checks that certPEM holds an X.509 certificate whose ECDSA
// public key (P-256, P-384 or P-521, giving ES256, ES384 or ES512) matches
// key.
func NewSigner(certPEM []byte, key crypto.Signer) (*Signer, error) {
	cert, err := parsePEMCertificate(certPEM)
	if err != nil {
		return nil, fmt.Errorf("eif: signing certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("eif: signing certificate: %T public key, want ECDSA", cert.PublicKey)
	}
	alg, err := curveAlgorithm(pub.Curve)
	if err != nil {
		return nil, fmt.Errorf("eif: signing certificate: %w", err)
	}
	kp, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || !kp.Equal(pub) {
		return nil, errors.New("eif: private key does not match the signing certificate")
	}
	return &Signer{certPEM: bytes.Clone(certPEM), cert: cert, key: key, alg: alg}, nil
}

// LoadSigner reads a PEM certificate and a PEM ECDSA private key (SEC 1 "EC
// PRIVATE KEY" or PKCS #8 "PRIVATE KEY"), the files nitro-cli takes.
func LoadSigner(certFile, keyFile string) (*Signer, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("eif: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("eif: %w", err)
	}
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("eif: %s: %w", keyFile, err)
	}
	return NewSigner(certPEM, key)
}

// ParsePrivateKey decodes a PEM ECDSA private key.
func ParsePrivateKey(keyPEM []byte) (*ecdsa.PrivateKey, error) {
	for rest := keyPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key found")
		}
		switch block.Type {
		case "EC PRIVATE KEY":
			return x509.ParseECPrivateKey(block.Bytes)
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			ek, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("%T private key, want ECDSA", k)
			}
			return ek, nil
		}
	}
}

// Certificate returns the signing certificate.
func (s *Signer) Certificate() *x509.Certificate { return s.cert }

// Algorithm returns the COSE algorithm name (ES256, ES384 or ES512).
func (s *Signer) Algorithm() string { return algName(s.alg) }

// PCR8 returns the PCR8 value of images signed by s.
func (s *Signer) PCR8() []byte { return certPCR(s.cert) }

// SignatureSection returns the signature section for an image whose PCR0
// is pcr0: a COSE_Sign1 (protected {1: alg}, unprotected {}) over the
// PCR0 payload, with the certificate, in serde's CBOR.
func (s *Signer) SignatureSection(pcr0 []byte) ([]byte, error) {
	protected := cose.EncodeProtected(s.alg)
	payload := encodePCRInfo(0, pcr0)
	h := algHash(s.alg)
	d := h.New()
	d.Write(cose.SigStructure(protected, payload))
	rnd := s.Rand
	if _, ok := s.key.(*ecdsa.PrivateKey); rnd == nil && !ok {
		rnd = rand.Reader
	}
	size := (s.cert.PublicKey.(*ecdsa.PublicKey).Curve.Params().BitSize + 7) / 8
	sig, err := cose.SignECDSA(s.key, rnd, d.Sum(nil), h, size)
	if err != nil {
		return nil, fmt.Errorf("eif: sign PCR0: %w", err)
	}
	msg := (&cose.Sign1{Protected: protected, Payload: payload, Signature: sig}).Marshal()
	return encodeSignatureSection(s.certPEM, msg), nil
}

func algHash(a int64) crypto.Hash {
	switch a {
	case cose.AlgES256:
		return crypto.SHA256
	case cose.AlgES384:
		return crypto.SHA384
	}
	return crypto.SHA512
}

func algName(a int64) string {
	switch a {
	case cose.AlgES256:
		return "ES256"
	case cose.AlgES384:
		return "ES384"
	case cose.AlgES512:
		return "ES512"
	}
	return fmt.Sprintf("alg %d", a)
}

func curveAlgorithm(c elliptic.Curve) (int64, error) {
	switch c {
	case elliptic.P256():
		return cose.AlgES256, nil
	case elliptic.P384():
		return cose.AlgES384, nil
	case elliptic.P521():
		return cose.AlgES512, nil
	}
	return 0, fmt.Errorf("unsupported curve %s (want P-256, P-384 or P-521)", c.Params().Name)
}

func parsePEMCertificate(data []byte) (*x509.Certificate, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM certificate found")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

func certPCR(c *x509.Certificate) []byte {
	sum := sha512.Sum384(c.Raw)
	return pcr.FromDigest(sum[:])
}

// Signature is a parsed signature section.
type Signature struct {
	// CertificatePEM is the signing certificate as stored; Certificate is
	// its first PEM certificate, the one PCR8 measures.
	CertificatePEM []byte
	Certificate    *x509.Certificate
	// COSE is the COSE_Sign1 over the PCR0 payload.
	COSE []byte
	// Entries is the number of PCR signatures in the section (AWS writes 1;
	// only the first is used, as QEMU does).
	Entries int
}

// PCR8 returns the measurement of the signing certificate.
func (s *Signature) PCR8() []byte { return certPCR(s.Certificate) }

// ParseSignature decodes a signature section strictly, as QEMU does: a
// definite CBOR array of maps with exactly the keys "signing_certificate"
// then "signature", each an array of unsigned integers below 256.
func ParseSignature(data []byte) (*Signature, error) {
	if len(data) > maxSignatureSize {
		return nil, invalid(ErrSignature, "%d bytes, more than %d", len(data), maxSignatureSize)
	}
	r := cbor.NewReader(data, nil)
	n, err := definite(r, cbor.MajorArray)
	if err != nil {
		return nil, invalid(ErrSignature, "%v", err)
	}
	if n == 0 {
		return nil, invalid(ErrSignature, "no PCR signature")
	}
	var sig Signature
	for i := uint64(0); i < n; i++ {
		cert, cs, err := pcrSignature(r)
		if err != nil {
			return nil, invalid(ErrSignature, "entry %d: %v", i, err)
		}
		if i == 0 {
			sig.CertificatePEM, sig.COSE = cert, cs
		}
	}
	if r.Remaining() != 0 {
		return nil, invalid(ErrSignature, "%d trailing bytes", r.Remaining())
	}
	sig.Entries = int(n)
	c, err := parsePEMCertificate(sig.CertificatePEM)
	if err != nil {
		return nil, invalid(ErrSignature, "signing certificate: %v", err)
	}
	sig.Certificate = c
	return &sig, nil
}

// Verify checks the COSE_Sign1 with the certificate's key and that it signs
// PCR0 = pcr0. It returns the algorithm name. The certificate's validity
// period is not checked here (see Certificate.NotAfter).
func (s *Signature) Verify(pcr0 []byte) (string, error) {
	msg, err := cose.Parse(s.COSE, nil)
	if err != nil {
		return "", fmt.Errorf("eif: signature: COSE_Sign1: %w", err)
	}
	hdr, err := cose.ParseProtected(msg.Protected, nil)
	if err != nil {
		return "", fmt.Errorf("eif: signature: protected header: %w", err)
	}
	alg := hdr.Alg
	pub, ok := s.Certificate.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return "", fmt.Errorf("eif: signature: certificate has a %T key, want ECDSA", s.Certificate.PublicKey)
	}
	if want, err := curveAlgorithm(pub.Curve); err != nil || want != alg {
		return "", fmt.Errorf("eif: signature: algorithm %s does not fit the certificate's key", algName(alg))
	}
	h := algHash(alg).New()
	h.Write(cose.SigStructure(msg.Protected, msg.Payload))
	if !cose.VerifyECDSA(pub, h.Sum(nil), msg.Signature) {
		return "", errors.New("eif: signature does not verify with the signing certificate")
	}
	idx, val, err := decodePCRInfo(msg.Payload)
	if err != nil {
		return "", fmt.Errorf("eif: signature payload: %w", err)
	}
	if idx != 0 {
		return "", fmt.Errorf("eif: signature covers PCR%d, want PCR0", idx)
	}
	if !bytes.Equal(val, pcr0) {
		return "", fmt.Errorf("eif: signature covers PCR0 %x, the image's PCR0 is %x", val, pcr0)
	}
	return algName(alg), nil
}

// The serde encodings of the signature section and its payload, in the
// project's CBOR (internal/cbor). Writing is minimal-length; reading
// accepts only what QEMU's libcbor-based reader accepts: definite lengths,
// bytes as unsigned integers of at most one byte after the initial byte.

// byteArray appends p the way serde encodes Vec<u8>: an array of uints.
func byteArray(w *cbor.Writer, p []byte) {
	w.Head(cbor.MajorArray, uint64(len(p)))
	for _, x := range p {
		w.Head(cbor.MajorUint, uint64(x))
	}
}

func encodeSignatureSection(certPEM, coseSign1 []byte) []byte {
	w := &cbor.Writer{}
	w.Head(cbor.MajorArray, 1)
	w.Head(cbor.MajorMap, 2)
	w.TextString("signing_certificate")
	byteArray(w, certPEM)
	w.TextString("signature")
	byteArray(w, coseSign1)
	return w.B
}

func encodePCRInfo(index int, value []byte) []byte {
	w := &cbor.Writer{}
	w.Head(cbor.MajorMap, 2)
	w.TextString("register_index")
	w.Head(cbor.MajorUint, uint64(index))
	w.TextString("register_value")
	byteArray(w, value)
	return w.B
}

// definite reads the head of a definite-length array or map.
func definite(r *cbor.Reader, major byte) (uint64, error) {
	h, err := r.Container(major)
	if err != nil {
		return 0, err
	}
	if h.Indef {
		return 0, r.Errorf("indefinite length")
	}
	return h.Arg, nil
}

// readByteArray reads an array of uints that each fit one byte and are
// encoded in at most two bytes (libcbor's CBOR_INT_8 width, which QEMU
// requires).
func readByteArray(r *cbor.Reader) ([]byte, error) {
	n, err := definite(r, cbor.MajorArray)
	if err != nil {
		return nil, err
	}
	out := make([]byte, n) // Container checked n against the bytes left
	for i := range out {
		h, err := r.Head()
		if err != nil {
			return nil, err
		}
		if h.Major != cbor.MajorUint || h.Width > 1 || h.Arg > 0xff {
			return nil, fmt.Errorf("CBOR: element %d is not a one-byte unsigned integer", i)
		}
		out[i] = byte(h.Arg)
	}
	return out, nil
}

func key(r *cbor.Reader, want string) error {
	k, err := r.TextString()
	if err != nil {
		return err
	}
	if k != want {
		return fmt.Errorf("key %q, want %q", k, want)
	}
	return nil
}

func pcrSignature(r *cbor.Reader) (cert, sig []byte, err error) {
	n, err := definite(r, cbor.MajorMap)
	if err != nil {
		return nil, nil, err
	}
	if n != 2 {
		return nil, nil, fmt.Errorf("map of %d entries, want 2", n)
	}
	if err := key(r, "signing_certificate"); err != nil {
		return nil, nil, err
	}
	if cert, err = readByteArray(r); err != nil {
		return nil, nil, fmt.Errorf("signing_certificate: %w", err)
	}
	if len(cert) == 0 {
		return nil, nil, errors.New("empty signing_certificate")
	}
	if err := key(r, "signature"); err != nil {
		return nil, nil, err
	}
	if sig, err = readByteArray(r); err != nil {
		return nil, nil, fmt.Errorf("signature: %w", err)
	}
	return cert, sig, nil
}

func decodePCRInfo(b []byte) (int64, []byte, error) {
	r := cbor.NewReader(b, nil)
	n, err := definite(r, cbor.MajorMap)
	if err != nil {
		return 0, nil, err
	}
	if n != 2 {
		return 0, nil, fmt.Errorf("map of %d entries, want 2", n)
	}
	if err := key(r, "register_index"); err != nil {
		return 0, nil, err
	}
	idx, _, err := r.Int()
	if err != nil || idx < -1<<31 || idx > 1<<31-1 {
		return 0, nil, errors.New("register_index is not an i32")
	}
	if err := key(r, "register_value"); err != nil {
		return 0, nil, err
	}
	val, err := readByteArray(r)
	if err != nil {
		return 0, nil, fmt.Errorf("register_value: %w", err)
	}
	if r.Remaining() != 0 {
		return 0, nil, errors.New("trailing bytes")
	}
	return idx, val, nil
}
