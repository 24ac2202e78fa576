package e2e

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qtenclave/enclave/kms/fakekms"
	"github.com/qtenclave/enclave/rootfs/ocilayout"
)

// TestIntegrationBootKMS: the workload asks the fake KMS, through the qtsm
// CLI and through the agent's POST /v1/kms/decrypt (the agent going out
// through egress itself),
// the fake that qtenclave run serves on the host, to decrypt a secret,
// through egress (to http://kms.fake). The
// first boot's key policy is bound to the EIF's PCR0 as qtenclave build
// printed it: the secret comes back, sealed to the enclave's key on the
// way. The second boot's policy names another PCR0: KMS answers
// AccessDeniedException and the workload's stderr says so (issue 12).
func TestIntegrationBootKMS(t *testing.T) {
	h := setup(t)
	material := make([]byte, 32)
	for i := range material {
		material[i] = byte(i * 7)
	}
	secret := []byte("the secret only a measured enclave may read")
	// The ciphertext, made with the same key as the fake will hold.
	enc := &fakekms.Server{}
	k := &fakekms.Key{ID: "app-key"}
	copy(k.Material[:], material)
	enc.AddKey(k)
	blob, err := enc.Encrypt("app-key", secret, map[string]string{"app": "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	endpoint := fmt.Sprintf("http://kms.fake:%d", port)

	fsdir := filepath.Join(h.tmp, "kms-rootfs")
	if err := os.MkdirAll(fsdir, 0o755); err != nil {
		t.Fatal(err)
	}
	h.goBuild(t, "./agent/cmd/qtsm", filepath.Join(fsdir, "qtsm"))
	h.goBuild(t, "./e2e/testdata/kms-demo", filepath.Join(fsdir, "kms-demo"))
	ref := h.packImage(t, "kms", fsdir, ocilayout.Config{
		Entrypoint: []string{"/kms-demo", endpoint, base64.StdEncoding.EncodeToString(blob), "app-key", "app=e2e"},
		Env:        []string{"AWS_REGION=eu-west-1", "AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=not-a-secret"},
	})
	eifPath, pcrs := h.buildImage(t, "kms", ref, "--egress-allow", fmt.Sprintf("kms.fake:%d", port))

	policy := func(name, pcr0 string) string {
		p := fakekms.Policy{Listen: fmt.Sprintf("127.0.0.1:%d", port), AllowUnsigned: true, Keys: []fakekms.PolicyKey{{
			ID: "app-key", Material: hex.EncodeToString(material), PCRs: map[string]string{"0": pcr0}, RequireRecipient: true}}}
		b, _ := json.Marshal(p)
		path := filepath.Join(h.tmp, name+".json")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	run := []string{"--egress-host", "kms.fake=127.0.0.1"}

	r := h.boot(t, "kms", eifPath, append(run, "--fake-kms", policy("bound", pcrs["PCR0"]))...)
	if r.code != 0 {
		t.Errorf("boot with the policy bound to this PCR0: exit %d, want 0", r.code)
	}
	expect(t, r,
		`^stdout: `+base64.StdEncoding.EncodeToString(secret)+`$`,                  // the CLI
		`^stdout: kms-demo: agent: `+base64.StdEncoding.EncodeToString(secret)+`$`, // the agent's endpoint, out through egress itself
		`^qtenclave-exit: code=0 signal=0 reason=exited$`)
	expectStderr(t, r, `^qtenclave run: fake KMS on http://127.0.0.1:\d+$`)

	other := strings.Repeat("ab", 48)
	r = h.boot(t, "kms-denied", eifPath, append(run, "--fake-kms", policy("other", other))...)
	if r.code != 1 {
		t.Errorf("boot with a policy for another PCR0: exit %d, want 1", r.code)
	}
	expect(t, r,
		`^stderr: qtsm: kms decrypt: KMS: AccessDeniedException: the key policy of app-key requires kms:RecipientAttestation:PCR0 `+other+`; the enclave has `+pcrs["PCR0"]+`$`,
		`^stdout: kms-demo: agent: 403 \{"error":"AccessDeniedException","op":"kms decrypt","detail":"the key policy of app-key requires kms:RecipientAttestation:PCR0 `+other+`; the enclave has `+pcrs["PCR0"]+`"\}$`,
		`^qtenclave-exit: code=1 signal=0 reason=exited$`)
	if strings.Contains(r.stream, base64.StdEncoding.EncodeToString(secret)) {
		t.Errorf("the secret reached the log stream of the denied boot")
	}
}
