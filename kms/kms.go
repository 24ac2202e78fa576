package kms

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/qtenclave/enclave/kms/envelope"
	"github.com/qtenclave/enclave/qtsm"
)

// Steps of a request, as StepError names them.
const (
	StepKey         = "recipient key"
	StepAttestation = "attestation"
	StepKMS         = "KMS"
	StepAnswer      = "KMS answer"
	StepEnvelope    = "envelope"
)

// StepError says which step of a recipient request failed. For StepKMS,
// Code and Message are KMS's error (e.g. AccessDeniedException) when it
// answered one.
type StepError struct {
	Step          string
	Code, Message string
	Err           error
}

func (e *StepError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s: %s: %s", e.Step, e.Code, e.Message)
	}
	return fmt.Sprintf("%s: %v", e.Step, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

func stepErr(step string, err error) error { return &StepError{Step: step, Err: err} }

// Attester is what a Recipient needs of the secure module: an
// attestation document (qtsm.Module has it; so does the agent's queue).
type Attester interface {
	Attestation(ctx context.Context, req qtsm.AttestationRequest) ([]byte, error)
}

// Recipient is a key and the module that attests it.
type Recipient struct {
	Key    *rsa.PrivateKey
	Module Attester
}

// NewRecipient returns a recipient for m with key, or with a fresh
// RSA-2048 key when key is nil.
func NewRecipient(m Attester, key *rsa.PrivateKey) (*Recipient, error) {
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, stepErr(StepKey, err)
		}
	}
	if key.N.BitLen() < 2048 {
		return nil, stepErr(StepKey, fmt.Errorf("RSA key of %d bits; KMS wants 2048 or more", key.N.BitLen()))
	}
	return &Recipient{Key: key, Module: m}, nil
}

// Document is an attestation document carrying the key's public key (and
// nonce, if not nil).
func (r *Recipient) Document(ctx context.Context, nonce []byte) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(&r.Key.PublicKey)
	if err != nil {
		return nil, stepErr(StepKey, err)
	}
	doc, err := r.Module.Attestation(ctx, qtsm.AttestationRequest{PublicKey: spki, Nonce: nonce})
	if err != nil {
		return nil, stepErr(StepAttestation, err)
	}
	return doc, nil
}

// Open opens an envelope made for the key.
func (r *Recipient) Open(env []byte) ([]byte, error) {
	pt, err := envelope.Open(env, r.Key)
	if err != nil {
		return nil, stepErr(StepEnvelope, err)
	}
	return pt, nil
}

// AWS asks AWS KMS for secrets sealed to Recipient.
type AWS struct {
	Client    *awskms.Client
	Recipient *Recipient
}

// NewAWSClient is an AWS KMS client for region, at endpoint when not
// empty (else the region's), with creds. Its HTTP client honours the
// proxy variables init sets; NewAWSClientHTTP takes another.
func NewAWSClient(region, endpoint string, creds aws.CredentialsProvider) *awskms.Client {
	return NewAWSClientHTTP(region, endpoint, creds, nil)
}

// NewAWSClientHTTP is NewAWSClient with the HTTP client hc (nil: the
// SDK's default).
func NewAWSClientHTTP(region, endpoint string, creds aws.CredentialsProvider, hc *http.Client) *awskms.Client {
	o := awskms.Options{Region: region, Credentials: creds}
	if hc != nil {
		o.HTTPClient = hc
	}
	if endpoint != "" {
		o.BaseEndpoint = aws.String(endpoint)
	}
	return awskms.New(o)
}

func (a *AWS) recipient(ctx context.Context) (*types.RecipientInfo, error) {
	doc, err := a.Recipient.Document(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &types.RecipientInfo{AttestationDocument: doc, KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256}, nil
}

// kmsErr turns the SDK's error into a StepError naming KMS's error.
func kmsErr(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return &StepError{Step: StepKMS, Code: ae.ErrorCode(), Message: ae.ErrorMessage(), Err: err}
	}
	return stepErr(StepKMS, err)
}

