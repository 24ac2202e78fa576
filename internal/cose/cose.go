// Package cose is the project's one COSE_Sign1 (RFC 9052, section 4.2):
// reading and writing the four-element structure without re-encoding its
// protected header or payload, the Sig_structure that is signed, the
// protected header's algorithm and critical parameters, and ECDSA
// signatures in COSE's fixed-size r||s form. Attestation documents
// (qtsm/attestation) and EIF signatures (image/eif) both use it;
// go-cose stays in their tests as an independent cross-check.
package cose

import (
	"crypto"
	"crypto/ecdsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/qtenclave/enclave/internal/cbor"
)

// Algorithms (COSE's "alg" values) this project signs or verifies.
const (
	AlgES256 = -7
	AlgES384 = -35
	AlgES512 = -36
)

// Header labels.
const (
	LabelAlg  = 1
	LabelCrit = 2
)

// TagSign1 is the CBOR tag of a tagged COSE_Sign1.
const TagSign1 = 18

// Sign1 is a COSE_Sign1 message. Protected, Unprotected and Payload are
// the bytes as found (or to be written): Protected is the serialized
// protected header (a CBOR map, the content of a byte string), Unprotected
// the serialized unprotected header map itself.
type Sign1 struct {
	Tagged      bool
	Protected   []byte
	Unprotected []byte
	Payload     []byte
	Signature   []byte
}

// Parse reads a COSE_Sign1, untagged or with tag 18; errors wrap
// errMalformed (cbor.ErrMalformed when nil). A detached (null) payload and
// trailing bytes are refused. The result's slices alias b.
func Parse(b []byte, errMalformed error) (*Sign1, error) {
	r := cbor.NewReader(b, errMalformed)
	m := &Sign1{}
	c, err := r.Peek()
	if err != nil {
		return nil, err
	}
	if c>>5 == cbor.MajorTag {
		h, err := r.Head()
		if err != nil {
			return nil, err
		}
		if h.Arg != TagSign1 {
			return nil, r.Errorf("tag %d, want %d (COSE_Sign1) or none", h.Arg, TagSign1)
		}
		m.Tagged = true
	}
	h, err := r.Container(cbor.MajorArray)
	if err != nil {
		return nil, fmt.Errorf("%w (COSE_Sign1 must be an array)", err)
	}
	if h.Indef || h.Arg != 4 {
		return nil, r.Errorf("COSE_Sign1 array must have 4 elements")
	}
	if m.Protected, _, err = r.ByteString(); err != nil {
		return nil, fmt.Errorf("protected header: %w", err)
	}
	start := r.Offset()
	if c, err := r.Peek(); err != nil || c>>5 != cbor.MajorMap {
		return nil, r.Errorf("unprotected header must be a map")
	}
	if err := r.Skip(0); err != nil {
		return nil, fmt.Errorf("unprotected header: %w", err)
	}
	m.Unprotected = b[start:r.Offset()]
	if r.IsNull() {
		return nil, r.Errorf("detached payload (null) not supported")
	}
	if m.Payload, _, err = r.ByteString(); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	if m.Signature, _, err = r.ByteString(); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	if r.Remaining() != 0 {
		return nil, r.Errorf("%d trailing bytes after COSE_Sign1", r.Remaining())
	}
	return m, nil
}

// UnprotectedEmpty reports whether the unprotected header is an empty map
// (definite or indefinite).
func (m *Sign1) UnprotectedEmpty() bool {
	u := m.Unprotected
	return len(u) == 1 && u[0] == cbor.MajorMap<<5 || len(u) == 2 && u[0] == cbor.MajorMap<<5|31 && u[1] == cbor.Break
}

// Marshal encodes m; a nil Unprotected is written as an empty map.
func (m *Sign1) Marshal() []byte {
	w := cbor.Writer{B: make([]byte, 0, len(m.Protected)+len(m.Payload)+len(m.Signature)+len(m.Unprotected)+16)}
	if m.Tagged {
		w.Head(cbor.MajorTag, TagSign1)
	}
	w.Head(cbor.MajorArray, 4)
	w.ByteString(m.Protected)
	if m.Unprotected == nil {
		w.Head(cbor.MajorMap, 0)
	} else {
		w.B = append(w.B, m.Unprotected...)
	}
	w.ByteString(m.Payload)
	w.ByteString(m.Signature)
	return w.B
}

// SigStructure is what a COSE_Sign1 with no external data signs:
// ["Signature1", protected, an empty byte string, payload], with protected
// and payload as found, never re-encoded.
func SigStructure(protected, payload []byte) []byte {
	w := cbor.Writer{B: make([]byte, 0, len(protected)+len(payload)+32)}
	w.Head(cbor.MajorArray, 4)
	w.TextString("Signature1")
	w.ByteString(protected)
	w.ByteString(nil)
	w.ByteString(payload)
	return w.B
}

