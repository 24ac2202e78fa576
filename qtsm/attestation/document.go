package attestation

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/qtenclave/enclave/internal/cbor"
	"github.com/qtenclave/enclave/internal/cose"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/pcr"
)

// Limits enforced by Parse. The first three are the secure module's own
// limits (and AWS's published verifier rules).
const (
	MaxUserData    = qtsm.MaxUserData  // 512
	MaxNonce       = qtsm.MaxNonce     // 512
	MaxPublicKey   = qtsm.MaxPublicKey // 1024
	MaxPCRs        = pcr.Count         // 32 entries, indexes 0..31
	MaxCertificate = 4096              // per DER certificate (real ones are < 1 KiB)
	MaxCABundle    = 16                // certificates in cabundle (real chains: 4)
	MaxModuleID    = 256
	MaxSignature   = 512
	// MaxDocument bounds the whole input: the device's largest response
	// buffer (QTSM's 0x6000) is far more than a document needs.
	MaxDocument = 1 << 16
)

// COSE algorithm identifiers seen in attestation documents.
const (
	AlgES384 = -35 // ECDSA P-384 with SHA-384: every signed document
	// AlgQEMUUnsigned is what QEMU's virtio-nsm puts in its protected
	// header ({1: -1}) for documents it does not sign.
	AlgQEMUUnsigned = -1
)

// Digest algorithms a document may name, with their PCR sizes.
var digestSizes = map[string]int{"SHA256": 32, "SHA384": 48, "SHA512": 64}

// Document is a parsed attestation document. Byte fields alias the input of
// Parse.
type Document struct {
	ModuleID string
	// Digest names the PCR hash: "SHA384" on every known module.
	Digest string
	// Timestamp is TimestampMillis as a time (UTC).
	Timestamp       time.Time
	TimestampMillis uint64
	// PCRs maps register index to value.
	PCRs map[int][]byte
	// Certificate is the leaf certificate (DER) whose key signs the document.
	Certificate []byte
	// CABundle is the chain above the leaf, root first (DER).
	CABundle [][]byte
	// PublicKey, UserData and Nonce are the caller-supplied fields. nil
	// means absent (CBOR null, AWS's encoding, or the key missing); an empty
	// non-nil slice is an empty byte string (Qingtian's encoding of absent).
	PublicKey []byte
	UserData  []byte
	Nonce     []byte

	// Vendor is the dialect the layout shows (see Layout); never
	// VendorUnknown for a parsed document.
	Vendor qtsm.Vendor
	// Layout records how the document was encoded.
	Layout Layout

	// Algorithm is the protected header's alg (AlgES384 when signed).
	Algorithm int64
	// Protected, Payload and Signature are the raw contents of the
	// COSE_Sign1 byte strings. Protected and Payload are what was signed.
	Protected []byte
	Payload   []byte
	Signature []byte
}

// Layout records the encoding choices a document shows; the vendors differ
// in each of them (see package documentation).
type Layout struct {
	// Tagged: the COSE_Sign1 carried CBOR tag 18.
	Tagged bool
	// Keys are the payload map's keys in document order.
	Keys []string
	// Unknown are keys this package does not know (ignored, but signed).
	Unknown []string
	// IndefiniteMap: the payload map had indefinite length.
	IndefiniteMap bool
	// NullFields and EmptyFields list the optional fields (public_key,
	// user_data, nonce) encoded as CBOR null and as empty byte strings.
	NullFields  []string
	EmptyFields []string
	// PublicKeyName is the key the public key came under: "public_key" or
	// Huawei's documented "pubkey" ("" when absent).
	PublicKeyName string
	// MinimalProtected: every integer in the protected header was minimally
	// encoded (AWS); Qingtian uses 4-byte integers there.
	MinimalProtected bool
	// MinimalTimestamp: the timestamp was minimally encoded.
	MinimalTimestamp bool
	// PCRKeyWidth is the widest encoding of a PCR index seen: 0 when all
	// fitted the initial byte (AWS), 2 for Qingtian's 2-byte keys.
	PCRKeyWidth int
	// MinimalPCRKeys: every PCR index was minimally encoded.
	MinimalPCRKeys bool
}

// Unsigned reports whether d is an emulator's unsigned document: QEMU's
// virtio-nsm writes alg -1 and a signature of zero bytes.
func (d *Document) Unsigned() bool {
	return d.Algorithm == AlgQEMUUnsigned || allZero(d.Signature)
}

