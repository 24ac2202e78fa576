package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qtenclave/enclave/proto/launch"
)

func TestRun(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "app"), []byte("bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "app.cpio")
	var stdout, stderr bytes.Buffer
	args := []string{"-o", out, "-cmd", `["/app","x"]`, "-env", "A=1", "dir:" + src}
	if rc := run(args, nil, &stdout, &stderr); rc != 0 {
		t.Fatalf("ramdisk %q = %d; stderr: %s", args, rc, stderr.String())
	}
	if !strings.Contains(stderr.String(), `launch.json: {"version":1,"cmd":["/app","x"]`) {
		t.Errorf("stderr = %q, want the manifest", stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var toStdout bytes.Buffer
	if rc := run([]string{"-o", "-", "-cmd", `["/app","x"]`, "-env", "A=1", "dir:" + src}, nil, &toStdout, &stderr); rc != 0 {
		t.Fatal(stderr.String())
	}
	if !bytes.Equal(toStdout.Bytes(), data) {
		t.Errorf("-o - output differs from -o FILE output")
	}
	if !bytes.Contains(data, []byte(launch.ManifestPath)) {
		t.Errorf("ramdisk lacks %s", launch.ManifestPath)
	}
}

func TestErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"-o", "x"}, {"oci:x"}, {"-o", "x", "a", "b"}, {"-nope"}} {
		var stdout, stderr bytes.Buffer
		if rc := run(args, nil, &stdout, &stderr); rc != 2 {
			t.Errorf("ramdisk %q = %d, want 2", args, rc)
		}
	}
	out := filepath.Join(t.TempDir(), "o.cpio")
	var stdout, stderr bytes.Buffer
	if rc := run([]string{"-o", out, "dir:" + t.TempDir()}, nil, &stdout, &stderr); rc != 1 || !strings.Contains(stderr.String(), "empty command") {
		t.Errorf("ramdisk without a command = %d (%s), want 1 and an empty-command error", rc, stderr.String())
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("failed build left %s behind", out)
	}
}

// TestSIGTERMLeavesNothing: SIGTERM (kill, systemctl stop) stops a build
// like Ctrl-C does: the temporary output is removed and the message says
// why (issue 14, item 8).
func TestSIGTERMLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	bin := filepath.Join(t.TempDir(), "ramdisk")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	src := t.TempDir()
	for _, name := range []string{"big1", "big2", "big3"} {
		big, err := os.Create(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := big.Truncate(3 << 30); err != nil { // sparse: long to read, no disk
			t.Fatal(err)
		}
		big.Close()
	}
	outDir := t.TempDir()
	cmd := exec.Command(bin, "-o", filepath.Join(outDir, "app.cpio"), "-tmpdir", outDir, "-cmd", `["/big1"]`, "dir:"+src)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until it is writing, then stop it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m, _ := os.ReadDir(outDir); len(m) > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("ramdisk wrote nothing in 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("ramdisk after SIGTERM: %v, want exit status 1", err)
	}
	if !strings.Contains(stderr.String(), "interrupted by SIGTERM") {
		t.Errorf("stderr = %q, want it to say interrupted by SIGTERM", stderr.String())
	}
	if left, _ := os.ReadDir(outDir); len(left) != 0 {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Errorf("left behind after SIGTERM: %q", names)
	}
}
