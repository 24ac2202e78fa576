package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qtenclave/enclave/agent"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/pcr"
	"github.com/qtenclave/enclave/qtsm/sim"
)

// startAgent serves a simulator with PCR0 preset, on a socket that appears
// only after delay (the demo must wait for it).
func startAgent(t *testing.T, delay time.Duration) (string, *sim.Module) {
	t.Helper()
	pcr0 := pcr.Measure([]byte("image"))
	m, err := sim.New(sim.Options{PCRs: map[int][]byte{0: pcr0}})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "qtsm.sock")
	srv := agent.New(agent.Config{Module: qtsm.NewSession(m), Device: "sim", Logf: t.Logf})
	started := make(chan struct{})
	go func() {
		defer close(started)
		time.Sleep(delay)
		l, err := agent.Listen(sock, 0o600, -1)
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { l.Close() })
		go srv.Serve(l)
	}()
	t.Cleanup(func() { <-started; srv.Shutdown(context.Background()) })
	return sock, m
}

func TestDemoAgainstSimulator(t *testing.T) {
	sock, m := startAgent(t, 300*time.Millisecond)
	var out, errb bytes.Buffer
	code := run([]string{"--socket", sock, "--wait", "5s"}, &out, &errb)
	if code != 0 {
		t.Fatalf("attest-demo = %d, want 0\n%s%s", code, out.String(), errb.String())
	}
	text := out.String()
	for _, re := range []string{
		`(?m)^demo: agent .* ready$`,
		`(?m)^demo: module_id=\S+ digest=SHA384 max_pcrs=32 locked=16$`,
		`(?m)^demo: PCR0=` + hex.EncodeToString(pcr.Measure([]byte("image"))) + `$`,
		`(?m)^demo: PCR1=0{96}$`,
		`(?m)^demo: PCR2=0{96}$`,
		`(?m)^demo: random bytes=256$`,
		`(?m)^demo: attestation bytes=\d+ sha256=[0-9a-f]{64}$`,
		`(?m)^demo: attestation nonce ok$`,
		`(?m)^demo: pcr16 extended=` + hex.EncodeToString(pcr.Extend(pcr.Zero(), []byte("qtenclave attest-demo"))) + `$`,
		`(?m)^demo: pcr16 locked ok$`,
		`(?m)^demo: pcr16 extend after lock refused ReadOnlyIndex ok$`,
		`(?m)^demo: PASS$`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("output lacks a line matching %s:\n%s", re, text)
		}
	}
	if strings.Contains(text, "FAIL") {
		t.Errorf("output has a failure:\n%s", text)
	}
	if v, locked := m.PCR(16); !locked || !bytes.Equal(v, pcr.Extend(pcr.Zero(), []byte("qtenclave attest-demo"))) {
		t.Errorf("simulator PCR16 = %x locked %v, want the demo's extension, locked", v, locked)
	}
}

func TestDemoExitCodes(t *testing.T) {
	sock, _ := startAgent(t, 0)
	var out bytes.Buffer
	// A second run fails: PCR16 is locked, so its extend is refused.
	if code := run([]string{"--socket", sock}, &out, &out); code != 0 {
		t.Fatalf("first run = %d\n%s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"--socket", sock}, &out, &out); code != 1 || !strings.Contains(out.String(), "demo: FAIL pcr16 extend: ") {
		t.Errorf("second run on PCR16 = %d, want 1 with the extend failure:\n%s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"--socket", sock, "--pcr", "17", "--exit", "3"}, &out, &out); code != 3 || !strings.Contains(out.String(), "demo: PASS\ndemo: exiting with 3 as requested\n") {
		t.Errorf("--exit 3 = %d, want 3:\n%s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"--socket", filepath.Join(t.TempDir(), "none"), "--wait", "200ms"}, &out, &out); code != 1 || !strings.Contains(out.String(), "demo: FAIL agent: waiting for qtsm-agent") {
		t.Errorf("without agent = %d, want 1:\n%s", code, out.String())
	}
	for _, args := range [][]string{{"--exit", "256"}, {"--pcr", "3"}, {"x"}, {"--bogus"}} {
		if code := run(args, &out, &out); code != 2 {
			t.Errorf("attest-demo %q = %d, want 2", args, code)
		}
	}
}
