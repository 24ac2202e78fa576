package envelope

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
)

// Errors, to be told apart with errors.Is.
var (
	ErrMalformed = errors.New("envelope: malformed")           // not the structure described above
	ErrVersion   = errors.New("envelope: unsupported version") // a version other than 2
	ErrAlgorithm = errors.New("envelope: unsupported algorithm")
	ErrRecipient = errors.New("envelope: not for this key") // the rid names another key
	ErrDecrypt   = errors.New("envelope: decryption failed")
)

// MaxSize bounds an envelope (KMS answers are a few KiB; a data key pair
// answer is the largest).
const MaxSize = 1 << 20

// Object identifiers.
var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	oidRSAESOAEP     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
	oidMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidAES256CBC     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,tag:0"`
}

type envelopedData struct {
	Version              int
	OriginatorInfo       asn1.RawValue   `asn1:"optional,tag:0"`
	RecipientInfos       []asn1.RawValue `asn1:"set"`
	EncryptedContentInfo encryptedContentInfo
	UnprotectedAttrs     asn1.RawValue `asn1:"optional,tag:1"`
}

type keyTransRecipientInfo struct {
	Version                int
	RID                    []byte `asn1:"tag:0"` // subjectKeyIdentifier [0] IMPLICIT
	KeyEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedKey           []byte
}

type oaepParams struct {
	Hash pkix.AlgorithmIdentifier `asn1:"explicit,tag:0"`
	MGF  pkix.AlgorithmIdentifier `asn1:"explicit,tag:1"`
	// pSourceAlgorithm [2] is absent in AWS's envelopes; present, it is
	// refused by the exact-length check below.
}

type encryptedContentInfo struct {
	ContentType                asn1.ObjectIdentifier
	ContentEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedContent           asn1.RawValue `asn1:"optional,tag:0"`
}

// unmarshal decodes b into v exactly: nothing may follow.
func unmarshal(b []byte, v any, what string) error {
	rest, err := asn1.Unmarshal(b, v)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %s: %d bytes after it", ErrMalformed, what, len(rest))
	}
	return nil
}

// SubjectKeyID is the rid KMS puts in an envelope for pub: the SHA-256 of
// its SubjectPublicKeyInfo.
func SubjectKeyID(pub *rsa.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(spki)
	return h[:], nil
}

// Open decrypts an envelope made for key and returns its content.
func Open(ber []byte, key *rsa.PrivateKey) ([]byte, error) {
	if len(ber) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(ber), MaxSize)
	}
	der, err := toDER(ber)
	if err != nil {
		return nil, err
	}
	var ci contentInfo
	if err := unmarshal(der, &ci, "ContentInfo"); err != nil {
		return nil, err
	}
	if !ci.ContentType.Equal(oidEnvelopedData) {
		return nil, fmt.Errorf("%w: content type %v, want envelopedData", ErrAlgorithm, ci.ContentType)
	}
	var ed envelopedData
	if err := unmarshal(ci.Content.Bytes, &ed, "EnvelopedData"); err != nil {
		return nil, err
	}
	if ed.Version != 2 {
		return nil, fmt.Errorf("%w: EnvelopedData version %d, want 2", ErrVersion, ed.Version)
	}
	if len(ed.RecipientInfos) != 1 {
		return nil, fmt.Errorf("%w: %d recipients, want 1", ErrMalformed, len(ed.RecipientInfos))
	}
	ri := ed.RecipientInfos[0]
	if ri.Class != asn1.ClassUniversal || ri.Tag != asn1.TagSequence {
		return nil, fmt.Errorf("%w: a recipient other than KeyTransRecipientInfo", ErrAlgorithm)
	}
	var ktri keyTransRecipientInfo
	if err := unmarshal(ri.FullBytes, &ktri, "KeyTransRecipientInfo"); err != nil {
		return nil, err
	}
	if ktri.Version != 2 {
		return nil, fmt.Errorf("%w: KeyTransRecipientInfo version %d, want 2 (subjectKeyIdentifier)", ErrVersion, ktri.Version)
	}
	want, err := SubjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(ktri.RID, want) {
		return nil, fmt.Errorf("%w: rid %x, this key's is %x", ErrRecipient, ktri.RID, want)
	}
	if err := checkOAEP(ktri.KeyEncryptionAlgorithm); err != nil {
		return nil, err
	}
	cek, err := rsa.DecryptOAEP(sha256.New(), nil, key, ktri.EncryptedKey, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: content key: %v", ErrDecrypt, err)
	}
	if len(cek) != 32 {
		return nil, fmt.Errorf("%w: content key of %d bytes, want 32", ErrDecrypt, len(cek))
	}
	eci := ed.EncryptedContentInfo
	if !eci.ContentType.Equal(oidData) {
		return nil, fmt.Errorf("%w: encrypted content type %v, want data", ErrAlgorithm, eci.ContentType)
	}
	if !eci.ContentEncryptionAlgorithm.Algorithm.Equal(oidAES256CBC) {
		return nil, fmt.Errorf("%w: content encryption %v, want AES-256-CBC", ErrAlgorithm, eci.ContentEncryptionAlgorithm.Algorithm)
	}
	var iv []byte
	if err := unmarshal(eci.ContentEncryptionAlgorithm.Parameters.FullBytes, &iv, "AES-CBC IV"); err != nil {
		return nil, err
	}
	if len(iv) != aes.BlockSize {
		return nil, fmt.Errorf("%w: IV of %d bytes, want 16", ErrMalformed, len(iv))
	}
	ct, err := encryptedContent(eci.EncryptedContent)
	if err != nil {
		return nil, err
	}
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes of encrypted content, not whole blocks", ErrDecrypt, len(ct))
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, ct)
	return unpad(pt)
}

