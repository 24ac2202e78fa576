package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qtenclave/enclave/agent"
	"github.com/qtenclave/enclave/kms/fakekms"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/pcr"
	"github.com/qtenclave/enclave/qtsm/sim"
)

// TestKMS runs every kms command against the fake KMS, through an agent
// on the simulator whose root the fake trusts.
func TestKMS(t *testing.T) {
	m, err := sim.New(sim.Options{Vendor: qtsm.VendorNitro, PCRs: map[int][]byte{0: pcr.Measure([]byte("eif"))}})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "qtsm.sock")
	l, err := agent.Listen(sock, 0o600, -1)
	if err != nil {
		t.Fatal(err)
	}
	srv := agent.New(agent.Config{Module: qtsm.NewSession(m), Device: "sim", Logf: t.Logf})
	go srv.Serve(l)
	t.Cleanup(func() { srv.Shutdown(context.Background()); l.Close() })

	fake := &fakekms.Server{Verify: m.VerifyOptions()}
	fake.AddKey(&fakekms.Key{ID: "enclave-key", RequirePCRs: map[int]string{0: hex.EncodeToString(pcr.Measure([]byte("eif")))}, RequireRecipient: true})
	fake.AddKey(&fakekms.Key{ID: "other-image", RequirePCRs: map[int]string{0: strings.Repeat("00", 48)}})
	hs := httptest.NewServer(fake)
	defer hs.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_REGION", "eu-west-1")

	blob, _ := fake.Encrypt("enclave-key", []byte("s3cr3t"), map[string]string{"app": "payments"})
	other, _ := fake.Encrypt("other-image", []byte("s3cr3t"), nil)
	hblob, _ := fake.Encrypt("enclave-key", []byte("hw-key"), nil)
	fake.Huawei = &fakekms.HuaweiCredentials{AK: "HWAK", SK: "hw-secret"}
	t.Setenv("HUAWEICLOUD_SDK_AK", "HWAK")
	t.Setenv("HUAWEICLOUD_SDK_SK", "hw-secret")
	b64 := base64.StdEncoding.EncodeToString
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	keyPEM := filepath.Join(t.TempDir(), "recipient.pem")
	os.WriteFile(keyPEM, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), 0o600)
	smallPEM := filepath.Join(t.TempDir(), "small.pem")
	sk, _ := rsa.GenerateKey(rand.Reader, 1024)
	os.WriteFile(smallPEM, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(sk)}), 0o600)
	common := []string{"--socket", sock, "kms"}
	for _, c := range []struct {
		name   string
		args   []string
		code   int
		out    string // stdout must contain
		errOut string // stderr must contain
	}{
		{"decrypt", []string{"decrypt", "--endpoint", hs.URL, "--ciphertext", b64(blob), "--key-id", "enclave-key", "--encryption-context", "app=payments"}, 0, b64([]byte("s3cr3t")) + "\n", ""},
		{"decrypt, another image's key", []string{"decrypt", "--endpoint", hs.URL, "--ciphertext", b64(other)}, 1, "", "KMS: AccessDeniedException: the key policy of other-image requires kms:RecipientAttestation:PCR0"},
		{"decrypt, wrong context", []string{"decrypt", "--endpoint", hs.URL, "--ciphertext", b64(blob)}, 1, "", "InvalidCiphertextException"},
		{"generate-random", []string{"generate-random", "--endpoint", hs.URL, "--bytes", "24"}, 0, "", ""},
		{"generate-data-key --json", []string{"generate-data-key", "--endpoint", hs.URL, "--key-id", "enclave-key"}, 0, `"ciphertext_blob":`, ""},
		{"generate-data-key-pair", []string{"generate-data-key-pair", "--endpoint", hs.URL, "--key-id", "enclave-key", "--key-pair-spec", "RSA_2048"}, 0, "", ""},
		{"huawei decrypt", []string{"decrypt", "--vendor", "huawei", "--project-id", "p1", "--endpoint", hs.URL, "--key-id", "enclave-key", "--ciphertext", b64(hblob), "--bytes", "6"}, 0, b64([]byte("hw-key")) + "\n", ""},
		{"huawei decrypt, another image's key", []string{"decrypt", "--vendor", "huawei", "--project-id", "p1", "--endpoint", hs.URL, "--ciphertext", b64(other)}, 1, "", "KMS: KMS.AccessDenied: the key policy of other-image requires kms:RecipientAttestation:PCR0"},
		{"huawei generate-random", []string{"generate-random", "--vendor", "huawei", "--project-id", "p1", "--endpoint", hs.URL, "--bytes", "24"}, 0, "", ""},
		{"huawei generate-data-key", []string{"generate-data-key", "--vendor", "huawei", "--project-id", "p1", "--endpoint", hs.URL, "--key-id", "enclave-key"}, 0, "", ""},
		{"huawei key pair", []string{"generate-data-key-pair", "--vendor", "huawei", "--project-id", "p1", "--key-id", "k"}, 1, "", "is AWS's"},
		{"huawei without a project", []string{"decrypt", "--vendor", "huawei", "--ciphertext", b64(blob)}, 2, "", "--project-id"},
		{"bad base64", []string{"decrypt", "--ciphertext", "%%%"}, 2, "", "standard base64"},
		{"no key id", []string{"generate-data-key"}, 2, "", "--key-id is required"},
		{"decrypt with --recipient-key", []string{"decrypt", "--endpoint", hs.URL, "--ciphertext", b64(blob), "--encryption-context", "app=payments", "--recipient-key", keyPEM}, 0, b64([]byte("s3cr3t")) + "\n", ""},
		{"a 1024-bit --recipient-key", []string{"decrypt", "--endpoint", hs.URL, "--ciphertext", b64(blob), "--recipient-key", smallPEM}, 1, "", "recipient key: RSA key of 1024 bits"},
		{"proxy off loopback", []string{"proxy", "--listen", "0.0.0.0:4000"}, 2, "", "want a loopback address"},
		{"bad context", []string{"decrypt", "--ciphertext", b64(blob), "--encryption-context", "novalue"}, 2, "", "want K=V"},
	} {
		args := append(append([]string{}, common...), c.args...)
		if c.name == "generate-data-key --json" {
			args = append([]string{"--json"}, args...)
		}
		code, out, errOut := runCLI(t, "", args...)
		if code != c.code || !strings.Contains(out, c.out) || !strings.Contains(errOut, c.errOut) {
			t.Errorf("qtsm kms %s = %d, stdout %q, stderr %q; want %d, %q, %q", c.name, code, out, errOut, c.code, c.out, c.errOut)
		}
		switch c.name {
		case "generate-data-key-pair":
			if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out)); err != nil {
				t.Errorf("generate-data-key-pair printed %q", out)
			} else if _, err := x509.ParsePKCS8PrivateKey(b); err != nil {
				t.Errorf("generate-data-key-pair's private key: %v", err)
			}
		case "generate-random", "huawei generate-random":
			if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out)); err != nil || len(b) != 24 {
				t.Errorf("generate-random printed %q", out)
			}
		case "generate-data-key --json":
			var v struct{ Plaintext, Ciphertext_blob []byte }
			if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Plaintext) != 32 || len(v.Ciphertext_blob) == 0 {
				t.Errorf("generate-data-key --json printed %q (%v)", out, err)
			}
		}
	}
	// No environment credentials: the credential chain (a shared
	// credentials file here; IMDS off).
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	shared := filepath.Join(t.TempDir(), "credentials")
	os.WriteFile(shared, []byte("[default]\naws_access_key_id = AKIDFROMFILE\naws_secret_access_key = from-file\n"), 0o600)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", shared)
	if code, out, errOut := runCLI(t, "", append(common, "generate-random", "--endpoint", hs.URL)...); code != 0 {
		t.Errorf("with the shared credentials file = %d %q %q", code, out, errOut)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	if code, _, errOut := runCLI(t, "", append(common, "generate-random", "--endpoint", hs.URL)...); code != 1 || !strings.Contains(errOut, "no AWS credentials") {
		t.Errorf("without credentials = %d %q", code, errOut)
	}
}
