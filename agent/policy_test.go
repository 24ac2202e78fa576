package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/qtenclave/enclave/agent"
	"github.com/qtenclave/enclave/agent/client"
	"github.com/qtenclave/enclave/agent/internal/fakemod"
	"github.com/qtenclave/enclave/qtsm"
)

const helperEnv = "QTSM_AGENT_TEST_HELPER_SOCKET"

// TestPolicyHelperProcess is not a test: TestIntegrationPolicyTwoUIDs runs
// the test binary as another user to be its client. It prints one line per
// operation: "op ok" or "op <error name>".
func TestPolicyHelperProcess(t *testing.T) {
	sock := os.Getenv(helperEnv)
	if sock == "" {
		t.Skip("helper process for TestIntegrationPolicyTwoUIDs")
	}
	c := client.New(sock)
	ctx := context.Background()
	report := func(op string, err error) {
		var qe *qtsm.Error
		var ce *client.Error
		var ne *net.OpError
		switch {
		case err == nil:
			fmt.Printf("%s ok\n", op)
		case errors.As(err, &ce):
			fmt.Printf("%s %s\n", op, ce.Name)
		case errors.As(err, &qe):
			fmt.Printf("%s %s\n", op, qe.Name)
		case errors.As(err, &ne) && errors.Is(err, syscall.EACCES):
			fmt.Printf("%s EACCES\n", op)
		default:
			fmt.Printf("%s other %v\n", op, err)
		}
	}
	_, err := c.Describe(ctx)
	report("describe", err)
	_, err = c.DescribePCR(ctx, 16)
	report("read", err)
	_, err = c.Attestation(ctx, qtsm.AttestationRequest{Nonce: []byte("x")})
	report("attest", err)
	_, err = c.GetRandom(ctx)
	report("random", err)
	_, err = c.ExtendPCR(ctx, 16, []byte("x"))
	report("extend", err)
	report("lock", c.LockPCR(ctx, 17))
	report("lockrange", c.LockPCRs(ctx, 16))
	os.Exit(0)
}

// TestIntegrationPolicyTwoUIDs: the agent runs as root (this process);
// clients connect as root and, from subprocesses, as uid 65534 with and
// without the privileged group. Read-only operations are open to all,
// extend and lock only to root and the group; the socket's mode is
// enforced by the kernel.
func TestIntegrationPolicyTwoUIDs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to run clients under another uid (SysProcAttr.Credential)")
	}
	const group = 4242
	// A world-traversable directory: the other user must reach the socket
	// and the copy of the test binary.
	dir, err := os.MkdirTemp("", "qtsm-policy-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "agent.test")
	if err := copyFile(exe, mustExecutable(t)); err != nil {
		t.Fatal(err)
	}
	run := func(sock string, cred *syscall.Credential) map[string]string {
		t.Helper()
		cmd := exec.Command(exe, "-test.run=^TestPolicyHelperProcess$")
		cmd.Env = append(os.Environ(), helperEnv+"="+sock)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("helper as uid %d: %v\n%s%s", cred.Uid, err, out, ee.Stderr)
			}
			t.Skipf("skipped: cannot start a process as uid %d: %v", cred.Uid, err)
		}
		res := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if op, r, ok := strings.Cut(line, " "); ok {
				res[op] = r
			}
		}
		return res
	}

	f := fakemod.New()
	sockDir := filepath.Join(dir, "run")
	os.Mkdir(sockDir, 0o755)
	a := startAgent(t, fakeSession(f), sockDir, func(c *agent.Config) { c.Policy = agent.Policy{Groups: []uint32{group}} })
	if err := os.Chmod(a.socket, 0o666); err != nil {
		t.Fatal(err)
	}

	readOnly := map[string]string{"describe": "ok", "read": "ok", "attest": "ok", "random": "ok"}
	for _, tc := range []struct {
		name   string
		cred   *syscall.Credential
		modify string
	}{
		{"uid 65534, no group", &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}, "PermissionDenied"},
		{"uid 65534, supplementary group", &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{100, group}}, "ok"},
		{"uid 65534, primary group", &syscall.Credential{Uid: 65534, Gid: group, Groups: []uint32{}}, "ok"},
		{"uid 0", &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}}, "ok"},
	} {
		// Fresh PCRs 16 and 17 for every peer.
		f.Reset()
		got := run(a.socket, tc.cred)
		for op, want := range readOnly {
			if got[op] != want {
				t.Errorf("%s: %s = %q, want %q", tc.name, op, got[op], want)
			}
		}
		for _, op := range []string{"extend", "lock", "lockrange"} {
			if got[op] != tc.modify {
				t.Errorf("%s: %s = %q, want %q", tc.name, op, got[op], tc.modify)
			}
		}
		p, _ := a.client().DescribePCR(context.Background(), 17)
		if locked := p != nil && p.Locked; locked != (tc.modify == "ok") {
			t.Errorf("%s: PCR17 locked = %v after the peer's LockPCR, want %v", tc.name, locked, tc.modify == "ok")
		}
	}
	if d := a.srv.Stats().Denied; d != 3 {
		t.Errorf("Stats().Denied = %d, want 3", d)
	}

	// The socket's mode keeps out who may not connect at all.
	if err := os.Chmod(a.socket, 0o660); err != nil {
		t.Fatal(err)
	}
	got := run(a.socket, &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}})
	if got["describe"] != "EACCES" {
		t.Errorf("uid 65534 on a 0660 root socket: describe = %q, want EACCES", got["describe"])
	}
	// ... unless the socket's group lets it in (Listen's gid).
	sock2 := filepath.Join(sockDir, "grp.sock")
	l, err := agent.Listen(sock2, 0o660, group)
	if err != nil {
		t.Fatal(err)
	}
	srv2 := agent.New(agent.Config{Module: fakeSession(fakemod.New()), Logf: t.Logf})
	go srv2.Serve(l)
	defer srv2.Shutdown(context.Background())
	got = run(sock2, &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{group}})
	if got["describe"] != "ok" || got["extend"] != "PermissionDenied" {
		t.Errorf("group member on a 0660 group socket without the group policy: %v, want describe ok, extend PermissionDenied", got)
	}
}

func mustExecutable(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Skipf("skipped: cannot find the test binary: %v", err)
	}
	return exe
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
