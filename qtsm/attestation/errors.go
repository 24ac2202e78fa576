package attestation

import (
	"errors"
	"fmt"
)

// Errors returned by Parse and Verify, for errors.Is. Every error from Parse
// wraps ErrMalformed (a size limit wraps ErrTooLarge, which wraps
// ErrMalformed); each of Verify's errors wraps one of the others (ErrExpired
// wraps ErrChain), with the detail in the message.
var (
	// ErrMalformed: the bytes are not a well-formed attestation document.
	ErrMalformed = errors.New("attestation: malformed document")
	// ErrTooLarge: a field exceeds its limit (user_data, nonce, public_key,
	// pcrs, certificates).
	// It wraps ErrMalformed.
	ErrTooLarge = fmt.Errorf("%w: field too large", ErrMalformed)

	// ErrUnsigned: the document is an emulator's (QEMU virtio-nsm) and
	// carries no signature; refused unless Options.AllowUnsigned.
	ErrUnsigned = errors.New("attestation: document is unsigned (emulator)")
	// ErrAlgorithm: the protected header names an algorithm other than ES384.
	ErrAlgorithm = errors.New("attestation: unsupported signature algorithm")
	// ErrVendor: the document's layout is not the vendor asked for.
	ErrVendor = errors.New("attestation: wrong vendor")
	// ErrSignature: the COSE signature does not verify with the leaf key.
	ErrSignature = errors.New("attestation: signature does not verify")
	// ErrLeafKey: the leaf certificate's key is not ECDSA P-384.
	ErrLeafKey = errors.New("attestation: leaf key is not ECDSA P-384")
	// ErrChain: the certificate chain does not lead to a trusted root.
	ErrChain = errors.New("attestation: certificate chain does not verify")
	// ErrExpired: a certificate of the chain is not valid at the
	// verification time (expired or not yet valid). It wraps ErrChain.
	ErrExpired = fmt.Errorf("%w: certificate not valid at verification time", ErrChain)
	// ErrTooOld: the document is older than Options.MaxAge.
	ErrTooOld = errors.New("attestation: document too old")
	// ErrFuture: the document's timestamp is ahead of the verification time
	// by more than the allowed clock skew (checked only with MaxAge).
	ErrFuture = errors.New("attestation: document timestamp in the future")
	// ErrDebug: the enclave runs in debug mode (PCR0 absent or all zero);
	// refused unless Options.AllowDebug.
	ErrDebug = errors.New("attestation: debug-mode enclave")
	// ErrPCRMismatch: a PCR differs from Options.ExpectPCRs (or is missing).
	ErrPCRMismatch = errors.New("attestation: PCR mismatch")
	// ErrNonceMismatch: the nonce differs from Options.ExpectNonce.
	ErrNonceMismatch = errors.New("attestation: nonce mismatch")
	// ErrUserDataMismatch: user_data differs from Options.ExpectUserData.
	ErrUserDataMismatch = errors.New("attestation: user_data mismatch")
	// ErrPublicKeyMismatch: public_key differs from Options.ExpectPublicKey.
	ErrPublicKeyMismatch = errors.New("attestation: public_key mismatch")
)
