package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"io"
)

// chunkSize is the size of the encrypted content's chunks.
const chunkSize = 1024

// Seal makes the envelope KMS makes for pub: AWS's exact shape (see the
// package documentation), BER with indefinite lengths and the content in
// constructed chunks. The fake KMS (and tests) use it; the enclave only
// opens.
func Seal(rand io.Reader, pub *rsa.PublicKey, content []byte) ([]byte, error) {
	rid, err := SubjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	cek := make([]byte, 32)
	iv := make([]byte, aes.BlockSize)
	if _, err := io.ReadFull(rand, cek); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(rand, iv); err != nil {
		return nil, err
	}
	ek, err := rsa.EncryptOAEP(sha256.New(), rand, pub, cek, nil)
	if err != nil {
		return nil, err
	}
	sha256ID := pkix.AlgorithmIdentifier{Algorithm: oidSHA256, Parameters: asn1.NullRawValue}
	mgfParams, err := asn1.Marshal(sha256ID)
	if err != nil {
		return nil, err
	}
	oaep, err := asn1.Marshal(oaepParams{
		Hash: sha256ID,
		MGF:  pkix.AlgorithmIdentifier{Algorithm: oidMGF1, Parameters: asn1.RawValue{FullBytes: mgfParams}},
	})
	if err != nil {
		return nil, err
	}
	ktri, err := asn1.Marshal(keyTransRecipientInfo{
		Version:                2,
		RID:                    rid,
		KeyEncryptionAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oidRSAESOAEP, Parameters: asn1.RawValue{FullBytes: oaep}},
		EncryptedKey:           ek,
	})
	if err != nil {
		return nil, err
	}
	ivDER, err := asn1.Marshal(iv)
	if err != nil {
		return nil, err
	}
	alg, err := asn1.Marshal(pkix.AlgorithmIdentifier{Algorithm: oidAES256CBC, Parameters: asn1.RawValue{FullBytes: ivDER}})
	if err != nil {
		return nil, err
	}
	// AES-256-CBC with PKCS#7 padding.
	n := aes.BlockSize - len(content)%aes.BlockSize
	pt := make([]byte, len(content), len(content)+n)
	copy(pt, content)
	for range n {
		pt = append(pt, byte(n))
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, pt)
	var chunks []byte
	for len(ct) > 0 {
		k := min(chunkSize, len(ct))
		c, err := asn1.Marshal(ct[:k])
		if err != nil {
			return nil, err
		}
		chunks = append(chunks, c...)
		ct = ct[k:]
	}
	version, _ := asn1.Marshal(2)
	dataOID, _ := asn1.Marshal(oidData)
	envOID, _ := asn1.Marshal(oidEnvelopedData)
	set := definite(0x31, ktri)
	eci := indefinite(0x30, dataOID, alg, indefinite(0xa0, chunks))
	ed := indefinite(0x30, version, set, eci)
	return indefinite(0x30, envOID, indefinite(0xa0, ed)), nil
}

// indefinite encodes a constructed value of tag with an indefinite length.
func indefinite(tag byte, parts ...[]byte) []byte {
	out := []byte{tag, 0x80}
	for _, p := range parts {
		out = append(out, p...)
	}
	return append(out, 0, 0)
}

// definite encodes a value of tag with a definite length.
func definite(tag byte, body []byte) []byte {
	return append(appendLength([]byte{tag}, len(body)), body...)
}
