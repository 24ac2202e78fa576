// Package envelope opens and seals the CMS envelope (RFC 5652) in which
// KMS returns a secret to an attested enclave: AWS KMS's
// CiphertextForRecipient (and, unverified, Huawei KMS's
// ciphertext_recipient, assumed to be the same shape).
//
// The shape, as AWS produces it: a ContentInfo holding EnvelopedData
// version 2, in BER with indefinite lengths, with exactly one
// KeyTransRecipientInfo version 2 whose rid is a subjectKeyIdentifier (the
// SHA-256 of the recipient key's SubjectPublicKeyInfo), the content key
// wrapped with RSAES-OAEP (SHA-256, MGF1 with SHA-256, explicit
// parameters, no pSource), and the content encrypted with AES-256-CBC
// (a 16-byte IV as the algorithm's parameter, PKCS#7 padding), the
// encrypted content in constructed chunks.
//
// Go's encoding/asn1 reads DER only and the common Go PKCS#7 libraries do
// not read a subjectKeyIdentifier rid or have no EnvelopedData, so this
// package is hand-written and strict: a BER-to-DER step (bounded depth,
// every length checked against the input, nothing allocated beyond the
// input's size), then encoding/asn1 into exact structures; crypto/rsa and
// crypto/aes do the cryptography. Stdlib only.
package envelope
