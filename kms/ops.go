package kms

import (
	"context"
	"encoding/hex"
	"fmt"
)

// Operations, by the names the CLI and the agent's endpoint use.
const (
	OpDecrypt             = "decrypt"
	OpGenerateDataKey     = "generate-data-key"
	OpGenerateDataKeyPair = "generate-data-key-pair"
	OpGenerateRandom      = "generate-random"
)

// HuaweiOps is what Huawei's recipient flow covers; key pairs are AWS's.
const HuaweiOps = "decrypt, generate-data-key and generate-random"

// IsOp reports whether op names an operation.
func IsOp(op string) bool {
	switch op {
	case OpDecrypt, OpGenerateDataKey, OpGenerateDataKeyPair, OpGenerateRandom:
		return true
	}
	return false
}

// Defaults of a Request.
const (
	DefaultBytes       = 32              // a data key (AES-256) or random bytes
	DefaultKeyPairSpec = "ECC_NIST_P256" // a data key pair
)

// Request is one operation, vendor-neutral: what qtsm kms and the agent's
// POST /v1/kms/{op} take.
type Request struct {
	Op                string
	KeyID             string
	Ciphertext        []byte
	EncryptionContext map[string]string
	// Bytes is a data key's or random's length (0: DefaultBytes; for AWS's
	// data key, 0 asks for AES_256 by KeySpec).
	Bytes       int
	KeyPairSpec string // "": DefaultKeyPairSpec
}

// Result is what an operation returns: the secret (opened here) and, for
// data keys and key pairs, what KMS returns besides.
type Result struct {
	Plaintext      []byte
	CiphertextBlob []byte
	PublicKey      []byte
}

// Client is a vendor's KMS: AWS or Huawei.
type Client interface {
	Do(ctx context.Context, r Request) (Result, error)
}

func (r Request) bytes() int {
	if r.Bytes == 0 {
		return DefaultBytes
	}
	return r.Bytes
}

// Do runs r on AWS KMS.
func (a *AWS) Do(ctx context.Context, r Request) (res Result, err error) {
	switch r.Op {
	case OpDecrypt:
		res.Plaintext, err = a.Decrypt(ctx, r.Ciphertext, r.KeyID, r.EncryptionContext)
	case OpGenerateDataKey:
		res.Plaintext, res.CiphertextBlob, err = a.GenerateDataKey(ctx, r.KeyID, r.Bytes, r.EncryptionContext)
	case OpGenerateDataKeyPair:
		spec := r.KeyPairSpec
		if spec == "" {
			spec = DefaultKeyPairSpec
		}
		res.Plaintext, res.PublicKey, res.CiphertextBlob, err = a.GenerateDataKeyPair(ctx, r.KeyID, spec, r.EncryptionContext)
	case OpGenerateRandom:
		res.Plaintext, err = a.GenerateRandom(ctx, r.bytes())
	default:
		err = fmt.Errorf("kms: no operation %q", r.Op)
	}
	return res, err
}

// Do runs r on Huawei KMS: decrypt (decrypt-datakey), generate-data-key
// (create-datakey) and generate-random (gen-random); key pairs are AWS's.
func (h *Huawei) Do(ctx context.Context, r Request) (res Result, err error) {
	switch r.Op {
	case OpDecrypt:
		res.Plaintext, err = h.DecryptDataKey(ctx, r.KeyID, hex.EncodeToString(r.Ciphertext), r.bytes())
	case OpGenerateDataKey:
		var cipherHex string
		if res.Plaintext, cipherHex, err = h.CreateDataKey(ctx, r.KeyID, r.bytes()); err == nil {
			res.CiphertextBlob, err = hex.DecodeString(cipherHex)
		}
	case OpGenerateRandom:
		res.Plaintext, err = h.GenRandom(ctx, r.bytes())
	case OpGenerateDataKeyPair:
		err = fmt.Errorf("kms: %s is AWS's (Huawei's recipient flow covers %s)", r.Op, HuaweiOps)
	default:
		err = fmt.Errorf("kms: no operation %q", r.Op)
	}
	return res, err
}

// HuaweiEndpoint is Huawei KMS's endpoint in region.
func HuaweiEndpoint(region string) string { return "https://kms." + region + ".myhuaweicloud.com" }
