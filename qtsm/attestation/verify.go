package attestation

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/qtenclave/enclave/internal/cose"
	"github.com/qtenclave/enclave/qtsm"
)

// SignatureEncoding is how the two 48-byte halves (r, s) of an ES384
// signature are written.
type SignatureEncoding int

// Signature encodings.
const (
	// BigEndian is COSE's (RFC 8152) encoding, used by AWS.
	BigEndian SignatureEncoding = iota + 1
	// LittleEndian: each half byte-reversed, as Qingtian's module writes it.
	LittleEndian
)

func (e SignatureEncoding) String() string {
	switch e {
	case BigEndian:
		return "big-endian"
	case LittleEndian:
		return "little-endian"
	}
	return "none"
}

// encodingOf is the signature encoding of a vendor's documents.
func encodingOf(v qtsm.Vendor) SignatureEncoding {
	if v == qtsm.VendorQingtian {
		return LittleEndian
	}
	return BigEndian
}

// QingtianMaxAge is the age limit Huawei's own verifier applies to
// documents; a good Options.MaxAge for fresh documents of either vendor.
const QingtianMaxAge = 15 * time.Minute

// DefaultClockSkew is the tolerated lead of a document's timestamp over the
// verification time.
const DefaultClockSkew = time.Minute

// Options control Verify. The zero value verifies the signature and chain
// against both vendors' embedded roots at the current time and refuses
// debug-mode and unsigned documents.
type Options struct {
	// Roots are the trusted roots; nil means the embedded root of Vendor
	// (both embedded roots when Vendor is VendorUnknown).
	Roots []Root
	// Vendor, if set, requires the document's layout to be that vendor's
	// and its signature to use that vendor's encoding. VendorUnknown
	// (auto) accepts either layout and tries the layout's encoding first,
	// then the other.
	Vendor qtsm.Vendor

	// Time is the verification time; zero means time.Now().
	Time time.Time
	// DocumentTime verifies at the document's own timestamp instead (for
	// stored documents, whose leaf certificate lives only hours).
	DocumentTime bool
	// MaxAge, if positive, refuses a document whose timestamp is more than
	// MaxAge before the verification time (Huawei's verifier: QingtianMaxAge).
	MaxAge time.Duration
	// ClockSkew is how far a document's timestamp may lead the
	// verification time; a document from further in the future is refused
	// whether or not MaxAge is set. 0 means DefaultClockSkew; negative
	// turns the check off.
	ClockSkew time.Duration

	// ExpectPCRs lists PCRs that must be present with these values.
	ExpectPCRs map[int][]byte
	// ExpectNonce, ExpectUserData and ExpectPublicKey, when non-nil, must
	// equal the document's field (an empty slice matches an absent field).
	ExpectNonce     []byte
	ExpectUserData  []byte
	ExpectPublicKey []byte

	// AllowDebug accepts a debug-mode enclave (PCR0 zero or absent).
	AllowDebug bool
	// AllowUnsigned accepts an emulator's unsigned document (no signature,
	// no chain: only the policy checks apply). Never set it in production.
	AllowUnsigned bool
}

// Result describes a verified document.
type Result struct {
	Document *Document
	// Vendor is the document's dialect.
	Vendor qtsm.Vendor
	// Time is the time the chain and age were checked at.
	Time time.Time
	// Root is the trusted root the chain ends in (zero if Unsigned).
	Root Root
	// Chain is the verified chain, leaf first, root last (nil if Unsigned).
	Chain []*x509.Certificate
	// Encoding is the signature encoding that verified (0 if Unsigned).
	Encoding SignatureEncoding
	// Debug: the enclave is in debug mode (accepted by AllowDebug).
	Debug bool
	// Unsigned: the document is an emulator's (accepted by AllowUnsigned).
	Unsigned bool
}

// VerifyBytes parses and verifies a document.
func VerifyBytes(b []byte, opts Options) (*Result, error) {
	d, err := Parse(b)
	if err != nil {
		return nil, err
	}
	return Verify(d, opts)
}