// sealed checks an answer to a recipient request: the secret must come
// sealed; a Plaintext means the recipient was dropped on the way.
func (a *AWS) sealed(plaintext, forRecipient []byte) ([]byte, error) {
	if len(plaintext) > 0 {
		return nil, stepErr(StepAnswer, errors.New("the answer has a Plaintext where a recipient was given: the attestation was dropped on the way; refused"))
	}
	if len(forRecipient) == 0 {
		return nil, stepErr(StepAnswer, errors.New("the answer has no CiphertextForRecipient"))
	}
	return a.Recipient.Open(forRecipient)
}

// Decrypt decrypts ciphertext (keyID optional, as KMS allows).
func (a *AWS) Decrypt(ctx context.Context, ciphertext []byte, keyID string, encCtx map[string]string) ([]byte, error) {
	ri, err := a.recipient(ctx)
	if err != nil {
		return nil, err
	}
	in := &awskms.DecryptInput{CiphertextBlob: ciphertext, EncryptionContext: encCtx, Recipient: ri}
	if keyID != "" {
		in.KeyId = aws.String(keyID)
	}
	out, err := a.Client.Decrypt(ctx, in)
	if err != nil {
		return nil, kmsErr(err)
	}
	return a.sealed(out.Plaintext, out.CiphertextForRecipient)
}

// GenerateDataKey returns a new data key of n bytes (0: AES-256's 32) in
// plaintext (opened here) and as KMS's ciphertext blob.
func (a *AWS) GenerateDataKey(ctx context.Context, keyID string, n int, encCtx map[string]string) (plaintext, blob []byte, err error) {
	ri, err := a.recipient(ctx)
	if err != nil {
		return nil, nil, err
	}
	in := &awskms.GenerateDataKeyInput{KeyId: aws.String(keyID), EncryptionContext: encCtx, Recipient: ri}
	if n == 0 {
		in.KeySpec = types.DataKeySpecAes256
	} else {
		in.NumberOfBytes = aws.Int32(int32(n))
	}
	out, err := a.Client.GenerateDataKey(ctx, in)
	if err != nil {
		return nil, nil, kmsErr(err)
	}
	pt, err := a.sealed(out.Plaintext, out.CiphertextForRecipient)
	return pt, out.CiphertextBlob, err
}

// GenerateRandom returns n random bytes from KMS, sealed to the key on
// the way.
func (a *AWS) GenerateRandom(ctx context.Context, n int) ([]byte, error) {
	ri, err := a.recipient(ctx)
	if err != nil {
		return nil, err
	}
	out, err := a.Client.GenerateRandom(ctx, &awskms.GenerateRandomInput{NumberOfBytes: aws.Int32(int32(n)), Recipient: ri})
	if err != nil {
		return nil, kmsErr(err)
	}
	return a.sealed(out.Plaintext, out.CiphertextForRecipient)
}

// GenerateDataKeyPair returns a new key pair of spec (e.g. ECC_NIST_P256,
// RSA_2048): the private key (PKCS#8 DER, opened here), the public key
// (SubjectPublicKeyInfo DER) and the private key as KMS's ciphertext blob.
func (a *AWS) GenerateDataKeyPair(ctx context.Context, keyID, spec string, encCtx map[string]string) (private, public, blob []byte, err error) {
	ri, err := a.recipient(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	out, err := a.Client.GenerateDataKeyPair(ctx, &awskms.GenerateDataKeyPairInput{KeyId: aws.String(keyID),
		KeyPairSpec: types.DataKeyPairSpec(spec), EncryptionContext: encCtx, Recipient: ri})
	if err != nil {
		return nil, nil, nil, kmsErr(err)
	}
	private, err = a.sealed(out.PrivateKeyPlaintext, out.CiphertextForRecipient)
	return private, out.PublicKey, out.PrivateKeyCiphertextBlob, err
}
