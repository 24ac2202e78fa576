package kms_test

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/qtenclave/enclave/kms"
)

// TestProxy: an unmodified aws-sdk-go-v2 client, pointed at the proxy
// as AWS_ENDPOINT_URL_KMS would point it, gets plaintext answers from a
// key whose policy releases them only to the attested enclave; a client
// signing with other credentials is refused before anything reaches KMS.
func TestProxy(t *testing.T) {
	r := newRig(t, nil)
	a := r.client(t)
	creds := aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret"}
	px := httptest.NewServer(&kms.Proxy{KMS: a, Credentials: creds})
	defer px.Close()
	app := awskms.New(awskms.Options{Region: "eu-west-1", BaseEndpoint: aws.String(px.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")})
	ctx := context.Background()

	secret := []byte("for the enclave only")
	blob, _ := r.fake.Encrypt("enclave-key", secret, map[string]string{"k": "v"})
	out, err := app.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: blob, EncryptionContext: map[string]string{"k": "v"}})
	if err != nil || !bytes.Equal(out.Plaintext, secret) {
		t.Fatalf("SDK Decrypt through the proxy = %v, %v", out, err)
	}
	dk, err := app.GenerateDataKey(ctx, &awskms.GenerateDataKeyInput{KeyId: aws.String("enclave-key"), KeySpec: types.DataKeySpecAes256})
	if err != nil || len(dk.Plaintext) != 32 || len(dk.CiphertextBlob) == 0 {
		t.Fatalf("SDK GenerateDataKey through the proxy = %v", err)
	}
	rnd, err := app.GenerateRandom(ctx, &awskms.GenerateRandomInput{NumberOfBytes: aws.Int32(20)})
	if err != nil || len(rnd.Plaintext) != 20 {
		t.Fatalf("SDK GenerateRandom through the proxy = %v", err)
	}
	pair, err := app.GenerateDataKeyPair(ctx, &awskms.GenerateDataKeyPairInput{KeyId: aws.String("enclave-key"), KeyPairSpec: types.DataKeyPairSpecEccNistP256})
	if err != nil || len(pair.PrivateKeyPlaintext) == 0 || len(pair.PublicKey) == 0 {
		t.Fatalf("SDK GenerateDataKeyPair through the proxy = %v", err)
	}
	// KMS's own refusal comes through as itself.
	other, _ := r.fake.Encrypt("other-image-key", secret, nil)
	_, err = app.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: other})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDeniedException" {
		t.Errorf("SDK Decrypt under another image's policy = %v, want AccessDeniedException", err)
	}
	// Another key pair's signature: refused, and KMS never called.
	before := r.fake.Calls("Decrypt")
	thief := awskms.New(awskms.Options{Region: "eu-west-1", BaseEndpoint: aws.String(px.URL), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "not-the-secret", "")})
	_, err = thief.Decrypt(ctx, &awskms.DecryptInput{CiphertextBlob: blob, EncryptionContext: map[string]string{"k": "v"}})
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidSignatureException" || !strings.Contains(ae.ErrorMessage(), "does not match") {
		t.Errorf("Decrypt signed with another secret = %v, want InvalidSignatureException", err)
	}
	if r.fake.Calls("Decrypt") != before {
		t.Errorf("a request with a bad signature reached KMS")
	}
	// An operation the proxy does not serve.
	_, err = app.ListKeys(ctx, &awskms.ListKeysInput{})
	if !errors.As(err, &ae) || ae.ErrorCode() != "UnsupportedOperationException" {
		t.Errorf("ListKeys through the proxy = %v, want UnsupportedOperationException", err)
	}
}