// Verify checks a parsed document: the vendor, the ES384 signature over the
// raw protected header and payload, the certificate chain to a trusted root
// at the verification time, the document's age, debug mode and the expected
// values in opts. It returns the first failure.
func Verify(d *Document, opts Options) (*Result, error) {
	if d == nil {
		return nil, fmt.Errorf("%w: nil document", ErrMalformed)
	}
	if opts.Vendor != qtsm.VendorUnknown && d.Vendor != opts.Vendor {
		return nil, fmt.Errorf("%w: document layout is %s, want %s", ErrVendor, d.Vendor, opts.Vendor)
	}
	res := &Result{Document: d, Vendor: d.Vendor, Time: opts.Time, Debug: d.Debug(), Unsigned: d.Unsigned()}
	switch {
	case opts.DocumentTime:
		res.Time = d.Timestamp
	case res.Time.IsZero():
		res.Time = time.Now()
	}

	if res.Unsigned {
		if !opts.AllowUnsigned {
			return nil, fmt.Errorf("%w: alg %d, %d-byte signature of zeros; only an emulator sends this", ErrUnsigned, d.Algorithm, len(d.Signature))
		}
	} else if err := verifyCrypto(d, opts, res); err != nil {
		return nil, err
	}

	age := res.Time.Sub(d.Timestamp)
	if opts.MaxAge > 0 && age > opts.MaxAge {
		return nil, fmt.Errorf("%w: timestamp %s is %s before %s, limit %s", ErrTooOld,
			d.Timestamp.Format(time.RFC3339Nano), age.Round(time.Millisecond), res.Time.Format(time.RFC3339), opts.MaxAge)
	}
	skew := opts.ClockSkew
	if skew == 0 {
		skew = DefaultClockSkew
	}
	if skew > 0 && -age > skew {
		return nil, fmt.Errorf("%w: timestamp %s is %s after %s", ErrFuture,
			d.Timestamp.Format(time.RFC3339Nano), (-age).Round(time.Millisecond), res.Time.Format(time.RFC3339))
	}
	if res.Debug && !opts.AllowDebug {
		return nil, fmt.Errorf("%w: PCR0 is zero or absent", ErrDebug)
	}
	if err := checkExpected(d, opts); err != nil {
		return nil, err
	}
	return res, nil
}

