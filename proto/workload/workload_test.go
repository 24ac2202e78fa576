package workload

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/qtenclave/enclave/proto/launch"
	"github.com/qtenclave/enclave/proto/status"
	"github.com/qtenclave/enclave/proto/user"
)

// newRoot builds a small image root: /bin/app (executable), /bin/data (not
// executable), /usr/local/bin/tool, /srv (0700 owned by root), /etc/passwd
// and /etc/group.
func newRoot(t *testing.T) Dir {
	t.Helper()
	d := t.TempDir()
	for _, f := range []struct {
		name string
		mode os.FileMode
		data string
	}{
		{"bin/app", 0o755, "#!/bin/sh\n"},
		{"bin/data", 0o644, "x"},
		{"usr/local/bin/tool", 0o755, "x"},
		{"opt/app/run", 0o750, "x"},
		{"etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"},
		{"etc/group", 0o644, "root:x:0:\napp:x:1000:\nwheel:x:10:app\n"},
	} {
		p := filepath.Join(d, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []struct {
		name string
		mode os.FileMode
	}{{"srv", 0o700}, {"bin/dir", 0o755}, {"pub", 0o755}} {
		if err := os.Mkdir(filepath.Join(d, dir.name), dir.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(d, dir.name), dir.mode)
	}
	return Dir(d)
}

func TestPrepare(t *testing.T) {
	root := newRoot(t)
	for _, tc := range []struct {
		name string
		m    launch.Manifest
		want Spec
	}{
		{"defaults", launch.Manifest{Cmd: []string{"app", "x y"}},
			Spec{Path: "/bin/app", Argv: []string{"app", "x y"}, Dir: "/",
				Env:  []string{"PATH=" + launch.DefaultPath, "HOSTNAME=enclave", "HOME=/root"},
				User: &user.Identity{Name: "root", Home: "/root"}}},
		{"entrypoint and cmd", launch.Manifest{Entrypoint: []string{"tool", "--serve"}, Cmd: []string{"--port", "80"}, Env: []string{"PATH=/usr/local/bin", "A=1"}},
			Spec{Path: "/usr/local/bin/tool", Argv: []string{"tool", "--serve", "--port", "80"}, Dir: "/",
				Env:  []string{"PATH=/usr/local/bin", "HOSTNAME=enclave", "A=1", "HOME=/root"},
				User: &user.Identity{Name: "root", Home: "/root"}}},
		{"user, workdir, env override", launch.Manifest{Cmd: []string{"/bin/app"}, User: "app", WorkingDir: "pub",
			Env: []string{"HOME=/data", "HOSTNAME=custom", "A=1", "A=2"}},
			Spec{Path: "/bin/app", Argv: []string{"/bin/app"}, Dir: "/pub",
				Env:  []string{"PATH=" + launch.DefaultPath, "HOSTNAME=custom", "HOME=/data", "A=2"},
				User: &user.Identity{Name: "app", UID: 1000, GID: 1000, Groups: []uint32{10}, Home: "/home/app"}}},
		{"relative path with slash", launch.Manifest{Cmd: []string{"./run"}, WorkingDir: "/opt/app"},
			Spec{Path: "/opt/app/run", Argv: []string{"./run"}, Dir: "/opt/app",
				Env:  []string{"PATH=" + launch.DefaultPath, "HOSTNAME=enclave", "HOME=/root"},
				User: &user.Identity{Name: "root", Home: "/root"}}},
		{"relative PATH entry", launch.Manifest{Cmd: []string{"run"}, WorkingDir: "/opt", Env: []string{"PATH=/nope:app"}},
			Spec{Path: "/opt/app/run", Argv: []string{"run"}, Dir: "/opt",
				Env:  []string{"PATH=/nope:app", "HOSTNAME=enclave", "HOME=/root"},
				User: &user.Identity{Name: "root", Home: "/root"}}},
		{"missing workdir created", launch.Manifest{Cmd: []string{"app"}, WorkingDir: "/new/dir"},
			Spec{Path: "/bin/app", Argv: []string{"app"}, Dir: "/new/dir",
				Env:  []string{"PATH=" + launch.DefaultPath, "HOSTNAME=enclave", "HOME=/root"},
				User: &user.Identity{Name: "root", Home: "/root"}}},
	} {
		m := tc.m
		m.Version = launch.Version
		got, err := Prepare(&m, root, "enclave")
		if err != nil {
			t.Errorf("%s: Prepare error %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%s: Prepare = %+v (user %+v), want %+v (user %+v)", tc.name, *got, *got.User, tc.want, *tc.want.User)
		}
	}
	if st, err := os.Stat(filepath.Join(string(root), "new/dir")); err != nil || !st.IsDir() {
		t.Errorf("missing working dir not created: %v", err)
	}
}

func TestPrepareFailures(t *testing.T) {
	root := newRoot(t)
	os.WriteFile(filepath.Join(string(root), "file"), []byte("x"), 0o644)
	for _, tc := range []struct {
		name string
		m    launch.Manifest
		want status.Reason
		msg  string
	}{
		{"empty command", launch.Manifest{}, status.Config, "empty command"},
		{"empty program", launch.Manifest{Cmd: []string{""}}, status.Config, "empty command"},
		{"unknown user", launch.Manifest{Cmd: []string{"app"}, User: "ghost"}, status.User, `unknown user "ghost"`},
		{"unknown group", launch.Manifest{Cmd: []string{"app"}, User: "app:ghosts"}, status.User, `unknown group "ghosts"`},
		{"workdir not a dir", launch.Manifest{Cmd: []string{"app"}, WorkingDir: "/file"}, status.Workdir, "not a directory"},
		{"not found in PATH", launch.Manifest{Cmd: []string{"python3", "app.py"}}, status.NotFound, `"python3": executable file not found in $PATH`},
		{"only non-executable in PATH", launch.Manifest{Cmd: []string{"data"}, Env: []string{"PATH=/bin"}}, status.NotFound, "/bin/data is not executable"},
		{"absent absolute", launch.Manifest{Cmd: []string{"/bin/nope"}}, status.NotFound, "no such file"},
		{"not executable", launch.Manifest{Cmd: []string{"/bin/data"}}, status.NoExec, "permission denied"},
		{"directory", launch.Manifest{Cmd: []string{"/bin/dir"}}, status.NoExec, "is a directory"},
	} {
		m := tc.m
		m.Version = launch.Version
		_, err := Prepare(&m, root, "enclave")
		var we *Error
		if !errors.As(err, &we) {
			t.Errorf("%s: Prepare error %v, want *Error", tc.name, err)
			continue
		}
		if we.Reason != tc.want || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Prepare error (%s) %q, want (%s) containing %q", tc.name, we.Reason, err, tc.want, tc.msg)
		}
		if st := we.Status(); st.Reason != tc.want || st.Code < 125 {
			t.Errorf("%s: Status() = %+v", tc.name, st)
		}
	}
}

func TestCheckDirPermissions(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to create directories owned by others")
	}
	root := newRoot(t)
	app := &user.Identity{UID: 1000, GID: 1000, Groups: []uint32{10}}
	mk := func(name string, mode os.FileMode, uid, gid int) {
		p := filepath.Join(string(root), name)
		os.MkdirAll(p, 0o755)
		os.Chmod(p, mode)
		os.Chown(p, uid, gid)
	}
	mk("owned", 0o700, 1000, 0)
	mk("grp", 0o710, 0, 10)
	mk("closed", 0o700, 0, 0)
	mk("closed/inner", 0o777, 1000, 1000)
	mk("other", 0o701, 0, 0)
	mk("noother", 0o770, 0, 0)
	// The temp dir's own ancestors (e.g. /tmp) are searchable by all.
	for _, tc := range []struct {
		dir string
		ok  bool
	}{{"/owned", true}, {"/grp", true}, {"/other", true}, {"/closed", false}, {"/closed/inner", false}, {"/noother", false}, {"/srv", false}} {
		err := CheckDir(root, tc.dir, app)
		if (err == nil) != tc.ok {
			t.Errorf("CheckDir(%s, uid 1000) = %v, want ok=%v", tc.dir, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("CheckDir(%s) error %q does not say permission denied", tc.dir, err)
		}
		if err := CheckDir(root, tc.dir, &user.Identity{}); err != nil {
			t.Errorf("CheckDir(%s, root) = %v, want nil", tc.dir, err)
		}
	}
}

func TestEnv(t *testing.T) {
	for _, tc := range []struct {
		image          []string
		hostname, home string
		want           []string
	}{
		{nil, "h", "/root", []string{"PATH=" + launch.DefaultPath, "HOSTNAME=h", "HOME=/root"}},
		{nil, "", "", []string{"PATH=" + launch.DefaultPath, "HOME=/"}},
		{[]string{"PATH=/x", "X=a=b", "X=c", "EMPTY="}, "h", "/",
			[]string{"PATH=/x", "HOSTNAME=h", "X=c", "EMPTY=", "HOME=/"}},
	} {
		if got := Env(tc.image, tc.hostname, tc.home); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Env(%q, %q, %q) = %q, want %q", tc.image, tc.hostname, tc.home, got, tc.want)
		}
	}
}

func TestExecError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want status.Reason
	}{
		{syscall.ENOENT, status.NotFound},
		{syscall.EACCES, status.NoExec},
		{syscall.ENOEXEC, status.NoExec},
		{syscall.ETXTBSY, status.NoExec},
	} {
		if e := ExecError("/x", tc.err); e.Reason != tc.want || !errors.Is(e, tc.err) {
			t.Errorf("ExecError(%v) = %s %v, want %s", tc.err, e.Reason, e, tc.want)
		}
	}
}
