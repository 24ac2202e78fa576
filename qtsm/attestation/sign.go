package attestation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"fmt"
	"io"
	"slices"

	"github.com/qtenclave/enclave/internal/cbor"
	"github.com/qtenclave/enclave/internal/cose"
	"github.com/qtenclave/enclave/qtsm"
)

// SignOptions control Sign.
type SignOptions struct {
	// Vendor is the dialect to write; VendorUnknown means the document's
	// Vendor, and Nitro if that is unknown too.
	Vendor qtsm.Vendor
	// Tagged wraps the COSE_Sign1 in CBOR tag 18 (neither vendor does).
	Tagged bool
	// Rand is the signing randomness; nil means crypto/rand.
	Rand io.Reader
	// Unsigned writes an emulator's document as QEMU's virtio-nsm does:
	// protected {1: -1} and a 64-byte zero signature; the key is not used.
	Unsigned bool
}

// Sign encodes d as an attestation document in a vendor's dialect and signs
// it with key (ECDSA P-384, the private key of d.Certificate):
//
//   - Nitro: protected {1: -35} minimally encoded; payload keys module_id,
//     digest, timestamp, pcrs, certificate, cabundle, public_key, user_data,
//     nonce; absent fields null; PCR indexes minimal; signature r||s
//     big-endian.
//   - Qingtian: protected {1: -35} with 4-byte integers; payload keys
//     module_id, timestamp, digest, pcrs, certificate, cabundle, user_data,
//     nonce, public_key; absent fields empty byte strings; PCR indexes as
//     2-byte integers; timestamp as an 8-byte integer; each half of the
//     signature little-endian.
//
// The fields used are ModuleID, Digest (default SHA384), TimestampMillis
// (or Timestamp when 0), PCRs, Certificate, CABundle, PublicKey, UserData
// and Nonce. The output is checked to parse.
func Sign(d *Document, key crypto.Signer, opts SignOptions) ([]byte, error) {
	vendor := opts.Vendor
	if vendor == qtsm.VendorUnknown {
		vendor = d.Vendor
	}
	if vendor == qtsm.VendorUnknown {
		vendor = qtsm.VendorNitro
	}
	payload, err := encodePayload(d, vendor)
	if err != nil {
		return nil, err
	}

	var protected, sig []byte
	switch {
	case opts.Unsigned:
		protected = []byte{0xa1, 0x01, 0x20} // {1: -1}
		sig = make([]byte, 64)
	case vendor == qtsm.VendorQingtian:
		protected = []byte{0xa1, 0x1a, 0, 0, 0, 1, 0x3a, 0, 0, 0, 0x22} // {1: -35}, 4-byte integers
	default:
		protected = []byte{0xa1, 0x01, 0x38, 0x22} // {1: -35}
	}
	if !opts.Unsigned {
		if key == nil {
			return nil, fmt.Errorf("attestation: sign: no key")
		}
		pub, ok := key.Public().(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P384() {
			return nil, fmt.Errorf("attestation: sign: %w", ErrLeafKey)
		}
		rnd := opts.Rand
		if rnd == nil {
			rnd = rand.Reader
		}
		digest := sha512.Sum384(cose.SigStructure(protected, payload))
		var err error
		if sig, err = cose.SignECDSA(key, rnd, digest[:], crypto.SHA384, p384Size); err != nil {
			return nil, fmt.Errorf("attestation: sign: %w", err)
		}
		if encodingOf(vendor) == LittleEndian {
			slices.Reverse(sig[:p384Size])
			slices.Reverse(sig[p384Size:])
		}
	}

	out := (&cose.Sign1{Tagged: opts.Tagged, Protected: protected, Payload: payload, Signature: sig}).Marshal()
	if _, err := Parse(out); err != nil {
		return nil, fmt.Errorf("attestation: sign: output does not parse: %w", err)
	}
	return out, nil
}

// encodePayload writes the payload map in vendor's dialect.
func encodePayload(d *Document, vendor qtsm.Vendor) ([]byte, error) {
	if len(d.PCRs) == 0 || len(d.PCRs) > MaxPCRs {
		return nil, fmt.Errorf("attestation: sign: %d PCRs, want 1..%d", len(d.PCRs), MaxPCRs)
	}
	idx := make([]int, 0, len(d.PCRs))
	for i := range d.PCRs {
		if i < 0 || i >= MaxPCRs {
			return nil, fmt.Errorf("attestation: sign: PCR index %d out of range", i)
		}
		idx = append(idx, i)
	}
	slices.Sort(idx)
	digest := d.Digest
	if digest == "" {
		digest = "SHA384"
	}
	ms := d.TimestampMillis
	if ms == 0 {
		ms = uint64(d.Timestamp.UnixMilli())
	}
	qt := vendor == qtsm.VendorQingtian

	w := cbor.Writer{}
	w.Head(cbor.MajorMap, 9)
	field := func(k string, v func()) { w.TextString(k); v() }
	optional := func(b []byte) {
		switch {
		case b != nil:
			w.ByteString(b)
		case qt:
			w.ByteString(nil)
		default:
			w.Null()
		}
	}
	moduleID := func() { w.TextString(d.ModuleID) }
	dig := func() { w.TextString(digest) }
	ts := func() {
		if qt {
			w.HeadWidth(cbor.MajorUint, ms, 8)
		} else {
			w.Head(cbor.MajorUint, ms)
		}
	}
	pcrs := func() {
		w.Head(cbor.MajorMap, uint64(len(idx)))
		for _, i := range idx {
			if qt {
				w.HeadWidth(cbor.MajorUint, uint64(i), 2)
			} else {
				w.Head(cbor.MajorUint, uint64(i))
			}
			w.ByteString(d.PCRs[i])
		}
	}
	cert := func() { w.ByteString(d.Certificate) }
	bundle := func() {
		w.Head(cbor.MajorArray, uint64(len(d.CABundle)))
		for _, c := range d.CABundle {
			w.ByteString(c)
		}
	}
	if qt {
		field(keyModuleID, moduleID)
		field(keyTimestamp, ts)
		field(keyDigest, dig)
		field(keyPCRs, pcrs)
		field(keyCertificate, cert)
		field(keyCABundle, bundle)
		field(keyUserData, func() { optional(d.UserData) })
		field(keyNonce, func() { optional(d.Nonce) })
		field(keyPublicKey, func() { optional(d.PublicKey) })
	} else {
		field(keyModuleID, moduleID)
		field(keyDigest, dig)
		field(keyTimestamp, ts)
		field(keyPCRs, pcrs)
		field(keyCertificate, cert)
		field(keyCABundle, bundle)
		field(keyPublicKey, func() { optional(d.PublicKey) })
		field(keyUserData, func() { optional(d.UserData) })
		field(keyNonce, func() { optional(d.Nonce) })
	}
	return w.B, nil
}