// Debug reports whether d comes from a debug-mode enclave: PCR0 reads as
// all zero (the module zeroes PCR0-2 in debug mode), or is absent, which
// leaves the image unattested just the same.
func (d *Document) Debug() bool {
	v, ok := d.PCRs[0]
	return !ok || allZero(v)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Parse parses an attestation document: a COSE_Sign1, untagged or with tag
// 18, in either vendor's dialect. It checks structure and limits only; use
// Verify for the signature, chain and policy.
func Parse(b []byte) (*Document, error) {
	if len(b) > MaxDocument {
		return nil, fmt.Errorf("%w: document is %d bytes, limit %d", ErrTooLarge, len(b), MaxDocument)
	}
	m, err := cose.Parse(b, ErrMalformed)
	if err != nil {
		return nil, err
	}
	if !m.UnprotectedEmpty() {
		// Both vendors send {}, and nothing outside the signature should
		// carry meaning.
		return nil, fmt.Errorf("%w: unprotected header must be empty", ErrMalformed)
	}
	d := &Document{Protected: m.Protected, Payload: m.Payload, Signature: m.Signature}
	d.Layout.Tagged = m.Tagged
	if len(d.Signature) == 0 || len(d.Signature) > MaxSignature {
		return nil, fmt.Errorf("%w: signature is %d bytes", ErrMalformed, len(d.Signature))
	}
	if err := d.parseProtected(); err != nil {
		return nil, fmt.Errorf("protected header: %w", err)
	}
	if err := d.parsePayload(); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return d, nil
}

func (d *Document) parseProtected() error {
	h, err := cose.ParseProtected(d.Protected, ErrMalformed)
	if err != nil {
		return err
	}
	d.Algorithm, d.Layout.MinimalProtected = h.Alg, h.Minimal
	return nil
}

// Payload keys.
const (
	keyModuleID    = "module_id"
	keyDigest      = "digest"
	keyTimestamp   = "timestamp"
	keyPCRs        = "pcrs"
	keyCertificate = "certificate"
	keyCABundle    = "cabundle"
	keyPublicKey   = "public_key"
	keyPubKey      = "pubkey" // Huawei's documentation's name for public_key
	keyUserData    = "user_data"
	keyNonce       = "nonce"
)

func (d *Document) parsePayload() error {
	r := cbor.NewReader(d.Payload, ErrMalformed)
	h, err := r.Container(cbor.MajorMap)
	if err != nil {
		return err
	}
	d.Layout.IndefiniteMap = h.Indef
	seen := map[string]bool{}
	if err := r.Each(h, func() error {
		k, err := r.TextString()
		if err != nil {
			return fmt.Errorf("key: %w", err)
		}
		if seen[k] {
			return r.Errorf("duplicate key %q", k)
		}
		seen[k] = true
		d.Layout.Keys = append(d.Layout.Keys, k)
		return d.field(r, k)
	}); err != nil {
		return err
	}
	if r.Remaining() != 0 {
		return r.Errorf("%d trailing bytes after the payload map", r.Remaining())
	}
	for _, k := range []string{keyModuleID, keyDigest, keyTimestamp, keyPCRs, keyCertificate, keyCABundle} {
		if !seen[k] {
			return fmt.Errorf("%w: missing %s", ErrMalformed, k)
		}
	}
	if seen[keyPublicKey] && seen[keyPubKey] {
		return fmt.Errorf("%w: both public_key and pubkey present", ErrMalformed)
	}
	size := digestSizes[d.Digest]
	for i, v := range d.PCRs {
		if len(v) != size {
			return fmt.Errorf("%w: PCR%d is %d bytes, digest %s makes %d", ErrMalformed, i, len(v), d.Digest, size)
		}
	}
	// The vendors' key orders differ at timestamp/digest: AWS writes
	// digest first, Qingtian timestamp first. Both keys are mandatory, so
	// every parsed document has a vendor.
	d.Vendor = qtsm.VendorNitro
	if slices.Index(d.Layout.Keys, keyTimestamp) < slices.Index(d.Layout.Keys, keyDigest) {
		d.Vendor = qtsm.VendorQingtian
	}
	return nil
}

// field parses the value of payload key k.
func (d *Document) field(r *cbor.Reader, k string) error {
	wrap := func(err error) error {
		if err == nil {
			return nil
		}
		return fmt.Errorf("%s: %w", k, err)
	}
	switch k {
	case keyModuleID:
		s, err := r.TextString()
		if err != nil {
			return wrap(err)
		}
		if s == "" || len(s) > MaxModuleID {
			return fmt.Errorf("%w: module_id is %d bytes, want 1..%d", ErrMalformed, len(s), MaxModuleID)
		}
		d.ModuleID = s
	case keyDigest:
		s, err := r.TextString()
		if err != nil {
			return wrap(err)
		}
		if _, ok := digestSizes[s]; !ok {
			return fmt.Errorf("%w: digest %.32q, want SHA256, SHA384 or SHA512", ErrMalformed, s)
		}
		d.Digest = s
	case keyTimestamp:
		ms, h, err := r.Uint()
		if err != nil {
			return wrap(err)
		}
		if ms == 0 || ms > math.MaxInt64 {
			return fmt.Errorf("%w: timestamp %d out of range", ErrMalformed, ms)
		}
		d.TimestampMillis = ms
		d.Timestamp = time.UnixMilli(int64(ms)).UTC()
		d.Layout.MinimalTimestamp = h.Minimal
	case keyPCRs:
		return wrap(d.parsePCRs(r))
	case keyCertificate:
		c, _, err := r.ByteString()
		if err != nil {
			return wrap(err)
		}
		if err := certSize("certificate", c); err != nil {
			return err
		}
		d.Certificate = c
	case keyCABundle:
		return wrap(d.parseCABundle(r))
	case keyPublicKey, keyPubKey:
		v, err := d.optional(r, k, MaxPublicKey)
		if err != nil {
			return err
		}
		d.PublicKey = v
		d.Layout.PublicKeyName = k
	case keyUserData:
		v, err := d.optional(r, k, MaxUserData)
		if err != nil {
			return err
		}
		d.UserData = v
	case keyNonce:
		v, err := d.optional(r, k, MaxNonce)
		if err != nil {
			return err
		}
		d.Nonce = v
	default:
		d.Layout.Unknown = append(d.Layout.Unknown, k)
		return wrap(r.Skip(1))
	}
	return nil
}

func certSize(what string, c []byte) error {
	if len(c) == 0 || len(c) > MaxCertificate {
		return fmt.Errorf("%w: %s is %d bytes, want 1..%d", ErrTooLarge, what, len(c), MaxCertificate)
	}
	return nil
}

// optional parses a nullable byte string with a size limit. It returns nil
// for null and a non-nil slice otherwise.
func (d *Document) optional(r *cbor.Reader, k string, limit int) ([]byte, error) {
	if r.IsNull() {
		d.Layout.NullFields = append(d.Layout.NullFields, k)
		return nil, nil
	}
	v, _, err := r.ByteString()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k, err)
	}
	if len(v) > limit {
		return nil, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, k, len(v), limit)
	}
	if len(v) == 0 {
		d.Layout.EmptyFields = append(d.Layout.EmptyFields, k)
		v = []byte{}
	}
	return v, nil
}