func verifyCrypto(d *Document, opts Options, res *Result) error {
	if d.Algorithm != AlgES384 {
		return fmt.Errorf("%w: alg %d, want %d (ES384)", ErrAlgorithm, d.Algorithm, AlgES384)
	}
	if len(d.Signature) != 2*p384Size {
		return fmt.Errorf("%w: signature is %d bytes, want %d", ErrSignature, len(d.Signature), 2*p384Size)
	}
	leaf, err := x509.ParseCertificate(d.Certificate)
	if err != nil {
		return fmt.Errorf("%w: leaf certificate: %v", ErrChain, err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P384() {
		return fmt.Errorf("%w: leaf %q has a %s key", ErrLeafKey, leaf.Subject.CommonName, leaf.PublicKeyAlgorithm)
	}

	// The signature first: it is the cheaper check and covers every byte
	// of the payload, certificates included.
	encs := []SignatureEncoding{encodingOf(d.Vendor)}
	if opts.Vendor == qtsm.VendorUnknown {
		encs = append(encs, encodingOf(otherVendor(d.Vendor)))
	}
	digest := sha512.Sum384(cose.SigStructure(d.Protected, d.Payload))
	for _, e := range encs {
		r, s := signatureInts(d.Signature, e)
		if ecdsa.Verify(pub, digest[:], r, s) {
			res.Encoding = e
			break
		}
	}
	if res.Encoding == 0 {
		return fmt.Errorf("%w: ES384 with the leaf key of %q (tried %v)", ErrSignature, leaf.Subject.CommonName, encs)
	}

	roots := opts.Roots
	if roots == nil {
		roots = DefaultRoots(opts.Vendor)
	}
	chain, root, err := verifyChain(d, leaf, roots, res.Time)
	if err != nil {
		return err
	}
	res.Chain, res.Root = chain, root
	return nil
}

func otherVendor(v qtsm.Vendor) qtsm.Vendor {
	if v == qtsm.VendorQingtian {
		return qtsm.VendorNitro
	}
	return qtsm.VendorQingtian
}

const p384Size = 48

// signatureInts splits a 96-byte signature into r and s.
func signatureInts(sig []byte, e SignatureEncoding) (*big.Int, *big.Int) {
	var r, s [p384Size]byte
	copy(r[:], sig[:p384Size])
	copy(s[:], sig[p384Size:])
	if e == LittleEndian {
		slices.Reverse(r[:])
		slices.Reverse(s[:])
	}
	return new(big.Int).SetBytes(r[:]), new(big.Int).SetBytes(s[:])
}

// verifyChain verifies leaf up through the cabundle (root first, then
// intermediates) to one of roots, at time at.
func verifyChain(d *Document, leaf *x509.Certificate, roots []Root, at time.Time) ([]*x509.Certificate, Root, error) {
	if len(roots) == 0 {
		return nil, Root{}, fmt.Errorf("%w: no trusted roots", ErrChain)
	}
	if err := checkValidity("leaf", leaf, at); err != nil {
		return nil, Root{}, err
	}
	rootPool := x509.NewCertPool()
	for i, r := range roots {
		if r.Cert == nil {
			return nil, Root{}, fmt.Errorf("%w: trusted root %d has no certificate", ErrChain, i)
		}
		rootPool.AddCert(r.Cert)
	}
	inter := x509.NewCertPool()
	for i, der := range d.CABundle {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, Root{}, fmt.Errorf("%w: cabundle[%d]: %v", ErrChain, i, err)
		}
		if err := checkValidity(fmt.Sprintf("cabundle[%d]", i), c, at); err != nil {
			return nil, Root{}, err
		}
		if !slices.ContainsFunc(roots, func(r Root) bool { return bytes.Equal(r.Cert.Raw, der) }) {
			inter.AddCert(c)
		}
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         rootPool,
		Intermediates: inter,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return nil, Root{}, fmt.Errorf("%w: %v", ErrExpired, err)
		}
		return nil, Root{}, fmt.Errorf("%w: %v", ErrChain, err)
	}
	chain := chains[0]
	top := chain[len(chain)-1]
	for _, r := range roots {
		if r.Cert.Equal(top) {
			return chain, r, nil
		}
	}
	return chain, RootOf(top), nil
}

func checkValidity(what string, c *x509.Certificate, at time.Time) error {
	if at.Before(c.NotBefore) || at.After(c.NotAfter) {
		return fmt.Errorf("%w: %s %q is valid from %s to %s, not at %s", ErrExpired, what,
			c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	}
	return nil
}

func checkExpected(d *Document, opts Options) error {
	idx := make([]int, 0, len(opts.ExpectPCRs))
	for i := range opts.ExpectPCRs {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	for _, i := range idx {
		want := opts.ExpectPCRs[i]
		got, ok := d.PCRs[i]
		if !ok {
			return fmt.Errorf("%w: PCR%d absent, want %x", ErrPCRMismatch, i, want)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%w: PCR%d = %x, want %x", ErrPCRMismatch, i, got, want)
		}
	}
	for _, f := range []struct {
		name      string
		want, got []byte
		err       error
	}{
		{"nonce", opts.ExpectNonce, d.Nonce, ErrNonceMismatch},
		{"user_data", opts.ExpectUserData, d.UserData, ErrUserDataMismatch},
		{"public_key", opts.ExpectPublicKey, d.PublicKey, ErrPublicKeyMismatch},
	} {
		if f.want != nil && !bytes.Equal(f.want, f.got) {
			return fmt.Errorf("%w: %s = %x, want %x", f.err, f.name, f.got, f.want)
		}
	}
	return nil
}
