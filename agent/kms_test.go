package agent_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/qtenclave/enclave/agent"
	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/kms"
	"github.com/qtenclave/enclave/kms/fakekms"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/pcr"

	"github.com/aws/aws-sdk-go-v2/credentials"
)

// kmsRig is an agent on the simulator and a fake KMS trusting its root.
func kmsRig(t testing.TB) (sock, url string, fake *fakekms.Server, module *qtsm.Session) {
	m := newSim(t, qtsm.VendorNitro)
	fake = &fakekms.Server{Verify: m.VerifyOptions(), Huawei: &fakekms.HuaweiCredentials{AK: "HWAK", SK: "hw-secret"}}
	fake.AddKey(&fakekms.Key{ID: "enclave-key", RequirePCRs: map[int]string{0: hex.EncodeToString(pcr.Measure([]byte("eif")))}, RequireRecipient: true})
	fake.AddKey(&fakekms.Key{ID: "other-image", RequirePCRs: map[int]string{0: strings.Repeat("00", 48)}})
	hs := httptest.NewServer(fake)
	t.Cleanup(hs.Close)
	module = qtsm.NewSession(m)
	a := startAgent(t, module, "", func(c *agent.Config) { c.Logf = func(string, ...any) {} })
	return a.socket, hs.URL, fake, module
}

func kmsCall(t testing.TB, sock, op string, req api.KMSRequest) (int, string, api.KMSResponse) {
	t.Helper()
	body, _ := json.Marshal(req)
	status, name, b := rawDo(t, sock, http.MethodPost, "/v1/kms/"+op, map[string]string{"Content-Type": api.MediaJSON}, body)
	var out api.KMSResponse
	if status == 200 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("POST /v1/kms/%s: %s: %v", op, b, err)
		}
	}
	return status, name, out
}

// TestKMSEndpoint runs every KMS operation through the agent against the
// fake, both vendors, and its refusals.
func TestKMSEndpoint(t *testing.T) {
	sock, url, fake, _ := kmsRig(t)
	aws := api.KMSCredentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret"}
	blob, _ := fake.Encrypt("enclave-key", []byte("the secret"), map[string]string{"app": "x"})
	other, _ := fake.Encrypt("other-image", []byte("the secret"), nil)
	for _, c := range []struct {
		name, op string
		req      api.KMSRequest
		status   int
		err      string
		check    func(api.KMSResponse) bool
	}{
		{"decrypt", "decrypt", api.KMSRequest{Endpoint: url, Region: "eu-west-1", Ciphertext: blob, EncryptionContext: map[string]string{"app": "x"}, Credentials: aws}, 200, "",
			func(r api.KMSResponse) bool { return string(r.Plaintext) == "the secret" }},
		{"decrypt under another image's policy", "decrypt", api.KMSRequest{Endpoint: url, Region: "eu-west-1", Ciphertext: other, Credentials: aws}, 403, "AccessDeniedException", nil},
		{"generate-data-key", "generate-data-key", api.KMSRequest{Endpoint: url, Region: "eu-west-1", KeyID: "enclave-key", Credentials: aws}, 200, "",
			func(r api.KMSResponse) bool { return len(r.Plaintext) == 32 && len(r.CiphertextBlob) > 0 }},
		{"generate-data-key-pair", "generate-data-key-pair", api.KMSRequest{Endpoint: url, Region: "eu-west-1", KeyID: "enclave-key", Credentials: aws}, 200, "",
			func(r api.KMSResponse) bool {
				return len(r.Plaintext) > 0 && len(r.PublicKey) > 0 && len(r.CiphertextBlob) > 0
			}},
		{"generate-random", "generate-random", api.KMSRequest{Endpoint: url, Region: "eu-west-1", Bytes: 40, Credentials: aws}, 200, "",
			func(r api.KMSResponse) bool { return len(r.Plaintext) == 40 }},
		{"huawei decrypt without a ciphertext", "decrypt", api.KMSRequest{Vendor: "huawei", Endpoint: url, ProjectID: "p", KeyID: "enclave-key", Credentials: api.KMSCredentials{AccessKeyID: "HWAK", SecretAccessKey: "hw-secret"}}, 400, api.ErrBadRequest, nil},
		{"no credentials", "decrypt", api.KMSRequest{Endpoint: url, Ciphertext: blob}, 400, api.ErrBadRequest, nil},
		{"unknown operation", "encrypt", api.KMSRequest{Endpoint: url, Credentials: aws}, 404, api.ErrNotFound, nil},
		{"huawei generate-random", "generate-random", api.KMSRequest{Vendor: "huawei", Endpoint: url, ProjectID: "p", Bytes: 16, Credentials: api.KMSCredentials{AccessKeyID: "HWAK", SecretAccessKey: "hw-secret"}}, 200, "",
			func(r api.KMSResponse) bool { return len(r.Plaintext) == 16 }},
		{"huawei generate-data-key", "generate-data-key", api.KMSRequest{Vendor: "huawei", Endpoint: url, ProjectID: "p", KeyID: "enclave-key", Credentials: api.KMSCredentials{AccessKeyID: "HWAK", SecretAccessKey: "hw-secret"}}, 200, "",
			func(r api.KMSResponse) bool { return len(r.Plaintext) == 32 && len(r.CiphertextBlob) > 0 }},
		{"huawei key pair", "generate-data-key-pair", api.KMSRequest{Vendor: "huawei", Endpoint: url, KeyID: "k", Credentials: aws}, 400, api.ErrBadRequest, nil},
	} {
		status, name, out := kmsCall(t, sock, c.op, c.req)
		if status != c.status || name != c.err || (c.check != nil && !c.check(out)) {
			t.Errorf("%s: POST /v1/kms/%s = %d %s %+v; want %d %s", c.name, c.op, status, name, out, c.status, c.err)
		}
	}
	// Huawei, with a ciphertext of its own.
	hblob, _ := fake.Encrypt("enclave-key", []byte("hw data key"), nil)
	status, name, out := kmsCall(t, sock, "decrypt", api.KMSRequest{Vendor: "huawei", Endpoint: url, ProjectID: "p", KeyID: "enclave-key", Ciphertext: hblob, Bytes: 11,
		Credentials: api.KMSCredentials{AccessKeyID: "HWAK", SecretAccessKey: "hw-secret"}})
	if status != 200 || string(out.Plaintext) != "hw data key" {
		t.Errorf("huawei decrypt through the agent = %d %s %q", status, name, out.Plaintext)
	}
}

