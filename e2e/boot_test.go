package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qtenclave/enclave/image/eif"
	"github.com/qtenclave/enclave/qtsm/attestation"
	"github.com/qtenclave/enclave/rootfs/cpio"
	"github.com/qtenclave/enclave/rootfs/dirtar"
	"github.com/qtenclave/enclave/rootfs/ocilayout"
)

// harness holds the artifacts every scenario needs.
type harness struct {
	root      string // module root
	bin       string // init, qtsm-agent, qtenclave
	kernel    string // bzImage
	kmod      string // nsm.ko[.xz]
	qemu      string
	out       string // kept logs
	imageRef  string // oci:DIR:demo
	tmp       string
	bootLimit time.Duration
}

func setup(t *testing.T) *harness {
	t.Helper()
	if os.Getenv("QTENCLAVE_E2E") != "1" {
		t.Skip("end-to-end boot: set QTENCLAVE_E2E=1 (make e2e builds the kernel, QEMU and binaries and sets it)")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{root: root, tmp: t.TempDir(), bootLimit: 180 * time.Second}
	h.bin = envOr("QTENCLAVE_BIN", filepath.Join(root, "bin"))
	kdir := os.Getenv("QTENCLAVE_KERNEL_DIR")
	h.qemu = os.Getenv("QTENCLAVE_QEMU")
	h.out = envOr("QTENCLAVE_E2E_OUT", filepath.Join(root, "out", "e2e"))
	if kdir == "" || h.qemu == "" {
		t.Fatal("QTENCLAVE_E2E=1 needs QTENCLAVE_KERNEL_DIR and QTENCLAVE_QEMU (run scripts/e2e.sh)")
	}
	h.kernel = filepath.Join(kdir, "bzImage")
	mods, _ := filepath.Glob(filepath.Join(kdir, "nsm.ko*"))
	if len(mods) == 0 {
		t.Fatalf("no nsm.ko* in %s", kdir)
	}
	h.kmod = mods[0]
	for _, f := range []string{h.kernel, h.qemu, filepath.Join(h.bin, "init"), filepath.Join(h.bin, "qtsm-agent"), filepath.Join(h.bin, "qtenclave")} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("missing artifact: %v", err)
		}
	}
	if err := os.MkdirAll(h.out, 0o755); err != nil {
		t.Fatal(err)
	}
	h.imageRef = h.demoImage(t)
	return h
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// demoImage builds the demo workload (examples/attest-demo) statically and
// packs it into an OCI layout, without Docker.
func (h *harness) demoImage(t *testing.T) string {
	t.Helper()
	fsdir := filepath.Join(h.tmp, "demo-rootfs")
	if err := os.MkdirAll(fsdir, 0o755); err != nil {
		t.Fatal(err)
	}
	h.goBuild(t, "./examples/attest-demo", filepath.Join(fsdir, "app"))
	return h.packImage(t, "demo", fsdir, ocilayout.Config{Entrypoint: []string{"/app"}, Env: []string{"MODE=demo"}})
}

