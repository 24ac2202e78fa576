package kms_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/qtenclave/enclave/kms"
	"github.com/qtenclave/enclave/kms/fakekms"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/pcr"
	"github.com/qtenclave/enclave/qtsm/sim"
)

// rig is an enclave (the simulator, PCR0 = the measure of "eif") and a
// fake KMS that trusts the simulator's root, on loopback.
type rig struct {
	fake   *fakekms.Server
	url    string
	module *qtsm.Session
	pcr0   string
}

func newRig(t *testing.T, wrap func(http.Handler) http.Handler) *rig {
	t.Helper()
	m, err := sim.New(sim.Options{Vendor: qtsm.VendorNitro, PCRs: map[int][]byte{0: pcr.Measure([]byte("eif"))}})
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakekms.Server{Verify: m.VerifyOptions()}
	pcr0 := hex.EncodeToString(pcr.Measure([]byte("eif")))
	fake.AddKey(&fakekms.Key{ID: "enclave-key", RequirePCRs: map[int]string{0: pcr0}, RequireRecipient: true})
	fake.AddKey(&fakekms.Key{ID: "other-image-key", RequirePCRs: map[int]string{0: strings.Repeat("ab", 48)}})
	var h http.Handler = fake
	if wrap != nil {
		h = wrap(fake)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &rig{fake: fake, url: srv.URL, module: qtsm.NewSession(m), pcr0: pcr0}
}

func (r *rig) client(t *testing.T) *kms.AWS {
	t.Helper()
	rec, err := kms.NewRecipient(r.module, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := kms.NewAWSClient("eu-west-1", r.url, credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""))
	return &kms.AWS{Client: c, Recipient: rec}
}

func TestDecrypt(t *testing.T) {
	r := newRig(t, nil)
	a := r.client(t)
	ctx := context.Background()
	secret := []byte("the database password")
	encCtx := map[string]string{"app": "payments"}
	blob, err := r.fake.Encrypt("enclave-key", secret, encCtx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Decrypt(ctx, blob, "enclave-key", encCtx)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Decrypt = %q, %v; want %q", got, err, secret)
	}
	// Another encryption context: KMS refuses the ciphertext.
	_, err = a.Decrypt(ctx, blob, "", map[string]string{"app": "other"})
	var se *kms.StepError
	if !errors.As(err, &se) || se.Step != kms.StepKMS || se.Code != "InvalidCiphertextException" {
		t.Errorf("Decrypt with another context = %v, want KMS's InvalidCiphertextException", err)
	}
	// A key whose policy names another image's PCR0.
	other, _ := r.fake.Encrypt("other-image-key", secret, nil)
	_, err = a.Decrypt(ctx, other, "", nil)
	if !errors.As(err, &se) || se.Code != "AccessDeniedException" || !strings.Contains(se.Message, "PCR0") {
		t.Errorf("Decrypt under another image's policy = %v, want AccessDeniedException naming PCR0", err)
	}
}

func TestGenerateDataKeyAndRandom(t *testing.T) {
	r := newRig(t, nil)
	a := r.client(t)
	ctx := context.Background()
	dk, blob, err := a.GenerateDataKey(ctx, "enclave-key", 0, nil)
	if err != nil || len(dk) != 32 || len(blob) == 0 {
		t.Fatalf("GenerateDataKey = %d bytes, blob %d, %v", len(dk), len(blob), err)
	}
	back, err := a.Decrypt(ctx, blob, "", nil)
	if err != nil || !bytes.Equal(back, dk) {
		t.Errorf("Decrypt(the data key's blob) = %x, %v; want %x", back, err, dk)
	}
	priv, pub, pblob, err := a.GenerateDataKeyPair(ctx, "enclave-key", "ECC_NIST_P256", nil)
	if err != nil {
		t.Fatalf("GenerateDataKeyPair = %v", err)
	}
	k, perr := x509.ParsePKCS8PrivateKey(priv)
	ek, ok := k.(*ecdsa.PrivateKey)
	pk, _ := x509.ParsePKIXPublicKey(pub)
	if perr != nil || !ok || !ek.PublicKey.Equal(pk) {
		t.Errorf("the data key pair's private key (%v) does not match its public key", perr)
	}
	if back, err := a.Decrypt(ctx, pblob, "", nil); err != nil || !bytes.Equal(back, priv) {
		t.Errorf("Decrypt(the private key's blob) = %v", err)
	}
	rnd, err := a.GenerateRandom(ctx, 48)
	if err != nil || len(rnd) != 48 {
		t.Errorf("GenerateRandom(48) = %d bytes, %v", len(rnd), err)
	}
}

// TestAnswersRefused: answers that must not be trusted are refused, each
// naming its step.
func TestAnswersRefused(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(map[string]any)
		raw  string
		code int
		step string
		msg  string
	}{
		{"a Plaintext where a recipient was given", func(m map[string]any) {
			m["Plaintext"] = m["CiphertextForRecipient"]
			delete(m, "CiphertextForRecipient")
		}, "", 200, kms.StepAnswer, "dropped on the way"},
		{"no CiphertextForRecipient", func(m map[string]any) { delete(m, "CiphertextForRecipient") }, "", 200, kms.StepAnswer, "no CiphertextForRecipient"},
		{"an envelope for another key", func(m map[string]any) {
			b, _ := m["CiphertextForRecipient"].(string)
			m["CiphertextForRecipient"] = b[:len(b)-8] + "AAAAAAA="
		}, "", 200, kms.StepEnvelope, "envelope"},
		{"not JSON", nil, "<html>gateway</html>", 200, kms.StepKMS, ""},
		{"HTTP 500", nil, `{"__type":"KMSInternalException","message":"boom"}`, 500, kms.StepKMS, "KMSInternalException"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
					if c.raw != "" {
						w.Header().Set("Content-Type", "application/x-amz-json-1.1")
						if c.code != 200 {
							w.Header().Set("X-Amzn-ErrorType", "KMSInternalException")
						}
						w.WriteHeader(c.code)
						io.WriteString(w, c.raw)
						return
					}
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					var m map[string]any
					json.Unmarshal(rec.Body.Bytes(), &m)
					c.edit(m)
					w.Header().Set("Content-Type", "application/x-amz-json-1.1")
					json.NewEncoder(w).Encode(m)
				})
			})
			a := r.client(t)
			_, err := a.GenerateRandom(context.Background(), 16)
			var se *kms.StepError
			if !errors.As(err, &se) || se.Step != c.step || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("GenerateRandom with %s = %v, want step %q mentioning %q", c.name, err, c.step, c.msg)
			}
		})
	}
}

// TestUnsignedDocumentDenied: the fake refuses a document that does not
// verify against its root (here: a root it does not trust).
func TestUnsignedDocumentDenied(t *testing.T) {
	r := newRig(t, nil)
	other, err := sim.New(sim.Options{Vendor: qtsm.VendorNitro})
	if err != nil {
		t.Fatal(err)
	}
	r.fake.Verify = other.VerifyOptions() // trusts another module's root
	a := r.client(t)
	_, err = a.GenerateRandom(context.Background(), 16)
	var se *kms.StepError
	if !errors.As(err, &se) || se.Code != "AccessDeniedException" || !strings.Contains(se.Message, "does not verify") {
		t.Errorf("GenerateRandom with an untrusted document = %v, want AccessDeniedException", err)
	}
}
