package mount

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/qtenclave/enclave/init/internal/nstest"
	"golang.org/x/sys/unix"
)

// recorder is a fake Mounter that logs every call and fails the ones listed
// in fail (keyed by "op target").
type recorder struct {
	calls []string
	fail  map[string]error
}

func (r *recorder) do(call string) error {
	r.calls = append(r.calls, call)
	return r.fail[call]
}

func (r *recorder) Mount(source, target, fstype string, flags uintptr, data string) error {
	return r.do(fmt.Sprintf("mount %s %s %s %#x %s", source, target, fstype, flags, data))
}
func (r *recorder) Unmount(target string, flags int) error { return r.do("umount " + target) }
func (r *recorder) MkdirAll(path string, perm fs.FileMode) error {
	return r.do(fmt.Sprintf("mkdir %s %o", path, perm))
}
func (r *recorder) Symlink(o, n string) error { return r.do("symlink " + n + " " + o) }
func (r *recorder) Chdir(d string) error      { return r.do("chdir " + d) }
func (r *recorder) Chroot(d string) error     { return r.do("chroot " + d) }

func TestSwitchRootSequence(t *testing.T) {
	r := &recorder{}
	if err := SwitchRoot(r, "/rootfs"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("mount /rootfs /rootfs  %#x ", unix.MS_BIND|unix.MS_REC),
		"chdir /rootfs",
		fmt.Sprintf("mount . /  %#x ", unix.MS_MOVE),
		"chroot .",
		"chdir /",
	}
	if strings.Join(r.calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("SwitchRoot calls =\n%s\nwant\n%s", strings.Join(r.calls, "\n"), strings.Join(want, "\n"))
	}
	r = &recorder{fail: map[string]error{"chroot .": unix.EPERM}}
	err := SwitchRoot(r, "/rootfs")
	var me *Error
	if !errors.As(err, &me) || !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "chroot") {
		t.Errorf("SwitchRoot with failing chroot = %v, want *Error wrapping EPERM naming chroot", err)
	}
	if last := r.calls[len(r.calls)-1]; last != "chroot ." {
		t.Errorf("SwitchRoot went on after failure: last call %q", last)
	}
}

func TestTable(t *testing.T) {
	byTarget := func(pts []Point) map[string]Point {
		m := map[string]Point{}
		for _, p := range pts {
			m[p.Target] = p
		}
		return m
	}
	def := byTarget(Table(Options{}))
	nx := byTarget(Table(Options{TmpNoexec: true}))
	for _, target := range []string{"/dev", "/proc", "/sys", "/dev/pts", "/dev/shm", "/run", "/tmp", "/sys/fs/cgroup"} {
		p, ok := def[target]
		if !ok {
			t.Errorf("Table() lacks %s", target)
			continue
		}
		if p.Flags&unix.MS_NOSUID == 0 {
			t.Errorf("%s mounted without nosuid", p)
		}
	}
	if def["/tmp"].Flags&unix.MS_NOEXEC != 0 {
		t.Errorf("default /tmp is noexec: %s", def["/tmp"])
	}
	if nx["/tmp"].Flags&unix.MS_NOEXEC == 0 {
		t.Errorf("TmpNoexec /tmp is exec: %s", nx["/tmp"])
	}
	if got, want := def["/tmp"].String(), "tmpfs on /tmp (nosuid,nodev,mode=1777)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	// Order: /dev before /dev/pts and /dev/shm, /sys before its cgroup.
	idx := map[string]int{}
	for i, p := range Table(Options{}) {
		idx[p.Target] = i
	}
	for _, o := range [][2]string{{"/dev", "/dev/pts"}, {"/dev", "/dev/shm"}, {"/sys", "/sys/fs/cgroup"}} {
		if idx[o[0]] > idx[o[1]] {
			t.Errorf("%s mounted after %s", o[0], o[1])
		}
	}
}

func TestAll(t *testing.T) {
	pts := Table(Options{})
	cg := fmt.Sprintf("mount cgroup2 /sys/fs/cgroup cgroup2 %#x ", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC)
	dev := fmt.Sprintf("mount devtmpfs /dev devtmpfs %#x mode=0755", unix.MS_NOSUID|unix.MS_NOEXEC)
	// Optional failure: warned, then the rest goes on. Busy devtmpfs is fine.
	r := &recorder{fail: map[string]error{cg: unix.ENODEV, dev: unix.EBUSY}}
	var warned []error
	if err := All(r, pts, func(err error) { warned = append(warned, err) }); err != nil {
		t.Fatalf("All with optional failure = %v", err)
	}
	if len(warned) != 1 || !errors.Is(warned[0], unix.ENODEV) {
		t.Errorf("warnings = %v, want one ENODEV", warned)
	}
	if n := strings.Count(strings.Join(r.calls, "\n"), "mount "); n != len(pts) {
		t.Errorf("%d mounts attempted, want %d", n, len(pts))
	}
	// Required failure: stops.
	tmp := fmt.Sprintf("mount tmpfs /run tmpfs %#x mode=0755", unix.MS_NOSUID|unix.MS_NODEV)
	r = &recorder{fail: map[string]error{tmp: unix.ENOMEM}}
	err := All(r, pts, nil)
	if !errors.Is(err, unix.ENOMEM) || !strings.Contains(err.Error(), "/run") {
		t.Errorf("All with /run failing = %v, want ENOMEM naming /run", err)
	}
	if strings.Contains(strings.Join(r.calls, "\n"), "/tmp") {
		t.Error("All went on after a required mount failed")
	}
	// A mount point that cannot be created is reported as mkdir.
	r = &recorder{fail: map[string]error{"mkdir /proc 755": unix.EROFS}}
	if err := All(r, pts, nil); err == nil || !strings.HasPrefix(err.Error(), "mkdir proc on /proc") {
		t.Errorf("All with mkdir failing = %v", err)
	}
}

func TestSymlinks(t *testing.T) {
	r := &recorder{fail: map[string]error{"symlink /dev/fd /proc/self/fd": fs.ErrExist}}
	if err := Symlinks(r, Links()); err != nil {
		t.Errorf("Symlinks with existing /dev/fd = %v", err)
	}
	if len(r.calls) != len(Links()) {
		t.Errorf("%d symlink calls, want %d", len(r.calls), len(Links()))
	}
	r = &recorder{fail: map[string]error{"symlink /dev/stdin /proc/self/fd/0": unix.EROFS}}
	if err := Symlinks(r, Links()); !errors.Is(err, unix.EROFS) {
		t.Errorf("Symlinks = %v, want EROFS", err)
	}
}

func TestMkdirAll(t *testing.T) {
	d := t.TempDir()
	p := filepath.Join(d, "a/b/c")
	if err := (Sys{}).MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := (Sys{}).MkdirAll(p, 0o755); err != nil {
		t.Errorf("MkdirAll existing = %v", err)
	}
	os.WriteFile(filepath.Join(d, "f"), nil, 0o644)
	if err := (Sys{}).MkdirAll(filepath.Join(d, "f"), 0o755); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("MkdirAll on a file = %v, want ENOTDIR", err)
	}
}

// TestIntegrationSwitchRoot runs the real switch root and mount table in a
// new mount and PID namespace, from a tmpfs that stands in for the
// initramfs.
func TestIntegrationSwitchRoot(t *testing.T) {
	if nstest.Child(t.Name()) {
		childSwitchRoot(t)
		return
	}
	nstest.Run(t, t.Name(), syscall.CLONE_NEWNS|syscall.CLONE_NEWPID, "NSTEST_DIR="+t.TempDir()).MustPass(t)
}

func childSwitchRoot(t *testing.T) {
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	dir := os.Getenv("NSTEST_DIR")
	must("make mounts private", unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""))
	must("tmpfs", unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"))
	must("rootfs", os.MkdirAll(filepath.Join(dir, "rootfs/etc"), 0o755))
	must("marker", os.WriteFile(filepath.Join(dir, "rootfs/marker"), []byte("in"), 0o644))
	must("outside", os.WriteFile(filepath.Join(dir, "outside"), []byte("out"), 0o644))
	// Keep a copy of the test binary to exec from /tmp later.
	self, err := os.ReadFile("/proc/self/exe")
	must("read self", err)
	must("chroot to bootstrap", unix.Chroot(dir))
	must("chdir", unix.Chdir("/"))

	must("SwitchRoot", SwitchRoot(Sys{}, "/rootfs"))
	if b, err := os.ReadFile("/marker"); err != nil || string(b) != "in" {
		t.Errorf("after SwitchRoot /marker = %q, %v", b, err)
	}
	for _, gone := range []string{"/outside", "/rootfs"} {
		if _, err := os.Stat(gone); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after SwitchRoot %s still visible (%v)", gone, err)
		}
	}
	var warned []string
	must("All", All(Sys{}, Table(Options{}), func(err error) { warned = append(warned, err.Error()) }))
	for _, w := range warned {
		t.Logf("optional mount skipped: %s", w)
	}
	must("Symlinks", Symlinks(Sys{}, Links()))

	info, err := os.ReadFile("/proc/self/mountinfo")
	must("mountinfo", err)
	mounts := map[string]string{} // target -> "fstype opts"
	for _, l := range strings.Split(string(info), "\n") {
		f := strings.Fields(l)
		if len(f) < 10 {
			continue
		}
		sep := 6
		for f[sep] != "-" {
			sep++
		}
		mounts[f[4]] = f[sep+1] + " " + f[5]
	}
	for target, want := range map[string][]string{
		"/dev":     {"devtmpfs", "nosuid", "noexec"},
		"/proc":    {"proc", "nosuid", "nodev", "noexec"},
		"/dev/shm": {"tmpfs", "nosuid", "nodev", "noexec"},
		"/run":     {"tmpfs", "nosuid", "nodev"},
		"/tmp":     {"tmpfs", "nosuid", "nodev"},
		"/sys":     {"sysfs"},
		"/dev/pts": {"devpts"},
	} {
		got, ok := mounts[target]
		if !ok {
			t.Errorf("%s not mounted; mountinfo:\n%s", target, info)
			continue
		}
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s mounted as %q, want %q in it", target, got, w)
			}
		}
	}
	if strings.Contains(mounts["/tmp"], "noexec") {
		t.Errorf("/tmp is noexec by default: %s", mounts["/tmp"])
	}
	if l, err := os.Readlink("/dev/fd"); err != nil || l != "/proc/self/fd" {
		t.Errorf("/dev/fd -> %q, %v", l, err)
	}
	// /tmp allows exec by default; the TmpNoexec variant does not.
	if !nstest.StaticSelf() {
		t.Log("test binary is dynamically linked (-race?): exec checks skipped")
		return
	}
	must("copy self", os.WriteFile("/tmp/self", self, 0o755))
	if out, err := exec.Command("/tmp/self", "-test.run=^$").CombinedOutput(); err != nil {
		t.Errorf("exec from default /tmp: %v\n%s", err, out)
	}
	var nx Point
	for _, p := range Table(Options{TmpNoexec: true}) {
		if p.Target == "/tmp" {
			nx = p
		}
	}
	nx.Target = "/run/tmpnx"
	must("noexec tmp", Do(Sys{}, nx))
	must("copy self", os.WriteFile("/run/tmpnx/self", self, 0o755))
	if err := exec.Command("/run/tmpnx/self", "-test.run=^$").Run(); !errors.Is(err, unix.EACCES) {
		t.Errorf("exec from noexec tmp = %v, want EACCES", err)
	}
}
