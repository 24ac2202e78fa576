package clib_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qtenclave/enclave/agent"
	"github.com/qtenclave/enclave/agent/client"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/attestation"
	"github.com/qtenclave/enclave/qtsm/pcr"
	"github.com/qtenclave/enclave/qtsm/sim"
)

// The ABI each library exports, and nothing else.
var (
	qtsmABI = []string{"qtsm_describe_pcr", "qtsm_extend_pcr", "qtsm_get_attestation", "qtsm_get_describe",
		"qtsm_get_random", "qtsm_lib_exit", "qtsm_lib_init", "qtsm_lock_pcr", "qtsm_lock_pcrs"}
	nsmABI = []string{"nsm_describe_pcr", "nsm_extend_pcr", "nsm_get_attestation_doc", "nsm_get_description",
		"nsm_get_random", "nsm_lib_exit", "nsm_lib_init", "nsm_lock_pcr", "nsm_lock_pcrs"}
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// built builds the libraries and the C tests once per test binary, with
// the system C compiler; it skips the test when there is none.
func built(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"cc", "make", "ar", "objcopy", "nm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: no %s (scripts/deps.sh installs the C toolchain): %v", tool, err)
		}
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "clib-")
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		cmd := exec.Command("make", "-s", "OUT="+dir, "tests")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("make tests: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// serve runs an agent on a fresh simulator of vendor, on a socket in a
// temporary directory.
func serve(t *testing.T, vendor qtsm.Vendor) (*sim.Module, *agent.Server, string) {
	t.Helper()
	m, err := sim.New(sim.Options{Vendor: vendor, PCRs: map[int][]byte{0: pcr.Measure([]byte("eif"))}})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "qtsm.sock")
	l, err := agent.Listen(sock, 0o660, -1)
	if err != nil {
		t.Fatal(err)
	}
	srv := agent.New(agent.Config{Module: qtsm.NewSession(m), Device: "sim", Vendor: vendor, MaxQueue: 256, Logf: func(string, ...any) {}})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve = %v", err)
		}
	})
	return m, srv, sock
}

// run runs a C test binary with env added, and fails the test with its
// output when it fails.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	// A sanitizer report ends the program with an error and says why.
	cmd.Env = append(os.Environ(), append(env, "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS=print_stacktrace=1", "TSAN_OPTIONS=halt_on_error=1")...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// TestABI runs the C ABI test, built with AddressSanitizer and UBSan, and
// the same test linked against the shipped shared and static libraries,
// against an agent on each vendor's simulator; the document the C program
// got is verified here against the simulator's root.
func TestABI(t *testing.T) {
	dir := built(t)
	for _, c := range []struct {
		vendor qtsm.Vendor
		binary string
	}{
		{qtsm.VendorNitro, "abi_test_asan"},
		{qtsm.VendorQingtian, "abi_test_asan"},
		{qtsm.VendorNitro, "abi_test_shared"},
		{qtsm.VendorQingtian, "abi_test_static"},
	} {
		t.Run(c.vendor.String()+"/"+c.binary, func(t *testing.T) {
			m, _, sock := serve(t, c.vendor)
			docPath := filepath.Join(t.TempDir(), "doc.cbor")
			out := run(t, []string{"QTSM_SOCKET=" + sock}, filepath.Join(dir, c.binary), "agent", docPath)
			if !regexp.MustCompile(`(?m)^abi_test agent: \d+ checks, 0 failed$`).MatchString(out) {
				t.Errorf("abi_test output:\n%s", out)
			}
			if !strings.Contains(out, "module_id="+m.ModuleID()+"\n") {
				t.Errorf("abi_test did not print the simulator's module id %q:\n%s", m.ModuleID(), out)
			}
			doc, err := os.ReadFile(docPath)
			if err != nil {
				t.Fatal(err)
			}
			opts := m.VerifyOptions()
			opts.ExpectNonce = []byte("c-abi-test nonce")
			opts.ExpectUserData = []byte("c-abi-test user data")
			opts.ExpectPCRs = map[int][]byte{0: pcr.Measure([]byte("eif"))}
			if _, err := attestation.VerifyBytes(doc, opts); err != nil {
				t.Errorf("Verify(the C program's document) = %v", err)
			}
		})
	}
}

// TestFallback checks the libraries without an agent: with no device
// either, init fails; with a device that is not a secure module, init
// succeeds and every call fails with INTERNAL_ERROR. (The real device is
// exercised in the e2e boot.)
func TestFallback(t *testing.T) {
	dir := built(t)
	missing := filepath.Join(t.TempDir(), "missing")
	run(t, []string{"QTSM_SOCKET=" + missing, "QTSM_DEVICE=" + missing}, filepath.Join(dir, "abi_test_asan"), "no-module")
	run(t, []string{"QTSM_SOCKET=" + missing, "QTSM_DEVICE=/dev/null"}, filepath.Join(dir, "abi_test_asan"), "device-unusable")
}

// TestDenied runs the ABI test as an unprivileged user against an agent
// socket only root may use (the agent's default mode 0660, root's group):
// init must fail with -EACCES at once, not at the first call.
func TestDenied(t *testing.T) {
	dir := built(t)
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to run the test as another user")
	}
	_, _, sock := serve(t, qtsm.VendorNitro)
	// The binary and the socket's directory must be reachable by uid 65534.
	pub, err := os.MkdirTemp("", "clib-denied-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(pub)
	for _, d := range []string{pub, filepath.Dir(sock), filepath.Dir(filepath.Dir(sock))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(pub, "abi_test_asan")
	b, err := os.ReadFile(filepath.Join(dir, "abi_test_asan"))
	if err == nil {
		err = os.WriteFile(bin, b, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "denied")
	cmd.Env = append(os.Environ(), "QTSM_SOCKET="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("abi_test denied as uid 65534: %v\n%s", err, out)
	}
}

// TestExports checks that each library exports exactly its ABI: the
// shared library's dynamic symbols (versioned) and the static library's
// global symbols.
func TestExports(t *testing.T) {
	dir := built(t)
	for _, c := range []struct {
		lib, version string
		abi          []string
	}{{"qtsm", "QTSM_1.0", qtsmABI}, {"nsm", "NSM_1.0", nsmABI}} {
		so := filepath.Join(dir, "lib"+c.lib+".so")
		out, err := exec.Command("nm", "-D", "--defined-only", so).Output()
		if err != nil {
			t.Fatalf("nm -D %s: %v", so, err)
		}
		var funcs, others []string
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) == 3 && f[1] == "T":
				name, ver, _ := strings.Cut(f[2], "@@")
				if ver != c.version {
					t.Errorf("%s: %s has version %q, want %s", so, name, ver, c.version)
				}
				funcs = append(funcs, name)
			case len(f) == 3 && f[1] == "A" && f[2] == c.version: // the version node itself
			default:
				others = append(others, line)
			}
		}
		slices.Sort(funcs)
		if !slices.Equal(funcs, c.abi) || others != nil {
			t.Errorf("nm -D --defined-only lib%s.so: functions %v and others %q, want exactly %v", c.lib, funcs, others, c.abi)
		}
		a := filepath.Join(dir, "lib"+c.lib+".a")
		out, err = exec.Command("nm", "-g", "--defined-only", a).Output()
		if err != nil {
			t.Fatalf("nm -g %s: %v", a, err)
		}
		var globals []string
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) == 3 {
				globals = append(globals, f[2])
			}
		}
		slices.Sort(globals)
		if !slices.Equal(globals, c.abi) {
			t.Errorf("nm -g --defined-only lib%s.a = %v, want exactly %v", c.lib, globals, c.abi)
		}
		for _, f := range []string{so, a} {
			if st, err := os.Stat(f); err == nil {
				t.Logf("%s: %d bytes (with debug information)", filepath.Base(f), st.Size())
			}
		}
	}
}