// BenchmarkKMSDecrypt compares a decrypt through the agent's endpoint (a
// key from its pool, the document through its queue) with the library in
// process (its recipient key made once), against the same fake KMS in the
// same run.
func BenchmarkKMSDecrypt(b *testing.B) {
	sock, url, fake, module := kmsRig(b)
	blob, _ := fake.Encrypt("enclave-key", []byte("the secret"), nil)
	creds := api.KMSCredentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret"}
	b.Run("agent", func(b *testing.B) {
		kmsCall(b, sock, "decrypt", api.KMSRequest{Endpoint: url, Region: "eu-west-1", Ciphertext: blob, Credentials: creds})
		for b.Loop() {
			if status, name, _ := kmsCall(b, sock, "decrypt", api.KMSRequest{Endpoint: url, Region: "eu-west-1", Ciphertext: blob, Credentials: creds}); status != 200 {
				b.Fatalf("decrypt through the agent: %d %s", status, name)
			}
		}
	})
	// Spaced requests, as an application makes them: the pool has a key
	// ready (the wait between requests is not timed).
	b.Run("agent, a key ready", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			time.Sleep(300 * time.Millisecond)
			b.StartTimer()
			if status, name, _ := kmsCall(b, sock, "decrypt", api.KMSRequest{Endpoint: url, Region: "eu-west-1", Ciphertext: blob, Credentials: creds}); status != 200 {
				b.Fatalf("decrypt through the agent: %d %s", status, name)
			}
		}
	})
	b.Run("library", func(b *testing.B) {
		rec, err := kms.NewRecipient(module, nil)
		if err != nil {
			b.Fatal(err)
		}
		a := &kms.AWS{Client: kms.NewAWSClient("eu-west-1", url, credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")), Recipient: rec}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for b.Loop() {
			if _, err := a.Decrypt(ctx, blob, "", nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
