package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/qtenclave/enclave/rootfs/ocilayout"
)

// TestIntegrationBootCLib boots a C program linked statically against the
// drop-in libqtsm.a and libnsm.a (agent/clib, built here with the system C
// compiler): in the enclave it describes the module, reads PCRs, extends
// and locks PCR16 and attests through the agent with both interfaces, then
// without the agent, on /dev/nsm itself. Both documents are verified here
// against the PCRs that qtenclave build printed.
func TestIntegrationBootCLib(t *testing.T) {
	h := setup(t)
	for _, tool := range []string{"cc", "make", "ar", "objcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: no %s (scripts/deps.sh installs the C toolchain)", tool)
		}
	}
	libs := filepath.Join(h.tmp, "clib")
	build := exec.Command("make", "-s", "-C", filepath.Join(h.root, "agent", "clib"), "OUT="+libs)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make -C agent/clib: %v\n%s", err, out)
	}
	fsdir := filepath.Join(h.tmp, "clib-rootfs")
	if err := os.MkdirAll(fsdir, 0o755); err != nil {
		t.Fatal(err)
	}
	cc := exec.Command("cc", "-static", "-O2", "-Wall", "-Wextra", "-I", filepath.Join(h.root, "agent", "clib", "include"),
		"-o", filepath.Join(fsdir, "clib-demo"), filepath.Join(h.root, "e2e", "testdata", "clib-demo.c"),
		filepath.Join(libs, "libqtsm.a"), filepath.Join(libs, "libnsm.a"))
	if out, err := cc.CombinedOutput(); err != nil {
		t.Fatalf("cc clib-demo: %v\n%s", err, out)
	}
	ref := h.packImage(t, "clib", fsdir, ocilayout.Config{Entrypoint: []string{"/clib-demo"}})
	eifPath, pcrs := h.buildImage(t, "clib", ref)
	r := h.boot(t, "clib", eifPath)
	if r.code != 0 {
		t.Errorf("qtenclave run exit = %d, want 0", r.code)
	}
	expect(t, r,
		`^stdout: clib-demo: module_id=\S+ max_pcrs=32 digest=1 locked=16$`,
		`^stdout: clib-demo: PCR0=`+pcrs["PCR0"]+`$`,
		`^stdout: clib-demo: PCR1=`+pcrs["PCR1"]+`$`,
		`^stdout: clib-demo: PCR2=`+pcrs["PCR2"]+`$`,
		`^stdout: clib-demo: pcr16 extended, locked, extend after lock refused ok$`,
		`^stdout: clib-demo: device PCR0 matches the agent's$`,
		`^stdout: clib-demo: PASS$`,
		`^qtenclave-exit: code=0 signal=0 reason=exited$`,
	)
	checkDocumentLine(t, r, "stdout: clib-demo: agent attestation", pcrs)
	checkDocumentLine(t, r, "stdout: clib-demo: device attestation", pcrs)
}