func (d *Document) parsePCRs(r *cbor.Reader) error {
	h, err := r.Container(cbor.MajorMap)
	if err != nil {
		return err
	}
	n := h.Arg
	if !h.Indef && n > MaxPCRs {
		return fmt.Errorf("%w: %d PCRs, want 1..%d", ErrTooLarge, n, MaxPCRs)
	}
	d.PCRs = make(map[int][]byte, min(n, MaxPCRs))
	d.Layout.MinimalPCRKeys = true
	if err := r.Each(h, func() error {
		if len(d.PCRs) == MaxPCRs {
			return fmt.Errorf("%w: more than %d PCRs", ErrTooLarge, MaxPCRs)
		}
		i, kh, err := r.Uint()
		if err != nil {
			return fmt.Errorf("index: %w", err)
		}
		if i >= MaxPCRs {
			return fmt.Errorf("%w: PCR index %d, want < %d", ErrMalformed, i, MaxPCRs)
		}
		if _, dup := d.PCRs[int(i)]; dup {
			return fmt.Errorf("%w: duplicate PCR index %d", ErrMalformed, i)
		}
		d.Layout.PCRKeyWidth = max(d.Layout.PCRKeyWidth, kh.Width)
		d.Layout.MinimalPCRKeys = d.Layout.MinimalPCRKeys && kh.Minimal
		v, _, err := r.ByteString()
		if err != nil {
			return fmt.Errorf("PCR%d: %w", i, err)
		}
		if l := len(v); l != 32 && l != 48 && l != 64 {
			return fmt.Errorf("%w: PCR%d is %d bytes, want 32, 48 or 64", ErrMalformed, i, len(v))
		}
		d.PCRs[int(i)] = v
		return nil
	}); err != nil {
		return err
	}
	if len(d.PCRs) == 0 {
		return fmt.Errorf("%w: no PCRs", ErrMalformed)
	}
	return nil
}

func (d *Document) parseCABundle(r *cbor.Reader) error {
	h, err := r.Container(cbor.MajorArray)
	if err != nil {
		return err
	}
	n := h.Arg
	if !h.Indef && n > MaxCABundle {
		return fmt.Errorf("%w: cabundle has %d certificates, want 1..%d", ErrTooLarge, n, MaxCABundle)
	}
	d.CABundle = make([][]byte, 0, min(n, MaxCABundle))
	if err := r.Each(h, func() error {
		if len(d.CABundle) == MaxCABundle {
			return fmt.Errorf("%w: cabundle has more than %d certificates", ErrTooLarge, MaxCABundle)
		}
		c, _, err := r.ByteString()
		if err != nil {
			return fmt.Errorf("certificate %d: %w", len(d.CABundle), err)
		}
		if err := certSize(fmt.Sprintf("cabundle[%d]", len(d.CABundle)), c); err != nil {
			return err
		}
		d.CABundle = append(d.CABundle, c)
		return nil
	}); err != nil {
		return err
	}
	if len(d.CABundle) == 0 {
		return fmt.Errorf("%w: empty cabundle", ErrMalformed)
	}
	return nil
}
