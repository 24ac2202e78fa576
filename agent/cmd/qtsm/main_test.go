package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qtenclave/enclave/agent"
	"github.com/qtenclave/enclave/agent/internal/fakemod"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/pcr"
)

func startAgent(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qtsm.sock")
	l, err := agent.Listen(sock, 0o600, -1)
	if err != nil {
		t.Fatal(err)
	}
	srv := agent.New(agent.Config{Module: qtsm.NewSession(fakemod.New()), Device: "fake", Logf: t.Logf})
	go srv.Serve(l)
	t.Cleanup(func() { srv.Shutdown(context.Background()); l.Close() })
	return sock
}

func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestCLI(t *testing.T) {
	sock := startAgent(t)
	dir := t.TempDir()
	zero := hex.EncodeToString(pcr.Zero())
	kat := "cb178fcd3f328244c05c6248723fd068b3a1dda878e1ab8be911098f199958add55d0c27f04826d27b44d949a650694e"
	docFile := filepath.Join(dir, "doc.cbor")
	for _, tc := range []struct {
		stdin string
		args  []string
		code  int
		out   string // substring of stdout
		err   string // substring of stderr
	}{
		{"", []string{"describe"}, 0, "module_id: fake-module\n", ""},
		{"", []string{"--json", "describe"}, 0, `"module_id": "fake-module"`, ""},
		{"", []string{"pcr", "read", "16", "3"}, 0, "pcr16: " + zero + " unlocked\npcr3: " + zero + " locked\n", ""},
		{"", []string{"pcr", "read"}, 0, "pcr31: " + zero + " unlocked\n", ""},
		{"", []string{"pcr", "extend", "16", "--hex", "010203"}, 0, "pcr16: " + kat + "\n", ""},
		{"\x01\x02\x03", []string{"pcr", "extend", "17"}, 0, "pcr17: " + kat + "\n", ""},
		{"\x01\x02\x03", []string{"pcr", "extend", "18", "-"}, 0, "pcr18: " + kat + "\n", ""},
		{"", []string{"pcr", "extend", "--string", "\x01\x02\x03", "19"}, 0, "pcr19: " + kat + "\n", ""},
		{"", []string{"--json", "pcr", "extend", "20", "--hex", "010203"}, 0, `"value": "` + kat + `"`, ""},
		{"", []string{"pcr", "lock", "16"}, 0, "pcr16: locked\n", ""},
		{"", []string{"pcr", "extend", "16", "--hex", "00"}, 1, "", "ReadOnlyIndex"},
		{"", []string{"pcr", "lock", "16"}, 1, "", "ReadOnlyIndex"},
		{"", []string{"pcr", "lock", "3"}, 1, "", "InvalidIndex"},
		{"", []string{"pcr", "lock-range", "18"}, 0, "pcr0-17: locked\n", ""},
		{"", []string{"pcr", "read", "17"}, 0, "pcr17: " + kat + " locked\n", ""},
		{"", []string{"attest", "--nonce", "0102", "--user-data", "", "--out", docFile}, 0, "", ""},
		{"", []string{"random", "100"}, 0, "", ""},
		{"", []string{"random", "--raw", "5"}, 0, "", ""},
		{"", []string{"--json", "random", "3"}, 0, `"random": "`, ""},
		// usage
		{"", nil, 2, "", "usage"},
		{"", []string{"bogus"}, 2, "", "unknown command"},
		{"", []string{"--bogus", "describe"}, 2, "", "flag provided but not defined"},
		{"", []string{"describe", "x"}, 2, "", "takes no arguments"},
		{"", []string{"pcr"}, 2, "", "want read"},
		{"", []string{"pcr", "read", "32"}, 2, "", "want 0..31"},
		{"", []string{"pcr", "extend"}, 2, "", "pcr extend INDEX"},
		{"", []string{"pcr", "extend", "16", "--hex", "zz"}, 2, "", "--hex"},
		{"", []string{"pcr", "extend", "16", "--hex", "00", "--string", "a"}, 2, "", "one way only"},
		{"", []string{"pcr", "lock-range", "33"}, 2, "", "want 0..32"},
		{"", []string{"attest", "--nonce", "zz"}, 2, "", "--nonce"},
		{"", []string{"random", "0"}, 2, "", "want 1.."},
	} {
		args := append([]string{"--socket", sock}, tc.args...)
		code, out, errs := runCLI(t, tc.stdin, args...)
		if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errs, tc.err) {
			t.Errorf("qtsm %q = %d, stdout %q, stderr %q; want %d, stdout containing %q, stderr containing %q",
				tc.args, code, out, errs, tc.code, tc.out, tc.err)
		}
	}

	doc, err := os.ReadFile(docFile)
	if err != nil {
		t.Fatal(err)
	}
	d, err := fakemod.ParseDoc(doc)
	if err != nil || !bytes.Equal(d.Nonce, []byte{1, 2}) || d.UserData == nil || len(d.UserData) != 0 {
		t.Errorf("attest --out: document %+v, %v; want nonce 0102 and empty user_data", d, err)
	}
	code, out, _ := runCLI(t, "", "--socket", sock, "attest", "--base64")
	if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out)); code != 0 || err != nil || b[0] != 0x84 {
		t.Errorf("attest --base64 = %d %q, want base64 of a COSE document", code, out)
	}
	code, out, _ = runCLI(t, "", "--socket", sock, "random", "100")
	if b, err := hex.DecodeString(strings.TrimSpace(out)); code != 0 || err != nil || len(b) != 100 {
		t.Errorf("random 100 = %d %q, want 100 bytes in hex", code, out)
	}
	code, out, _ = runCLI(t, "", "--socket", sock, "random", "--raw", "5")
	if code != 0 || len(out) != 5 {
		t.Errorf("random --raw 5 = %d, %d bytes, want 5 raw bytes", code, len(out))
	}
}

// TestCLIFallback: without an agent socket the CLI opens the device itself.
func TestCLIFallback(t *testing.T) {
	if _, err := qtsm.DetectDevice(); err == nil {
		t.Skip("skipped: this machine has a secure-module device; the fallback would use it")
	}
	code, _, errs := runCLI(t, "", "--socket", filepath.Join(t.TempDir(), "none.sock"), "describe")
	if code != 1 || !strings.Contains(errs, "no agent at") || !strings.Contains(errs, "no secure-module device") {
		t.Errorf("describe without agent or device = %d, %q; want 1 and both failures named", code, errs)
	}
	code, _, errs = runCLI(t, "", "--direct", "describe")
	if code != 1 || !strings.Contains(errs, "no secure-module device") {
		t.Errorf("--direct describe without device = %d, %q; want 1, no device", code, errs)
	}
}