// Header is what a protected header says that this project acts on.
type Header struct {
	Alg int64
	// Minimal: every integer in the header was minimally encoded (Nitro's
	// are; Qingtian writes 4-byte integers).
	Minimal bool
}

// ParseProtected reads a serialized protected header: a map with integer
// labels, no label twice, an alg (label 1). A crit parameter (label 2)
// must be a non-empty array of labels this package understands (alg only):
// RFC 9052 has a recipient refuse a message whose critical parameters it
// does not process. Other labels are skipped. Errors wrap errMalformed.
func ParseProtected(p []byte, errMalformed error) (Header, error) {
	r := cbor.NewReader(p, errMalformed)
	h, err := r.Container(cbor.MajorMap)
	if err != nil {
		return Header{}, err
	}
	hdr := Header{Minimal: h.Minimal}
	seen := map[int64]bool{}
	haveAlg := false
	if err := r.Each(h, func() error {
		k, kh, err := r.Int()
		if err != nil {
			return fmt.Errorf("label: %w", err)
		}
		if seen[k] {
			return r.Errorf("duplicate label %d", k)
		}
		seen[k] = true
		hdr.Minimal = hdr.Minimal && kh.Minimal
		switch k {
		case LabelAlg:
			alg, ah, err := r.Int()
			if err != nil {
				return fmt.Errorf("alg: %w", err)
			}
			hdr.Minimal = hdr.Minimal && ah.Minimal
			hdr.Alg, haveAlg = alg, true
			return nil
		case LabelCrit:
			return critical(r)
		}
		return r.Skip(1)
	}); err != nil {
		return Header{}, err
	}
	if r.Remaining() != 0 {
		return Header{}, r.Errorf("trailing bytes")
	}
	if !haveAlg {
		return Header{}, r.Errorf("no alg (label 1)")
	}
	return hdr, nil
}

// critical reads a crit array and refuses any label but alg.
func critical(r *cbor.Reader) error {
	h, err := r.Container(cbor.MajorArray)
	if err != nil {
		return fmt.Errorf("crit: %w", err)
	}
	n := 0
	if err := r.Each(h, func() error {
		n++
		c, err := r.Peek()
		if err != nil {
			return err
		}
		if c>>5 != cbor.MajorUint && c>>5 != cbor.MajorNeg {
			return r.Errorf("crit: a text label is not understood")
		}
		l, _, err := r.Int()
		if err != nil {
			return fmt.Errorf("crit: %w", err)
		}
		if l != LabelAlg {
			return r.Errorf("crit: critical parameter %d is not understood", l)
		}
		return nil
	}); err != nil {
		return err
	}
	if n == 0 {
		return r.Errorf("crit: empty array")
	}
	return nil
}

// EncodeProtected is the minimal serialized protected header {1: alg}.
func EncodeProtected(alg int64) []byte {
	w := cbor.Writer{}
	w.Head(cbor.MajorMap, 1)
	w.Head(cbor.MajorUint, LabelAlg)
	if alg < 0 {
		w.Head(cbor.MajorNeg, uint64(-1-alg))
	} else {
		w.Head(cbor.MajorUint, uint64(alg))
	}
	return w.B
}

// SignECDSA signs digest with key and returns the signature in COSE's
// form: r and s big-endian, each padded to size bytes (the curve's byte
// length). rand may be nil where key allows it (an *ecdsa.PrivateKey then
// signs deterministically, RFC 6979).
func SignECDSA(key crypto.Signer, rand io.Reader, digest []byte, h crypto.Hash, size int) ([]byte, error) {
	der, err := key.Sign(rand, digest, h)
	if err != nil {
		return nil, err
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &rs); err != nil || len(rest) != 0 {
		return nil, errors.New("signer returned a malformed ECDSA signature")
	}
	if rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.BitLen() > 8*size || rs.S.BitLen() > 8*size {
		return nil, errors.New("signer returned an ECDSA signature out of range")
	}
	out := make([]byte, 2*size)
	rs.R.FillBytes(out[:size])
	rs.S.FillBytes(out[size:])
	return out, nil
}

// VerifyECDSA checks a COSE r||s signature over digest.
func VerifyECDSA(pub *ecdsa.PublicKey, digest, sig []byte) bool {
	size := (pub.Curve.Params().BitSize + 7) / 8
	if len(sig) != 2*size {
		return false
	}
	r := new(big.Int).SetBytes(sig[:size])
	s := new(big.Int).SetBytes(sig[size:])
	return ecdsa.Verify(pub, digest, r, s)
}
