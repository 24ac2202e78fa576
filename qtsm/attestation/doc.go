// Package attestation parses, verifies and produces secure-module
// attestation documents of both vendors: AWS Nitro Enclaves (NSM) and Huawei
// Cloud Qingtian Enclaves (QTSM).
//
//	res, err := attestation.VerifyBytes(doc, attestation.Options{
//		ExpectPCRs:  map[int][]byte{0: pcr0},
//		ExpectNonce: nonce,
//		MaxAge:      15 * time.Minute,
//	})
//
// A document is a COSE_Sign1 (RFC 8152), untagged or with tag 18:
// [protected, unprotected {}, payload, signature]. The payload is a map with
// module_id, digest, timestamp, pcrs, certificate, cabundle, public_key,
// user_data and nonce; the signature is ES384 by the leaf certificate's key
// over the Sig_structure ["Signature1", protected, empty bstr, payload]. The
// certificate chain runs from cabundle[0], the vendor's root, through the
// intermediates to the leaf.
//
// # Dialects
//
// The vendors encode the same document differently; Parse accepts both and
// records what it saw in Document.Layout, and Sign writes either:
//
//	                    AWS Nitro                     Huawei Qingtian
//	key order           module_id digest timestamp    module_id timestamp digest
//	                    pcrs certificate cabundle     pcrs certificate cabundle
//	                    public_key user_data nonce    user_data nonce public_key
//	absent field        null                          empty byte string
//	protected header    a1 01 38 22                   a1 1a00000001 3a00000022
//	PCR index           1 byte (minimal)              2 bytes (19 00 NN)
//	signature r, s      big-endian (as COSE says)     each half little-endian
//
// Documents also come with an indefinite-length payload map (some AWS
// ones), and Huawei's documentation calls public_key "pubkey"; both are
// accepted. Document.Vendor is decided by the key order (timestamp before
// digest: Qingtian), which both mandatory keys make always defined.
//
// Because of the non-minimal integers, the signature must be checked over
// the protected header and payload exactly as received: Parse keeps them as
// raw byte slices and nothing is ever re-encoded for verification.
//
// # Why not go-cose for verification
//
// github.com/veraison/go-cose (v1.3.0) was checked: it does keep the raw
// protected header (Headers.RawProtected) and verifies both real documents
// (the Qingtian one after reversing the signature halves), and this
// package's tests use it as an independent cross-check of Verify and Sign.
// It is not used in the verification path because: its Verifier knows only
// big-endian signatures, so Qingtian needs a wrapper anyway; decoding the
// message tells nothing of the payload's key order, integer widths or
// null-versus-empty, which this package must see, so the payload has to be
// walked by hand regardless; and the Sig_structure is ten lines. So Parse walks the CBOR itself (cbor.go: every length checked
// against the remaining input before use, byte fields alias the input),
// builds the Sig_structure from the raw bytes and checks it with
// crypto/ecdsa; chains are verified with crypto/x509.
//
// # Verification
//
// Verify checks, in order: the vendor (if Options.Vendor is set), that the
// document is signed (an emulator's unsigned document, QEMU virtio-nsm's
// protected {1: -1} with a zero signature, is refused with ErrUnsigned
// unless Options.AllowUnsigned), the algorithm (ES384), the signature
// (big- or little-endian per vendor; in auto mode the layout's encoding
// first, then the other, and Result.Encoding says which verified), that the
// leaf key is P-384, the chain to a trusted root at the verification time,
// the document's age (Options.MaxAge), debug mode (PCR0 zero or absent,
// refused unless Options.AllowDebug) and the expected PCRs, nonce, user_data
// and public_key. The verification time is Options.Time, the document's
// own timestamp (Options.DocumentTime, for stored documents: leaves live
// 3 hours), or now. Both vendors' roots are embedded (roots/, pinned by
// their DER bytes); Options.Roots replaces them.
//
// Every failure wraps one of the Err* values for errors.Is.
//
// # Limits
//
// Parse refuses documents over 64 KiB, user_data or nonce over 512 bytes,
// public_key over 1024, pcrs with 0 or more than 32 entries, an index >= 32
// or a value not 32, 48 or 64 bytes long (and not the digest's size), a
// cabundle with 0 or more than 16 certificates, certificates over 4096
// bytes, a non-empty unprotected header, indefinite-length byte or text
// strings, tags other than the outer 18, duplicate keys and trailing bytes.
// Unknown payload keys are skipped (they are signed) and listed in
// Layout.Unknown.
package attestation
