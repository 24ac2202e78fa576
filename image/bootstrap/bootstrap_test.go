package bootstrap

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtenclave/enclave/image/eif"
	"github.com/qtenclave/enclave/image/ramdisk"
)

// fakeELF writes a minimal ELF64 little-endian executable header for
// machine, with a PT_INTERP program header when dynamic.
func fakeELF(t *testing.T, dir, name string, machine elf.Machine, dynamic bool) string {
	t.Helper()
	var b bytes.Buffer
	le := binary.LittleEndian
	ident := [16]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)}
	b.Write(ident[:])
	phnum := uint16(0)
	if dynamic {
		phnum = 1
	}
	binary.Write(&b, le, struct {
		Type, Machine                                        uint16
		Version                                              uint32
		Entry, Phoff, Shoff                                  uint64
		Flags                                                uint32
		Ehsize, Phentsize, Phnum, Shentsize, Shnum, Shstrndx uint16
	}{uint16(elf.ET_EXEC), uint16(machine), 1, 0x401000, 64, 0, 0, 64, 56, phnum, 64, 0, 0})
	if dynamic {
		binary.Write(&b, le, elf.Prog64{Type: uint32(elf.PT_INTERP), Off: 120, Filesz: 28, Memsz: 28})
		b.WriteString("/lib64/ld-linux-x86-64.so.2\x00")
	}
	b.WriteString("code")
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestModuleName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/x/nsm.ko", "nsm.ko"},
		{"nsm.ko.xz", "nsm.ko.xz"},
		{"/cache/kernel/abc/nsm.ko.zst", "nsm.ko.zst"},
		{"other-driver.ko.gz", "nsm.ko.gz"},
		{"/lib/modules/qtsm.ko.xz", "qtsm.ko.xz"},
		{"qtsm.ko", "qtsm.ko"},
		{"nsm.o", ""},
		{".ko", ""},
		{"nsm.ko.bz2", ""},
	} {
		got, err := ModuleName(tc.in)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("ModuleName(%q) = %q, %v, want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestWriteLayout(t *testing.T) {
	dir := t.TempDir()
	init := fakeELF(t, dir, "init", elf.EM_X86_64, false)
	agent := fakeELF(t, dir, "qtsm-agent", elf.EM_X86_64, false)
	mod := filepath.Join(dir, "nsm.ko.xz")
	os.WriteFile(mod, []byte("module"), 0o600)

	opts := Options{Init: init, Agent: agent, Module: mod, CheckArch: true, Arch: eif.ArchX86_64}
	var a, b bytes.Buffer
	if err := Write(&a, opts); err != nil {
		t.Fatal(err)
	}
	// Host metadata does not leak: change the files' modes and times.
	os.Chmod(init, 0o700)
	os.Chtimes(agent, timeAt(12345), timeAt(12345))
	if err := Write(&b, opts); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two writes of the same inputs differ")
	}

	idx, err := ramdisk.ReadIndex(&a)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range idx.Paths() {
		e := idx.Entries[p]
		got = append(got, fmt.Sprintf("%s %s %04o %d:%d mtime=%d", p, e.TypeName(), e.Mode&0o7777, e.UID, e.GID, e.MTime))
	}
	want := []string{
		"dev dir 0755 0:0 mtime=0",
		"dev/console char 0600 0:0 mtime=0",
		"init file 0755 0:0 mtime=0",
		"nsm.ko.xz file 0644 0:0 mtime=0",
		"qtsm-agent file 0755 0:0 mtime=0",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("layout =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c := idx.Entries["dev/console"]; c.RdevMajor != 5 || c.RdevMinor != 1 {
		t.Errorf("dev/console = %d:%d, want 5:1", c.RdevMajor, c.RdevMinor)
	}
}

func TestWriteOptional(t *testing.T) {
	dir := t.TempDir()
	init := fakeELF(t, dir, "init", elf.EM_AARCH64, false)
	var b bytes.Buffer
	if err := Write(&b, Options{Init: init, Arch: eif.ArchAArch64, CheckArch: true}); err != nil {
		t.Fatal(err)
	}
	idx, err := ramdisk.ReadIndex(&b)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(idx.Paths(), ","); got != "dev,dev/console,init" {
		t.Errorf("paths = %s, want dev,dev/console,init", got)
	}
}

func TestRefuses(t *testing.T) {
	dir := t.TempDir()
	x86 := fakeELF(t, dir, "x86", elf.EM_X86_64, false)
	arm := fakeELF(t, dir, "arm", elf.EM_AARCH64, false)
	dyn := fakeELF(t, dir, "dyn", elf.EM_X86_64, true)
	script := filepath.Join(dir, "script")
	os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no init", Options{}, "no init"},
		{"missing init", Options{Init: filepath.Join(dir, "nope")}, "no such file"},
		{"wrong arch", Options{Init: arm, CheckArch: true, Arch: eif.ArchX86_64}, "built for EM_AARCH64"},
		{"agent wrong arch", Options{Init: x86, Agent: arm, CheckArch: true}, "built for EM_AARCH64"},
		{"dynamic", Options{Init: dyn, CheckArch: true}, "dynamically linked"},
		{"script", Options{Init: script, CheckArch: true}, "not an ELF"},
		{"bad module name", Options{Init: x86, Module: script}, "want a file ending in .ko"},
		{"directory", Options{Init: dir}, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Write(&bytes.Buffer{}, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Write = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func timeAt(sec int64) time.Time { return time.Unix(sec, 0) }
