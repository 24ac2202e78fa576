package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "app"), []byte("bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "layout")
	arch := filepath.Join(t.TempDir(), "img.tar")
	args := []string{"-o", out, "-docker-archive", arch, "-tag", "demo", "-entrypoint", `["/app"]`, "-env", "A=1", src}
	var stdout, stderr bytes.Buffer
	if rc := run(args, nil, &stdout, &stderr); rc != 0 {
		t.Fatalf("mkimage %q = %d, want 0; stderr: %s", args, rc, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "oci:"+out+":demo sha256:") || !strings.HasPrefix(lines[1], "docker-archive:"+arch+" sha256:") {
		t.Errorf("stdout = %q, want the two references with the digest", stdout.String())
	}
	if _, err := os.Stat(filepath.Join(out, "index.json")); err != nil {
		t.Errorf("layout: %v", err)
	}
	// Same inputs, same digest.
	var again bytes.Buffer
	if rc := run([]string{"-o", filepath.Join(t.TempDir(), "l2"), "-tag", "demo", "-entrypoint", `["/app"]`, "-env", "A=1", src}, nil, &again, &stderr); rc != 0 {
		t.Fatal(stderr.String())
	}
	if d1, d2 := strings.Fields(lines[0])[1], strings.Fields(again.String())[1]; d1 != d2 {
		t.Errorf("digests differ across runs: %s vs %s", d1, d2)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"-o", "x"}, {"dir"}, {"-bogus"}, {"-o", "x", "-platform", "amd64", "dir"}, {"-o", "x", "-entrypoint", "[1]", "d"}} {
		var stdout, stderr bytes.Buffer
		if rc := run(args, nil, &stdout, &stderr); rc != 2 {
			t.Errorf("mkimage %q = %d, want 2", args, rc)
		}
	}
	var stdout, stderr bytes.Buffer
	if rc := run([]string{"-o", t.TempDir(), filepath.Join(t.TempDir(), "missing")}, nil, &stdout, &stderr); rc != 1 {
		t.Errorf("mkimage with a missing layer = %d, want 1", rc)
	}
}
