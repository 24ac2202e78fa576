package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	path := filepath.Join(dir, "out.bin")
	for _, sync := range []bool{false, true} {
		if err := Write(path, Options{Sync: sync}, func(f *os.File) error { _, err := f.WriteString("hello"); return err }); err != nil {
			t.Fatalf("Write(sync=%v) = %v", sync, err)
		}
		b, err := os.ReadFile(path)
		st, _ := os.Stat(path)
		if err != nil || string(b) != "hello" || st.Mode().Perm() != 0o644 {
			t.Errorf("Write(sync=%v) left %q mode %v (%v), want hello 0644", sync, b, st.Mode().Perm(), err)
		}
	}
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.bin")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := Write(path, Options{Perm: 0o600}, func(f *os.File) error { f.WriteString("partial"); return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Write(failing) = %v, want boom", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("target after failed Write = %q, want old", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory after failed Write has %d entries, want 1 (no temp file)", len(ents))
	}
}

func TestWriteRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, Options{}, func(*os.File) error { return nil }); err == nil {
		t.Errorf("Write(directory) = nil, want error")
	}
}