// goBuild builds the Go program pkg (relative to the module root)
// statically and reproducibly into out.
func (h *harness) goBuild(t *testing.T, pkg, out string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", out, pkg)
	cmd.Dir = h.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// packImage packs the directory fsdir into an OCI layout named name, and
// returns its reference.
func (h *harness) packImage(t *testing.T, name, fsdir string, cfg ocilayout.Config) string {
	t.Helper()
	img, err := ocilayout.Build(cfg, []ocilayout.Layer{ocilayout.DirLayer(fsdir, dirtar.Options{})}, ocilayout.Options{})
	if err != nil {
		t.Fatalf("%s image: %v", name, err)
	}
	layout := filepath.Join(h.tmp, name+"-oci")
	if err := ocilayout.WriteLayout(layout, name, img); err != nil {
		t.Fatalf("%s layout: %v", name, err)
	}
	return "oci:" + layout + ":" + name
}

// build runs qtenclave build of the demo image and returns the EIF path and
// the PCRs it printed.
func (h *harness) build(t *testing.T, name string, extra ...string) (string, map[string]string) {
	t.Helper()
	return h.buildImage(t, name, h.imageRef, extra...)
}

// buildImage is build for another image.
func (h *harness) buildImage(t *testing.T, name, imageRef string, extra ...string) (string, map[string]string) {
	t.Helper()
	out := filepath.Join(h.tmp, name+".eif")
	args := append([]string{"build", "--image", imageRef, "--kernel", h.kernel, "--kmod", h.kmod,
		"--init", filepath.Join(h.bin, "init"), "--agent", filepath.Join(h.bin, "qtsm-agent"), "-o", out}, extra...)
	cmd := exec.Command(filepath.Join(h.bin, "qtenclave"), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("qtenclave %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var m struct{ Measurements map[string]string }
	if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
		t.Fatalf("qtenclave build output %q: %v", stdout.String(), err)
	}
	for _, k := range []string{"PCR0", "PCR1", "PCR2"} {
		if len(m.Measurements[k]) != 96 {
			t.Fatalf("qtenclave build printed %s=%q, want 96 hex digits", k, m.Measurements[k])
		}
	}
	return out, m.Measurements
}

// bootResult is what one boot showed. What a test checks comes from the
// log stream (stdout: init's, the agent's and the workload's lines, each
// whole) and the exit status; the serial console, where a kernel message
// can land in the middle of any line, is only kept for reading.
type bootResult struct {
	stream  string // qtenclave run's stdout: the log stream's lines
	stderr  string // qtenclave run's own messages (and QEMU's)
	console string // the serial console (--console FILE), CRs removed
	code    int
	elapsed time.Duration
}

// boot runs qtenclave run (with extra flags) with the console in
// out/e2e/NAME.console and its stdout and stderr in NAME.log, kept when
// the test fails.
func (h *harness) boot(t *testing.T, name, eifPath string, extra ...string) bootResult {
	t.Helper()
	return h.bootWatching(t, name, eifPath, nil, extra...)
}

// bootWatching is boot with onLine called for each line of the log stream
// as it comes, with the qtenclave run process (to signal it).
func (h *harness) bootWatching(t *testing.T, name, eifPath string, onLine func(line string, p *os.Process), extra ...string) bootResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), h.bootLimit+30*time.Second)
	defer cancel()
	consolePath := filepath.Join(h.out, name+".console")
	args := append([]string{"run", "--qemu", h.qemu, "--timeout", h.bootLimit.String(), "--console", consolePath}, extra...)
	cmd := exec.CommandContext(ctx, filepath.Join(h.bin, "qtenclave"), append(args, eifPath)...)
	var stdout, stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("qtenclave run: %v", err)
	}
	sc := bufio.NewScanner(pipe)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		stdout.WriteString(sc.Text() + "\n")
		if onLine != nil {
			onLine(sc.Text(), cmd.Process)
		}
	}
	err = cmd.Wait()
	r := bootResult{stream: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("qtenclave run: %v", err)
	}
	con, cerr := os.ReadFile(consolePath)
	if cerr != nil {
		t.Errorf("console file: %v", cerr)
	}
	// The serial console ends lines with \r\n.
	r.console = strings.ReplaceAll(string(con), "\r", "")
	logPath := filepath.Join(h.out, name+".log")
	if werr := os.WriteFile(logPath, []byte(r.stream+"--- stderr\n"+r.stderr), 0o644); werr != nil {
		t.Logf("keep output: %v", werr)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.Remove(logPath)
			os.Remove(consolePath)
		} else {
			t.Logf("output kept in %s, console in %s", logPath, consolePath)
		}
	})
	return r
}

// expect checks that every pattern matches a line of the log stream.
func expect(t *testing.T, r bootResult, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		re := regexp.MustCompile("(?m)" + p)
		if !re.MatchString(r.stream) {
			t.Errorf("log stream has no line matching %q", p)
		}
	}
}

