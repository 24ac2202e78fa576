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
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"

	"github.com/qtenclave/enclave/qtsm/pcr"
	"github.com/veraison/go-cose"
)

// maxSignatureSize caps the signature section read into memory.
const maxSignatureSize = 1 << 20

// Signer signs images: it holds the signing certificate (stored in the
// image as given, PEM) and the matching ECDSA private key.
type Signer struct {
	certPEM []byte
	cert    *x509.Certificate
	key     crypto.Signer
	alg     cose.Algorithm

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
func (s *Signer) Algorithm() string { return s.alg.String() }

// PCR8 returns the PCR8 value of images signed by s.
func (s *Signer) PCR8() []byte { return certPCR(s.cert) }

// SignatureSection returns the signature section for an image whose PCR0
// is pcr0.
func (s *Signer) SignatureSection(pcr0 []byte) ([]byte, error) {
	payload := encodePCRInfo(0, pcr0)
	msg := cose.UntaggedSign1Message{
		Headers: cose.Headers{Protected: cose.ProtectedHeader{cose.HeaderLabelAlgorithm: s.alg}},
		Payload: payload,
	}
	if err := msg.Sign(nil, nil, &coseSigner{s: s}); err != nil {
		return nil, fmt.Errorf("eif: sign PCR0: %w", err)
	}
	sig, err := msg.MarshalCBOR()
	if err != nil {
		return nil, fmt.Errorf("eif: encode COSE_Sign1: %w", err)
	}
	return encodeSignatureSection(s.certPEM, sig), nil
}

// coseSigner adapts a crypto.Signer to go-cose, producing the fixed-size
// r||s form COSE wants.
type coseSigner struct{ s *Signer }

func (c *coseSigner) Algorithm() cose.Algorithm { return c.s.alg }

func (c *coseSigner) Sign(_ io.Reader, content []byte) ([]byte, error) {
	h := algHash(c.s.alg)
	d := h.New()
	d.Write(content)
	digest := d.Sum(nil)
	rnd := c.s.Rand
	if _, ok := c.s.key.(*ecdsa.PrivateKey); rnd == nil && !ok {
		rnd = rand.Reader
	}
	der, err := c.s.key.Sign(rnd, digest, h)
	if err != nil {
		return nil, err
	}
	var sig struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &sig); err != nil || len(rest) != 0 {
		return nil, errors.New("signer returned a malformed ECDSA signature")
	}
	n := (c.s.cert.PublicKey.(*ecdsa.PublicKey).Curve.Params().BitSize + 7) / 8
	out := make([]byte, 2*n)
	sig.R.FillBytes(out[:n])
	sig.S.FillBytes(out[n:])
	return out, nil
}

func algHash(a cose.Algorithm) crypto.Hash {
	switch a {
	case cose.AlgorithmES256:
		return crypto.SHA256
	case cose.AlgorithmES384:
		return crypto.SHA384
	}
	return crypto.SHA512
}

