package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