// expectStderr checks that qtenclave run said each pattern on stderr.
func expectStderr(t *testing.T, r bootResult, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile("(?m)" + p).MatchString(r.stderr) {
			t.Errorf("qtenclave run's stderr has no line matching %q:\n%s", p, r.stderr)
		}
	}
}

func TestIntegrationBootDemo(t *testing.T) {
	h := setup(t)
	eifPath, pcrs := h.build(t, "demo")
	boots := 1
	if n, err := strconv.Atoi(os.Getenv("QTENCLAVE_E2E_BOOTS")); err == nil && n > 1 {
		boots = n
	}
	var times []time.Duration
	for i := range boots {
		r := h.boot(t, fmt.Sprintf("demo-%d", i+1), eifPath)
		if r.code != 0 {
			t.Errorf("boot %d: qtenclave run exit = %d, want 0", i+1, r.code)
		}
		expect(t, r,
			`^init: start pid=1 `,
			`^init: step modules ok .*nsm`,
			`^init: step device ok .*/dev/nsm`,
			`^init: step entropy ok .*`,
			`^init: step heartbeat ok `,
			`^init: step config ok `,
			`^init: step switch-root ok `,
			`^init: step mounts ok `,
			`^qtsm-agent: .*listening on /run/qtsm.sock`,
			`^init: step agent-ready ok `,
			`^init: step log-stream ok in [0-9.]+ms: 3:9002$`,
			`^init: step exec ok in [0-9.]+ms: pid \d+, output to the log stream$`,
			`^init: ready in [0-9.]+ms`,
			`^stdout: demo: module_id=\S+ digest=SHA384 max_pcrs=32`,
			`^stdout: demo: PCR0=`+pcrs["PCR0"]+`$`,
			`^stdout: demo: PCR1=`+pcrs["PCR1"]+`$`,
			`^stdout: demo: PCR2=`+pcrs["PCR2"]+`$`,
			`^stdout: demo: random bytes=[1-9]`,
			`^stdout: demo: attestation bytes=[1-9][0-9]* sha256=[0-9a-f]{64}$`,
			`^stdout: demo: attestation nonce ok$`,
			`^stdout: demo: pcr16 locked ok$`,
			`^stdout: demo: pcr16 extend after lock refused ReadOnlyIndex ok$`,
			`^stdout: demo: PASS$`,
			`^stderr: demo: 0 checks failed$`,
			`^init: workload pid \d+ exited with status 0$`,
			`^qtenclave-exit: code=0 signal=0 reason=exited$`,
		)
		expectStderr(t, r, `^qtenclave run: enclave exited with status 0, heartbeat after `)
		// The workload's lines are on the stream only, not on the console.
		if strings.Contains(r.console, "demo: PASS") {
			t.Errorf("boot %d: the workload's output reached the console", i+1)
		}
		checkAttestation(t, r, pcrs)
		if own, ok := ownTime(r); ok {
			t.Logf("boot %d: init own time %.3fms (wall clock under TCG), boot-to-exit %.2fs", i+1, own, r.elapsed.Seconds())
		}
		times = append(times, r.elapsed)
		if t.Failed() {
			break
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	if len(times) > 0 {
		t.Logf("e2e: boots=%d median=%.2fs max=%.2fs", len(times), times[len(times)/2].Seconds(), times[len(times)-1].Seconds())
	}
}

// ownTime is init's "own time" line, in milliseconds.
func ownTime(r bootResult) (float64, bool) {
	m := regexp.MustCompile(`(?m)^init: own time ([0-9.]+)ms`).FindStringSubmatch(r.stream)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// ownTimeBudget is init's own time to the workload's exec, waits excluded,
// that the boot must stay under.
const ownTimeBudget = 30.0 // ms

// TestIntegrationBootTime boots the demo with TCG's instruction counting
// (qtenclave run --icount 0: guest time advances 1 ns per instruction), so
// init's own time measures its work and not the emulator's translation or
// the host's load, and holds it under the budget. The wall-clock figure
// under ordinary TCG is logged by TestIntegrationBootDemo. Such a boot
// takes about 20 s: icount runs one vCPU thread at a time.
func TestIntegrationBootTime(t *testing.T) {
	h := setup(t)
	eifPath, _ := h.build(t, "boottime")
	r := h.boot(t, "boottime", eifPath, "--icount", "0")
	if r.code != 0 {
		t.Fatalf("qtenclave run --icount 0 exit = %d, want 0 (console in out/e2e/boottime.log)", r.code)
	}
	expect(t, r, `^stdout: demo: PASS$`)
	// A kernel line: read from the console, where the kernel writes it.
	if !regexp.MustCompile(`(?m)\] tsc: Detected 1000\.\d+ MHz TSC$`).MatchString(r.console) {
		t.Errorf("console has no 1 GHz TSC line (--icount 0 tells the guest a 1 GHz TSC)")
	}
	own, ok := ownTime(r)
	if !ok {
		t.Fatal("console has no \"init: own time\" line")
	}
	t.Logf("init own time %.3fms under TCG with -icount shift=0 (budget %.0fms); boot-to-exit %.2fs", own, ownTimeBudget, r.elapsed.Seconds())
	if own >= ownTimeBudget {
		t.Errorf("init own time = %.3fms, want < %.0fms", own, ownTimeBudget)
	}
}

// checkAttestation verifies, on the host, the attestation document the
// workload got from the agent: QEMU's emulated NSM signs nothing, so the
// document is accepted only as unsigned, and it must carry the PCRs that
// qtenclave build printed and the workload's nonce.
func checkAttestation(t *testing.T, r bootResult, pcrs map[string]string) {
	t.Helper()
	checkDocumentLine(t, r, "stdout: demo: attestation", pcrs)
}

// checkDocumentLine is checkAttestation for the stream line that starts
// with prefix and goes on " nonce=HEX document=BASE64".
func checkDocumentLine(t *testing.T, r bootResult, prefix string, pcrs map[string]string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(prefix) + ` nonce=([0-9a-f]+) document=(\S+)$`).FindStringSubmatch(r.stream)
	if m == nil {
		t.Errorf("log stream has no line %q with a document", prefix)
		return
	}
	nonce, err1 := hex.DecodeString(m[1])
	doc, err2 := base64.StdEncoding.DecodeString(m[2])
	if err := errors.Join(err1, err2); err != nil {
		t.Errorf("attestation line: %v", err)
		return
	}
	want := map[int][]byte{}
	for i := range 3 {
		v, err := hex.DecodeString(pcrs[fmt.Sprintf("PCR%d", i)])
		if err != nil {
			t.Fatal(err)
		}
		want[i] = v
	}
	if _, err := attestation.VerifyBytes(doc, attestation.Options{ExpectPCRs: want, ExpectNonce: nonce}); !errors.Is(err, attestation.ErrUnsigned) {
		t.Errorf("Verify(emulator document) without AllowUnsigned = %v, want ErrUnsigned", err)
	}
	if _, err := attestation.VerifyBytes(doc, attestation.Options{ExpectPCRs: want, ExpectNonce: nonce, AllowUnsigned: true}); err != nil {
		t.Errorf("Verify(emulator document, AllowUnsigned, PCR0-2 from qtenclave build) = %v, want nil", err)
	}
}

func TestIntegrationBootFailingWorkload(t *testing.T) {
	h := setup(t)
	eifPath, _ := h.build(t, "fail", "--cmd", `["--exit","3"]`)
	r := h.boot(t, "fail", eifPath)
	if r.code != 3 {
		t.Errorf("qtenclave run exit = %d, want the workload's 3", r.code)
	}
	expect(t, r,
		`^stdout: demo: exiting with 3 as requested$`,
		`^init: workload pid \d+ exited with status 3$`,
		`^qtenclave-exit: code=3 signal=0 reason=exited$`,
	)
	expectStderr(t, r, `^qtenclave run: enclave exited with status 3`)
}

// TestIntegrationBootMissingCommand boots an image whose application
// ramdisk has neither launch.json nor cmd: init must say so and end the boot
// cleanly with status 125, never panic the kernel.
func TestIntegrationBootMissingCommand(t *testing.T) {
	h := setup(t)
	good, _ := h.build(t, "good")
	bad := filepath.Join(h.tmp, "nocmd.eif")
	withoutLaunchConfig(t, good, bad)
	r := h.boot(t, "nocmd", bad)
	if r.code != 125 {
		t.Errorf("qtenclave run exit = %d, want 125", r.code)
	}
	expect(t, r,
		`^init: step config failed `,
		`^qtenclave-exit: code=125 signal=0 reason=config$`,
	)
	expectStderr(t, r, `^qtenclave run: enclave exited with status 125`)
	if strings.Contains(r.console, "Kernel panic") {
		t.Errorf("console shows a kernel panic")
	}
}

// withoutLaunchConfig copies the EIF at src to dst with an application
// ramdisk that holds only the rootfs skeleton: no launch.json, cmd or env.
func withoutLaunchConfig(t *testing.T, src, dst string) {
	t.Helper()
	in, err := eif.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	kernel, err := in.Kernel().Bytes()
	if err != nil {
		t.Fatal(err)
	}
	cmdline, err := in.Cmdline()
	if err != nil {
		t.Fatal(err)
	}
	md, err := in.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	boot, err := in.Ramdisks()[0].Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var app bytes.Buffer
	cw := cpio.NewWriter(&app, cpio.Options{})
	for _, d := range []string{"rootfs", "rootfs/dev", "rootfs/proc", "rootfs/sys", "rootfs/run", "rootfs/tmp", "rootfs/var"} {
		if err := cw.Add(cpio.Dir(d, 0o755)); err != nil {
			t.Fatal(err)
		}
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := eif.NewWriter(f, eif.Options{})
	for _, step := range []error{
		w.WriteKernel(bytes.NewReader(kernel)),
		w.WriteCmdline(cmdline),
		w.WriteMetadata(md),
		w.WriteRamdisk(bytes.NewReader(boot)),
		w.WriteRamdisk(&app),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationBootStop stops a running enclave the way systemctl stop
// or docker stop would, with SIGTERM to qtenclave run: init forwards it to
// the workload, which traps it, writes its last line and exits 0; that
// status comes back and qtenclave run exits 0 (issue 14, item 12).
func TestIntegrationBootStop(t *testing.T) {
	h := setup(t)
	eifPath, _ := h.build(t, "stop", "--cmd", `["--until-term"]`)
	sent := false
	r := h.bootWatching(t, "stop", eifPath, func(line string, p *os.Process) {
		if !sent && line == "stdout: demo: waiting for SIGTERM" {
			sent = true
			p.Signal(syscall.SIGTERM)
		}
	})
	if !sent {
		t.Fatalf("the workload never said it was waiting; stream:\n%s", r.stream)
	}
	if r.code != 0 {
		t.Errorf("qtenclave run after SIGTERM = %d, want the workload's 0\nstderr:\n%s", r.code, r.stderr)
	}
	expect(t, r,
		`^init: step control ok in [0-9.]+ms: port 9003, stop grace 10s$`,
		`^init: stop requested by the parent: SIGTERM to the workload's process group \d+, SIGKILL in 10s$`,
		`^stdout: demo: got SIGTERM, clean exit$`,
		`^init: workload pid \d+ exited with status 0$`,
		`^qtenclave-exit: code=0 signal=0 reason=exited$`,
	)
	expectStderr(t, r, `^qtenclave run: asked the enclave to stop \(terminated\)`, `^qtenclave run: enclave exited with status 0`)
}