func curveAlgorithm(c elliptic.Curve) (cose.Algorithm, error) {
	switch c {
	case elliptic.P256():
		return cose.AlgorithmES256, nil
	case elliptic.P384():
		return cose.AlgorithmES384, nil
	case elliptic.P521():
		return cose.AlgorithmES512, nil
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
	r := &cborReader{b: data}
	n, err := r.expect(cborArray)
	if err != nil {
		return nil, invalid(ErrSignature, "%v", err)
	}
	if n == 0 {
		return nil, invalid(ErrSignature, "no PCR signature")
	}
	var sig Signature
	for i := uint64(0); i < n; i++ {
		cert, cs, err := r.pcrSignature()
		if err != nil {
			return nil, invalid(ErrSignature, "entry %d: %v", i, err)
		}
		if i == 0 {
			sig.CertificatePEM, sig.COSE = cert, cs
		}
	}
	if r.p != len(r.b) {
		return nil, invalid(ErrSignature, "%d trailing bytes", len(r.b)-r.p)
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
	var msg cose.Sign1Message
	var err error
	if len(s.COSE) > 0 && s.COSE[0] == 0x84 {
		err = (*cose.UntaggedSign1Message)(&msg).UnmarshalCBOR(s.COSE)
	} else {
		err = msg.UnmarshalCBOR(s.COSE)
	}
	if err != nil {
		return "", fmt.Errorf("eif: signature: COSE_Sign1: %w", err)
	}
	alg, err := msg.Headers.Protected.Algorithm()
	if err != nil {
		return "", fmt.Errorf("eif: signature: %w", err)
	}
	pub, ok := s.Certificate.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return "", fmt.Errorf("eif: signature: certificate has a %T key, want ECDSA", s.Certificate.PublicKey)
	}
	if want, err := curveAlgorithm(pub.Curve); err != nil || want != alg {
		return "", fmt.Errorf("eif: signature: algorithm %v does not fit the certificate's key", alg)
	}
	v, err := cose.NewVerifier(alg, pub)
	if err != nil {
		return "", fmt.Errorf("eif: signature: %w", err)
	}
	if err := msg.Verify(nil, v); err != nil {
		return "", fmt.Errorf("eif: signature does not verify with the signing certificate: %w", err)
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
	return alg.String(), nil
}

// CBOR, just enough for the serde encodings of the signature section and
// its payload. Writing is minimal-length; reading accepts only what QEMU's
// libcbor-based reader accepts: definite lengths, bytes as 1-byte uints.

const (
	cborUint  = 0
	cborNeg   = 1
	cborText  = 3
	cborArray = 4
	cborMap   = 5
)

func cborHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xff:
		return append(b, m|24, byte(n))
	case n <= 0xffff:
		return append(b, m|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return append(b, m|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	b = append(b, m|27)
	for s := 56; s >= 0; s -= 8 {
		b = append(b, byte(n>>s))
	}
	return b
}

func cborTextString(b []byte, s string) []byte {
	return append(cborHead(b, cborText, uint64(len(s))), s...)
}

// cborByteArray encodes p the way serde encodes Vec<u8>: an array of uints.
func cborByteArray(b []byte, p []byte) []byte {
	b = cborHead(b, cborArray, uint64(len(p)))
	for _, x := range p {
		b = cborHead(b, cborUint, uint64(x))
	}
	return b
}

func encodeSignatureSection(certPEM, coseSign1 []byte) []byte {
	b := cborHead(nil, cborArray, 1)
	b = cborHead(b, cborMap, 2)
	b = cborTextString(b, "signing_certificate")
	b = cborByteArray(b, certPEM)
	b = cborTextString(b, "signature")
	return cborByteArray(b, coseSign1)
}

func encodePCRInfo(index int, value []byte) []byte {
	b := cborHead(nil, cborMap, 2)
	b = cborTextString(b, "register_index")
	b = cborHead(b, cborUint, uint64(index))
	b = cborTextString(b, "register_value")
	return cborByteArray(b, value)
}

type cborReader struct {
	b []byte
	p int
}

var errCBORShort = errors.New("CBOR: unexpected end of data")

func (r *cborReader) head() (major byte, arg uint64, err error) {
	if r.p >= len(r.b) {
		return 0, 0, errCBORShort
	}
	ib := r.b[r.p]
	r.p++
	major, ai := ib>>5, ib&0x1f
	switch {
	case ai < 24:
		return major, uint64(ai), nil
	case ai <= 27:
		n := 1 << (ai - 24)
		if len(r.b)-r.p < n {
			return 0, 0, errCBORShort
		}
		for _, x := range r.b[r.p : r.p+n] {
			arg = arg<<8 | uint64(x)
		}
		r.p += n
		return major, arg, nil
	}
	return 0, 0, fmt.Errorf("CBOR: unsupported additional information %d (indefinite length?)", ai)
}

func (r *cborReader) expect(major byte) (uint64, error) {
	m, n, err := r.head()
	if err != nil {
		return 0, err
	}
	if m != major {
		return 0, fmt.Errorf("CBOR: major type %d, want %d", m, major)
	}
	return n, nil
}

func (r *cborReader) text() (string, error) {
	n, err := r.expect(cborText)
	if err != nil {
		return "", err
	}
	if n > uint64(len(r.b)-r.p) {
		return "", errCBORShort
	}
	s := string(r.b[r.p : r.p+int(n)])
	r.p += int(n)
	return s, nil
}

// byteArray reads an array of uints that each fit one byte and are encoded
// in at most two bytes (libcbor's CBOR_INT_8 width, which QEMU requires).
func (r *cborReader) byteArray() ([]byte, error) {
	n, err := r.expect(cborArray)
	if err != nil {
		return nil, err
	}
	if n > uint64(len(r.b)-r.p) { // every element takes at least one byte
		return nil, errCBORShort
	}
	out := make([]byte, n)
	for i := range out {
		if r.p >= len(r.b) {
			return nil, errCBORShort
		}
		ib := r.b[r.p]
		switch {
		case ib < 24:
			out[i] = ib
			r.p++
		case ib == 24:
			if r.p+1 >= len(r.b) {
				return nil, errCBORShort
			}
			out[i] = r.b[r.p+1]
			r.p += 2
		default:
			return nil, fmt.Errorf("CBOR: element %d is not a one-byte unsigned integer", i)
		}
	}
	return out, nil
}

func (r *cborReader) key(want string) error {
	k, err := r.text()
	if err != nil {
		return err
	}
	if k != want {
		return fmt.Errorf("key %q, want %q", k, want)
	}
	return nil
}

func (r *cborReader) pcrSignature() (cert, sig []byte, err error) {
	n, err := r.expect(cborMap)
	if err != nil {
		return nil, nil, err
	}
	if n != 2 {
		return nil, nil, fmt.Errorf("map of %d entries, want 2", n)
	}
	if err := r.key("signing_certificate"); err != nil {
		return nil, nil, err
	}
	if cert, err = r.byteArray(); err != nil {
		return nil, nil, fmt.Errorf("signing_certificate: %w", err)
	}
	if len(cert) == 0 {
		return nil, nil, errors.New("empty signing_certificate")
	}
	if err := r.key("signature"); err != nil {
		return nil, nil, err
	}
	if sig, err = r.byteArray(); err != nil {
		return nil, nil, fmt.Errorf("signature: %w", err)
	}
	return cert, sig, nil
}

func decodePCRInfo(b []byte) (int64, []byte, error) {
	r := &cborReader{b: b}
	n, err := r.expect(cborMap)
	if err != nil {
		return 0, nil, err
	}
	if n != 2 {
		return 0, nil, fmt.Errorf("map of %d entries, want 2", n)
	}
	if err := r.key("register_index"); err != nil {
		return 0, nil, err
	}
	m, v, err := r.head()
	if err != nil {
		return 0, nil, err
	}
	var idx int64
	switch {
	case m == cborUint && v <= 1<<31-1:
		idx = int64(v)
	case m == cborNeg && v < 1<<31:
		idx = -1 - int64(v)
	default:
		return 0, nil, errors.New("register_index is not an i32")
	}
	if err := r.key("register_value"); err != nil {
		return 0, nil, err
	}
	val, err := r.byteArray()
	if err != nil {
		return 0, nil, fmt.Errorf("register_value: %w", err)
	}
	if r.p != len(r.b) {
		return 0, nil, errors.New("trailing bytes")
	}
	return idx, val, nil
}
