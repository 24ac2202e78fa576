package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qtenclave/enclave/image/eif"
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
