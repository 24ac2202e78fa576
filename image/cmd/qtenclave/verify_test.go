package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/attestation"
	"github.com/qtenclave/enclave/qtsm/pcr"
	"github.com/qtenclave/enclave/qtsm/sim"
)

// The real documents and roots live with package attestation.
const (
	attestationData = "../../../qtsm/attestation/testdata/"
	nitroDoc        = attestationData + "nitro-debug-attestation.cose"
	qingtianDoc     = attestationData + "qingtian-attestation.cose"
	nitroRoot       = "../../../qtsm/attestation/roots/aws-nitro-enclaves-root-g1.der"
	qingtianRoot    = "../../../qtsm/attestation/roots/huawei-qingtian-enclaves-root-g1.der"
	// PCR4 of the Qingtian document: extend(zero48, instance UUID).
	qingtianPCR4 = "6ccd06a953f53b37610636e8c7f0f1aa9d2489512776f8a4a22e0790ac62102a736ff160fbff9a293c3a275f19bacc70"
	qingtianNone = "a0567302c6d5749a304ed86dbb3ed4eff6dd9d4e7c575eb7cad11bc55cfd5592"
)

// verifyRun runs "qtenclave verify ARGS" with stdin.
func verifyRun(stdin []byte, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(append([]string{"verify"}, args...), bytes.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyCommand(t *testing.T) {
	nitro, qingtian := readFile(t, nitroDoc), readFile(t, qingtianDoc)
	flipped := bytes.Clone(qingtian)
	flipped[len(flipped)/2] ^= 1
	flippedSig := bytes.Clone(nitro)
	flippedSig[len(flippedSig)-1] ^= 0x80
	flippedPath := writeTemp(t, "flipped.cose", flipped)
	header := bytes.Clone(qingtian)
	header[0] ^= 1 // array of 5
	headerPath := writeTemp(t, "header.cose", header)
	flippedSigPath := writeTemp(t, "flipped-sig.cose", flippedSig)
	b64Path := writeTemp(t, "doc.b64", []byte(base64.StdEncoding.EncodeToString(qingtian)+"\n"))
	hexPath := writeTemp(t, "doc.hex", []byte(hex.EncodeToString(qingtian)))
	garbage := writeTemp(t, "garbage", []byte("not a document"))

	for _, tc := range []struct {
		name    string
		args    []string
		stdin   []byte
		code    int
		stderr  string // substring of the one-line reason
		printed bool   // JSON on stdout
	}{
		{"nitro at doc", []string{"--at", "doc", "--allow-debug", nitroDoc}, nil, exitOK, "", true},
		{"qingtian at doc", []string{"--at", "doc", qingtianDoc}, nil, exitOK, "", true},
		{"qingtian at doc, forced vendor", []string{"--vendor", "qingtian", "--at=doc", qingtianDoc}, nil, exitOK, "", true},
		{"qingtian at its time + 10m with max-age 15m", []string{"--at", "2026-07-20T11:33:26Z", "--max-age", "15m", qingtianDoc}, nil, exitOK, "", true},
		{"qingtian expectations met", []string{"--at", "doc", "--pcr", "4=" + qingtianPCR4, "--nonce", qingtianNone, "--user-data", "", qingtianDoc}, nil, exitOK, "", true},
		{"qingtian root given", []string{"--at", "doc", "--root", qingtianRoot, qingtianDoc}, nil, exitOK, "", true},
		{"base64 input", []string{"--at", "doc", b64Path}, nil, exitOK, "", true},
		{"hex input", []string{"--at", "doc", hexPath}, nil, exitOK, "", true},
		{"stdin", []string{"--at", "doc", "-"}, qingtian, exitOK, "", true},

		{"nitro at now", []string{"--allow-debug", nitroDoc}, nil, exitFailed, "not valid at", true},
		{"qingtian at now", []string{qingtianDoc}, nil, exitFailed, "not valid at", true},
		{"nitro without allow-debug", []string{"--at", "doc", nitroDoc}, nil, exitFailed, "debug", true},
		{"flipped payload byte", []string{"--at", "doc", flippedPath}, nil, exitFailed, "signature does not verify", true},
		{"flipped header byte", []string{"--at", "doc", headerPath}, nil, exitFailed, "malformed", false},
		{"flipped signature byte", []string{"--at", "doc", "--allow-debug", flippedSigPath}, nil, exitFailed, "signature does not verify", true},
		{"other vendor's root", []string{"--at", "doc", "--root", nitroRoot, qingtianDoc}, nil, exitFailed, "chain", true},
		{"other vendor", []string{"--at", "doc", "--vendor", "nitro", qingtianDoc}, nil, exitFailed, "wrong vendor", true},
		{"too old", []string{"--at", "2026-07-20T11:43:26Z", "--max-age", "15m", qingtianDoc}, nil, exitFailed, "too old", true},
		{"wrong PCR", []string{"--at", "doc", "--pcr", "4=" + strings.Repeat("00", 48), qingtianDoc}, nil, exitFailed, "PCR4", true},
		{"wrong nonce", []string{"--at", "doc", "--nonce", "00", qingtianDoc}, nil, exitFailed, "nonce mismatch", true},
		{"user data expected", []string{"--at", "doc", "--user-data", "01", qingtianDoc}, nil, exitFailed, "user_data mismatch", true},
		{"garbage", []string{garbage}, nil, exitFailed, "malformed", false},
		{"missing file", []string{filepath.Join(t.TempDir(), "none")}, nil, exitFailed, "no such file", false},

		{"no document", nil, nil, exitUsage, "", false},
		{"two documents", []string{nitroDoc, qingtianDoc}, nil, exitUsage, "", false},
		{"bad vendor", []string{"--vendor", "intel", nitroDoc}, nil, exitUsage, "unknown vendor", false},
		{"bad time", []string{"--at", "yesterday", nitroDoc}, nil, exitUsage, "--at", false},
		{"bad pcr", []string{"--pcr", "40=00", nitroDoc}, nil, exitUsage, "PCR index", false},
		{"bad pcr hex", []string{"--pcr", "4=zz", nitroDoc}, nil, exitUsage, "not hex", false},
		{"short pcr", []string{"--pcr", "4=0011", nitroDoc}, nil, exitUsage, "2 bytes", false},
		{"bad nonce", []string{"--nonce", "xyz", nitroDoc}, nil, exitUsage, "not hex", false},
		{"missing root", []string{"--root", "/nonexistent.der", nitroDoc}, nil, exitUsage, "--root", false},
		{"bad root", []string{"--root", garbage, nitroDoc}, nil, exitUsage, "--root", false},
		{"negative max-age", []string{"--max-age", "-1m", nitroDoc}, nil, exitUsage, "negative", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := verifyRun(tc.stdin, tc.args...)
			if code != tc.code {
				t.Fatalf("verify %v = exit %d, want %d; stderr: %s", tc.args, code, tc.code, errOut)
			}
			if !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr %q, want it to mention %q", errOut, tc.stderr)
			}
			if tc.code == exitFailed && strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("stderr has %d lines, want one: %q", strings.Count(errOut, "\n"), errOut)
			}
			if (out != "") != tc.printed {
				t.Fatalf("stdout printed %v, want %v: %q", out != "", tc.printed, out)
			}
			if !tc.printed {
				return
			}
			var j documentJSON
			if err := json.Unmarshal([]byte(out), &j); err != nil {
				t.Fatalf("stdout is not the document JSON: %v\n%s", err, out)
			}
			if j.Verification.Valid != (tc.code == exitOK) {
				t.Errorf("verification.valid = %v, exit %d", j.Verification.Valid, code)
			}
			if tc.code == exitFailed && j.Verification.Error == "" {
				t.Error("verification.error empty for an invalid document")
			}
		})
	}
}