// encryptedContent is the [0] IMPLICIT OCTET STRING, primitive or (as
// AWS sends it) constructed from OCTET STRING chunks.
func encryptedContent(v asn1.RawValue) ([]byte, error) {
	if v.Class != asn1.ClassContextSpecific || v.Tag != 0 {
		return nil, fmt.Errorf("%w: no encrypted content", ErrMalformed)
	}
	if !v.IsCompound {
		return v.Bytes, nil
	}
	var out []byte
	for rest := v.Bytes; len(rest) > 0; {
		var chunk []byte
		var err error
		if rest, err = asn1.Unmarshal(rest, &chunk); err != nil {
			return nil, fmt.Errorf("%w: encrypted content chunk: %v", ErrMalformed, err)
		}
		out = append(out, chunk...)
	}
	return out, nil
}

// checkOAEP accepts RSAES-OAEP with SHA-256 and MGF1-SHA-256, the
// parameters written out, and nothing else.
func checkOAEP(a pkix.AlgorithmIdentifier) error {
	if !a.Algorithm.Equal(oidRSAESOAEP) {
		return fmt.Errorf("%w: key encryption %v, want RSAES-OAEP", ErrAlgorithm, a.Algorithm)
	}
	var p oaepParams
	if err := unmarshal(a.Parameters.FullBytes, &p, "RSAES-OAEP parameters"); err != nil {
		return fmt.Errorf("%w (want SHA-256 and MGF1-SHA-256, explicit, no pSource)", err)
	}
	var mgfHash pkix.AlgorithmIdentifier
	if err := unmarshal(p.MGF.Parameters.FullBytes, &mgfHash, "MGF1 hash"); err != nil {
		return err
	}
	if !p.Hash.Algorithm.Equal(oidSHA256) || !p.MGF.Algorithm.Equal(oidMGF1) || !mgfHash.Algorithm.Equal(oidSHA256) {
		return fmt.Errorf("%w: RSAES-OAEP with %v, %v(%v); want SHA-256, MGF1(SHA-256)", ErrAlgorithm, p.Hash.Algorithm, p.MGF.Algorithm, mgfHash.Algorithm)
	}
	return nil
}

// unpad removes PKCS#7 padding (1..16 bytes, each the count).
func unpad(b []byte) ([]byte, error) {
	n := int(b[len(b)-1])
	if n == 0 || n > aes.BlockSize || n > len(b) {
		return nil, fmt.Errorf("%w: bad padding", ErrDecrypt)
	}
	for _, c := range b[len(b)-n:] {
		if int(c) != n {
			return nil, fmt.Errorf("%w: bad padding", ErrDecrypt)
		}
	}
	return b[:len(b)-n], nil
}
