package unixsock

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestListen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "qtsm.sock")
	gid := -1
	if os.Getuid() == 0 {
		gid = 1234
	}
	f, err := Listen(path, 0o660, gid)
	if err != nil {
		t.Fatalf("Listen(%s): %v", path, err)
	}
	defer f.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("mode of %s = %v, want a socket with 0660", path, fi.Mode())
	}
	if st := fi.Sys().(*syscall.Stat_t); gid >= 0 && int(st.Gid) != gid {
		t.Errorf("group of %s = %d, want %d", path, st.Gid, gid)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "run", ".*")); len(m) != 0 {
		t.Errorf("temporary names left behind: %q", m)
	}

	// A client connects and writes before anybody accepts: the connection
	// waits in the backlog.
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		t.Fatalf("dial before accept: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	// Whoever gets the descriptor (the agent) accepts it.
	l, err := net.FileListener(f)
	if err != nil {
		t.Fatalf("FileListener: %v", err)
	}
	defer l.Close()
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := make([]byte, 4)
	if _, err := s.Read(b); err != nil || string(b) != "ping" {
		t.Errorf("accepted connection read %q, %v; want ping", b, err)
	}
}

func TestListenExists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qtsm.sock")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if f, err := Listen(path, 0o660, -1); !errors.Is(err, fs.ErrExist) {
		if f != nil {
			f.Close()
		}
		t.Errorf("Listen(existing %s) = %v, want ErrExist", path, err)
	}
	// The path is not replaced.
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("existing file replaced: %v, %v", fi, err)
	}
}

func TestUnixBadDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if f, err := Listen(filepath.Join(dir, "file", "qtsm.sock"), 0o660, -1); err == nil {
		f.Close()
		t.Error("Unix under a regular file = nil error")
	}
}

// TestPredictableNamesIgnored: names an attacker could pre-create in a
// world-writable directory (the old fixed and pid-based temporary names)
// are never used, so a symlink planted there cannot redirect the chmod or
// chown to another file.
func TestPredictableNamesIgnored(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "qtsm.sock")
	for _, name := range []string{".qtsm.sock.init", ".qtsm.sock." + strconv.Itoa(os.Getpid()), ".qtsm.sock.1"} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Listen(path, 0o666, -1)
	if err != nil {
		t.Fatalf("Listen = %v", err)
	}
	f.Close()
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("planted symlink's target mode = %v, %v; want 0600 untouched", fi.Mode(), err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o666 {
		t.Errorf("socket %s = %v, %v; want a 0666 socket", path, fi.Mode(), err)
	}
}
