package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qtenclave/enclave/image/eif"
	"github.com/qtenclave/enclave/rootfs"
)

func TestFindBinary(t *testing.T) {
	t.Chdir(t.TempDir())
	if _, err := FindBinary("init"); err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("FindBinary without bin/ = %v, want a hint", err)
	}
	if err := os.Mkdir("bin", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("bin", "init"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if p, err := FindBinary("init"); err != nil || p != filepath.Join("bin", "init") {
		t.Errorf("FindBinary = %q, %v, want bin/init", p, err)
	}
}

func TestCmdline(t *testing.T) {
	empty, custom := "", "console=ttyS0"
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{}, CmdlineX86},
		{Spec{Arch: eif.ArchAArch64}, CmdlineARM64},
		{Spec{Cmdline: &custom, Append: " qtenclave.log_port=9002 "}, "console=ttyS0  qtenclave.log_port=9002"},
		{Spec{Cmdline: &empty}, ""},
	} {
		got, err := tc.spec.cmdline()
		if err != nil || got != tc.want {
			t.Errorf("cmdline(%+v) = %q, %v, want %q", tc.spec, got, err, tc.want)
		}
	}
	bad := "a\x00b"
	if _, err := (&Spec{Cmdline: &bad}).cmdline(); err == nil {
		t.Errorf("cmdline with a NUL = nil error")
	}
}

// TestBuildRefusesWithoutLeftovers: an image init could not run fails the
// build (the application ramdisk is prepared while the other sections are
// written), and its spool is released.
func TestBuildRefusesWithoutLeftovers(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	kernel := filepath.Join(dir, "kernel")
	os.WriteFile(kernel, make([]byte, 4096), 0o644)
	initBin := filepath.Join(dir, "init")
	os.WriteFile(initBin, minimalELF(), 0o755)
	spool := t.TempDir()
	s := Spec{Image: "dir:" + root, Kernel: kernel, Init: initBin, Override: rootfs.Config{Cmd: []string{"/missing"}}, TempDir: spool}
	var out bytes.Buffer
	_, err := Build(context.Background(), writerAt{&out}, s)
	if !errors.Is(err, rootfs.ErrWorkload) || !strings.Contains(err.Error(), `exec "/missing": no such file or directory`) {
		t.Fatalf("Build = %v, want rootfs.ErrWorkload for the missing program", err)
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Errorf("spool files left: %v", left)
	}
}

// writerAt is an io.WriterAt over a buffer (tests only).
type writerAt struct{ b *bytes.Buffer }

func (w writerAt) WriteAt(p []byte, off int64) (int, error) {
	if need := int(off) + len(p); need > w.b.Len() {
		w.b.Write(make([]byte, need-w.b.Len()))
	}
	copy(w.b.Bytes()[off:], p)
	return len(p), nil
}

// minimalELF is the header of a static x86_64 executable, with no program
// headers: enough for the bootstrap ramdisk's checks.
func minimalELF() []byte {
	h := make([]byte, 64)
	copy(h, "\x7fELF")
	h[4], h[5], h[6] = 2, 1, 1                // 64-bit, little-endian, version 1
	binary.LittleEndian.PutUint16(h[16:], 2)  // ET_EXEC
	binary.LittleEndian.PutUint16(h[18:], 62) // EM_X86_64
	binary.LittleEndian.PutUint32(h[20:], 1)  // version
	binary.LittleEndian.PutUint16(h[52:], 64) // header size
	binary.LittleEndian.PutUint16(h[54:], 56) // program header size
	binary.LittleEndian.PutUint16(h[58:], 64) // section header size
	return h
}
