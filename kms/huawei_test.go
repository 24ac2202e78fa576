package kms_test

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/qtenclave/enclave/kms"
	"github.com/qtenclave/enclave/kms/fakekms"
)

// TestHuaweiSignatureKAT is the example of Huawei's public API-signing
// guide: its string to sign and secret key give its signature.
func TestHuaweiSignatureKAT(t *testing.T) {
	sts := "SDK-HMAC-SHA256\n20191115T033655Z\nb25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
	want := "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
	if got := kms.HuaweiSignature("MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc", sts); got != want {
		t.Errorf("HuaweiSignature = %s, want %s", got, want)
	}
}

// TestHuaweiDecryptDataKey runs the Huawei-shaped flow against the fake:
// signed requests, the recipient, the policy, and the refusals.
func TestHuaweiDecryptDataKey(t *testing.T) {
	r := newRig(t, nil)
	r.fake.Huawei = &fakekms.HuaweiCredentials{AK: "AK1234567890", SK: "the-secret-key"}
	rec, err := kms.NewRecipient(r.module, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &kms.Huawei{Endpoint: r.url, ProjectID: "0123456789abcdef", AK: "AK1234567890", SK: "the-secret-key", Recipient: rec}
	ctx := context.Background()
	dk := []byte("0123456789abcdef0123456789abcdef")
	blob, _ := r.fake.Encrypt("enclave-key", dk, nil)
	got, err := h.DecryptDataKey(ctx, "enclave-key", hex.EncodeToString(blob), len(dk))
	if err != nil || string(got) != string(dk) {
		t.Fatalf("DecryptDataKey = %q, %v", got, err)
	}
	other, _ := r.fake.Encrypt("other-image-key", dk, nil)
	_, err = h.DecryptDataKey(ctx, "other-image-key", hex.EncodeToString(other), len(dk))
	var se *kms.StepError
	if !errors.As(err, &se) || se.Code != "KMS.AccessDenied" || !strings.Contains(se.Message, "PCR0") {
		t.Errorf("DecryptDataKey under another image's policy = %v, want KMS.AccessDenied naming PCR0", err)
	}
	key, cipherHex, err := h.CreateDataKey(ctx, "enclave-key", 32)
	if err != nil || len(key) != 32 {
		t.Fatalf("CreateDataKey = %d bytes, %v", len(key), err)
	}
	if back, err := h.DecryptDataKey(ctx, "enclave-key", cipherHex, 32); err != nil || string(back) != string(key) {
		t.Errorf("DecryptDataKey(CreateDataKey's cipher_text) = %x, %v; want %x", back, err, key)
	}
	if rnd, err := h.GenRandom(ctx, 24); err != nil || len(rnd) != 24 {
		t.Errorf("GenRandom(24) = %d bytes, %v", len(rnd), err)
	}
	bad := *h
	bad.SK = "not-the-secret"
	_, err = bad.DecryptDataKey(ctx, "enclave-key", hex.EncodeToString(blob), len(dk))
	if !errors.As(err, &se) || se.Code != "APIGW.0301" {
		t.Errorf("DecryptDataKey signed with another SK = %v, want APIGW.0301", err)
	}
	if r.fake.Calls("huawei:decrypt-datakey") != 3 {
		t.Errorf("the fake served %d decrypt-datakey calls, want 3 (the badly signed one refused before)", r.fake.Calls("huawei:decrypt-datakey"))
	}
}