// TestConcurrency has 16 C threads (ThreadSanitizer build; half through
// libqtsm, half through libnsm) and 4 Go clients use one agent at once:
// every answer must be the asker's own (each attestation carries its own
// nonce back, each PCR read the same value), none lost, and the agent
// must have executed exactly the requests sent.
func TestConcurrency(t *testing.T) {
	dir := built(t)
	m, srv, sock := serve(t, qtsm.VendorNitro)
	const threads, iters, goClients, goIters = 16, 40, 4, 100
	before := srv.Stats()

	var (
		wg      sync.WaitGroup
		goErrs  = make(chan error, goClients*goIters)
		cOutput string
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		cOutput = run(t, []string{"QTSM_SOCKET=" + sock}, filepath.Join(dir, "stress_tsan"), fmt.Sprint(threads), fmt.Sprint(iters))
	}()
	opts := m.VerifyOptions()
	for g := range goClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client.New(sock)
			defer c.Close()
			for i := range goIters {
				nonce := binary.BigEndian.AppendUint32([]byte("go"), uint32(g<<16|i))
				doc, err := c.Attestation(context.Background(), qtsm.AttestationRequest{Nonce: nonce})
				if err != nil {
					goErrs <- err
					continue
				}
				o := opts
				o.ExpectNonce = nonce
				if _, err := attestation.VerifyBytes(doc, o); err != nil {
					goErrs <- fmt.Errorf("Go client %d request %d: %w", g, i, err)
				}
			}
		}()
	}
	wg.Wait()
	close(goErrs)
	for err := range goErrs {
		t.Error(err)
	}
	mm := regexp.MustCompile(`stress: threads=16 requests=(\d+) ok=(\d+) errors=0 corrupted=0`).FindStringSubmatch(cOutput)
	if mm == nil {
		t.Fatalf("stress output: %s", cOutput)
	}
	t.Logf("%s; Go: %d clients x %d attestations, all verified", strings.TrimSpace(cOutput), goClients, goIters)
	after := srv.Stats()
	// Each C request is one device call except qtsm_get_random(64 bytes),
	// which is one call too (an answer has more than 64 bytes); 2 more
	// for the C program's setup read of PCR0, none lost or repeated.
	var cRequests int
	fmt.Sscan(mm[1], &cRequests)
	want := uint64(cRequests + 1 + goClients*goIters)
	if got := after.Executed - before.Executed; got != want {
		t.Errorf("agent executed %d requests, want %d (C %d + setup 1 + Go %d)", got, want, cRequests, goClients*goIters)
	}
	if after.Dropped != before.Dropped || after.Rejected != before.Rejected {
		t.Errorf("agent dropped %d, rejected %d requests", after.Dropped-before.Dropped, after.Rejected-before.Rejected)
	}
}

// TestFuzzAnswers runs the C answer-parser fuzzer (test/fuzz_answers.c,
// AddressSanitizer and UBSan) for QTSM_CFUZZ_TIME (a Go duration, default
// 2s); make fuzz runs it for FUZZTIME.
func TestFuzzAnswers(t *testing.T) {
	dir := built(t)
	d := 2 * time.Second
	if v := os.Getenv("QTSM_CFUZZ_TIME"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("QTSM_CFUZZ_TIME=%q: %v", v, err)
		}
	}
	seed := fmt.Sprint(time.Now().UnixNano())
	out := run(t, nil, filepath.Join(dir, "fuzz_answers"), fmt.Sprintf("%.0f", max(d.Seconds(), 1)), seed)
	t.Log(strings.TrimSpace(out))
}