// TestVerifyJSON checks the printed fields of the Qingtian document.
func TestVerifyJSON(t *testing.T) {
	code, out, errOut := verifyRun(nil, "--at", "doc", qingtianDoc)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var j struct {
		Vendor      string            `json:"vendor"`
		ModuleID    string            `json:"module_id"`
		Timestamp   string            `json:"timestamp"`
		TimestampMS uint64            `json:"timestamp_ms"`
		PCRs        map[string]string `json:"pcrs"`
		Certificate struct {
			Subject  string `json:"subject"`
			NotAfter string `json:"not_after"`
		} `json:"certificate"`
		CABundle     []struct{ Subject, SHA256 string } `json:"cabundle"`
		UserData     *string                            `json:"user_data"`
		Nonce        *string                            `json:"nonce"`
		PublicKey    *string                            `json:"public_key"`
		Verification struct {
			Valid     bool   `json:"valid"`
			At        string `json:"at"`
			Signature string `json:"signature_encoding"`
			RootVend  string `json:"root_vendor"`
		} `json:"verification"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"vendor", j.Vendor, "qingtian"},
		{"module_id", j.ModuleID, "4662b7a3-7898-46c9-a6c5-20e9025e50bc.enc-37d1e07b3da3c427"},
		{"timestamp", j.Timestamp, "2026-07-20T11:23:26.196Z"},
		{"pcrs[4]", j.PCRs["4"], qingtianPCR4},
		{"pcrs[4] = extend(zero, uuid)", j.PCRs["4"], hex.EncodeToString(pcr.Extend(pcr.Zero(), []byte("4662b7a3-7898-46c9-a6c5-20e9025e50bc")))},
		{"certificate not_after", j.Certificate.NotAfter, "2026-07-20T14:21:28Z"},
		{"cabundle[0] sha256", j.CABundle[0].SHA256, "f23443b4eb52a70719df49bdda0e57bb25f1c04530885dbecdbde241c8c4f581"},
		{"nonce", deref(j.Nonce), qingtianNone},
		{"user_data", deref(j.UserData), ""},
		{"verification.at", j.Verification.At, "2026-07-20T11:23:26.196Z"},
		{"signature encoding", j.Verification.Signature, "little-endian"},
		{"root vendor", j.Verification.RootVend, "qingtian"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if j.TimestampMS != 1784546606196 || len(j.PCRs) != 16 || len(j.CABundle) != 4 || j.UserData == nil || j.PublicKey == nil || !j.Verification.Valid {
		t.Errorf("timestamp_ms %d, %d PCRs, %d cabundle, user_data nil %v, public_key nil %v, valid %v",
			j.TimestampMS, len(j.PCRs), len(j.CABundle), j.UserData == nil, j.PublicKey == nil, j.Verification.Valid)
	}
	// PCRs print in index order.
	if i2, i10 := strings.Index(out, `"2":`), strings.Index(out, `"10":`); i2 < 0 || i10 < 0 || i2 > i10 {
		t.Errorf("PCRs not in index order (\"2\" at %d, \"10\" at %d)", i2, i10)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// TestVerifySimulator: a document from the simulated module verifies with
// its root given as PEM, and only with it; an unsigned emulator document
// needs --allow-unsigned.
func TestVerifySimulator(t *testing.T) {
	for _, v := range []qtsm.Vendor{qtsm.VendorNitro, qtsm.VendorQingtian} {
		m, err := sim.New(sim.Options{Vendor: v, PCRs: map[int][]byte{0: pcr.Measure([]byte("image"))}})
		if err != nil {
			t.Fatal(err)
		}
		nonce := []byte("fresh nonce")
		doc, err := qtsm.NewSession(m).Attestation(context.Background(), qtsm.AttestationRequest{Nonce: nonce})
		if err != nil {
			t.Fatal(err)
		}
		docPath := writeTemp(t, "sim.cose", doc)
		root := writeTemp(t, "root.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.RootDER()}))
		if code, _, errOut := verifyRun(nil, "--root", root, "--vendor", v.String(), "--max-age", "1m", "--nonce", hex.EncodeToString(nonce), docPath); code != exitOK {
			t.Errorf("%s sim document with its root = exit %d: %s", v, code, errOut)
		}
		if code, _, _ := verifyRun(nil, docPath); code != exitFailed {
			t.Errorf("%s sim document with the embedded roots = exit %d, want %d", v, code, exitFailed)
		}
	}

	zero := make([]byte, 64)
	unsigned, err := attestation.Sign(&attestation.Document{ModuleID: "i-234-enc5678", Timestamp: time.Now(),
		PCRs: map[int][]byte{0: pcr.Measure([]byte("image"))}, Certificate: zero, CABundle: [][]byte{zero}},
		nil, attestation.SignOptions{Unsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	p := writeTemp(t, "qemu.cose", unsigned)
	if code, _, errOut := verifyRun(nil, p); code != exitFailed || !strings.Contains(errOut, "unsigned") {
		t.Errorf("unsigned document = exit %d (%q), want %d mentioning unsigned", code, errOut, exitFailed)
	}
	code, out, errOut := verifyRun(nil, "--allow-unsigned", p)
	if code != exitOK || !strings.Contains(out, `"unsigned": true`) {
		t.Errorf("unsigned document with --allow-unsigned = exit %d (%q), want ok and unsigned in the JSON", code, errOut)
	}
}

// TestVerifyHugeInput: a file or stdin larger than any document is refused
// before it is read into memory (issue 14, item 7: a 3 GB file took 11 GB).
func TestVerifyHugeInput(t *testing.T) {
	big := filepath.Join(t.TempDir(), "huge.cose")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(3 << 30); err != nil { // sparse: 3 GiB that take no disk
		t.Fatal(err)
	}
	f.Close()
	var out, errb bytes.Buffer
	if code := run([]string{"verify", big}, nil, &out, &errb); code != exitFailed || !strings.Contains(errb.String(), "more than an attestation document can be") {
		t.Errorf("verify 3 GiB file = %d, %q; want %d and a size error", code, errb.String(), exitFailed)
	}
	errb.Reset()
	stdin := io.LimitReader(zeroReader{}, 1<<30)
	if code := run([]string{"verify", "-"}, stdin, &out, &errb); code != exitFailed || !strings.Contains(errb.String(), "more than") {
		t.Errorf("verify - (1 GiB on stdin) = %d, %q; want %d and a size error", code, errb.String(), exitFailed)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }
