package cache

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestNewest(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("QTENCLAVE_CACHE", dir)
	now := time.Now()
	mk := func(entry string, age time.Duration) string {
		p := filepath.Join(dir, "qemu", entry, "bin", "qemu-system-x86_64")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if got := Newest("qemu", "bin/qemu-system-x86_64"); got != "" {
		t.Errorf("Newest(empty cache) = %q, want none", got)
	}
	mk("old", time.Hour)
	want := mk("new", time.Minute)
	mk("newest.build.123", 0) // unfinished build
	if got := Newest("qemu", "bin/qemu-system-x86_64"); got != want {
		t.Errorf("Newest(qemu) = %q, want %q", got, want)
	}
	if got := Newest("kernel", "bzImage"); got != "" {
		t.Errorf("Newest(kernel) = %q, want none", got)
	}
	if got := Dir(); got != dir {
		t.Errorf("Dir() = %q, want %q", got, dir)
	}
}
