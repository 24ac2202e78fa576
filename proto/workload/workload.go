// Package workload turns a launch manifest into a process to start, the way
// Docker would: Entrypoint+Cmd, the image's environment with Docker's
// defaults, PATH lookup with the image's PATH, the working directory and the
// user resolved against the image's /etc/passwd and /etc/group.
//
// Every failure is an *Error carrying the status.Reason init reports, so
// each kind of bad input ends the enclave with its own status.
package workload

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/qtenclave/enclave/proto/launch"
	"github.com/qtenclave/enclave/proto/status"
	"github.com/qtenclave/enclave/proto/user"
)

// Files is the view of the workload's root file system Prepare needs.
type Files interface {
	Stat(name string) (fs.FileInfo, error)
	ReadFile(name string) ([]byte, error)
	MkdirAll(name string, perm fs.FileMode) error
}

// Spec is a prepared workload.
type Spec struct {
	Path string   // the program, resolved
	Argv []string // argv, argv[0] as configured
	Env  []string
	Dir  string
	User *user.Identity
}

// Error is a workload that cannot be started.
type Error struct {
	Reason status.Reason
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Status is the status init reports for e.
func (e *Error) Status() status.Status { return status.Failed(e.Reason) }

func fail(r status.Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Err: fmt.Errorf(format, args...)}
}

// Prepare resolves m against the workload's root file system f.
func Prepare(m *launch.Manifest, f Files, hostname string) (*Spec, error) {
	argv := m.Argv()
	if len(argv) == 0 || argv[0] == "" {
		return nil, &Error{Reason: status.Config, Err: launch.ErrNoCommand}
	}
	passwd := readOptional(f, "/etc/passwd")
	group := readOptional(f, "/etc/group")
	who, err := user.Resolve(m.User, passwd, group)
	if err != nil {
		return nil, fail(status.User, "user %q: %w", m.User, err)
	}
	env := Env(m.Env, hostname, who.Home)
	dir := m.WorkingDir
	if dir == "" {
		dir = "/"
	}
	dir = path.Join("/", dir)
	if err := CheckDir(f, dir, who); err != nil {
		return nil, &Error{Reason: status.Workdir, Err: err}
	}
	p, err := LookPath(f, argv[0], Getenv(env, "PATH"), dir)
	if err != nil {
		return nil, err
	}
	return &Spec{Path: p, Argv: argv, Env: env, Dir: dir, User: who}, nil
}

func readOptional(f Files, name string) []byte {
	b, err := f.ReadFile(name)
	if err != nil {
		return nil
	}
	if b == nil {
		b = []byte{}
	}
	return b
}

// Env builds the workload environment as Docker does: PATH (Docker's default)
// and HOSTNAME first, then the image's entries, each replacing an earlier
// entry with the same key, then HOME from the user when still unset.
func Env(image []string, hostname, home string) []string {
	env := []string{"PATH=" + launch.DefaultPath}
	if hostname != "" {
		env = append(env, "HOSTNAME="+hostname)
	}
	for _, e := range image {
		env = setenv(env, e)
	}
	if _, ok := lookupEnv(env, "HOME"); !ok {
		if home == "" {
			home = "/"
		}
		env = append(env, "HOME="+home)
	}
	return env
}

func setenv(env []string, kv string) []string {
	k, _, _ := strings.Cut(kv, "=")
	for i, e := range env {
		if ek, _, _ := strings.Cut(e, "="); ek == k {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

func lookupEnv(env []string, key string) (string, bool) {
	for _, e := range env {
		if k, v, ok := strings.Cut(e, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// Getenv returns key's value in env ("" if unset).
func Getenv(env []string, key string) string {
	v, _ := lookupEnv(env, key)
	return v
}

// LookPath finds the program file the way execvp does (and Docker before
// it): a name with a slash is used as is (relative to dir), anything else is
// searched in pathEnv, relative entries relative to dir. A missing program
// is status.NotFound; a directory or a file without execute bits is
// status.NoExec.
func LookPath(f Files, file, pathEnv, dir string) (string, error) {
	if strings.Contains(file, "/") {
		p := file
		if !path.IsAbs(p) {
			p = path.Join(dir, p)
		}
		st, err := f.Stat(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", fail(status.NotFound, "exec %q: no such file or directory", file)
			}
			return "", fail(status.NoExec, "exec %q: %w", file, err)
		}
		if err := executable(st); err != nil {
			return "", fail(status.NoExec, "exec %q: %w", file, err)
		}
		return p, nil
	}
	var nonExec string
	for _, d := range strings.Split(pathEnv, ":") {
		if d == "" {
			d = "."
		}
		if !path.IsAbs(d) {
			d = path.Join(dir, d)
		}
		p := path.Join(d, file)
		st, err := f.Stat(p)
		if err != nil {
			continue
		}
		if executable(st) != nil {
			if nonExec == "" {
				nonExec = p
			}
			continue
		}
		return p, nil
	}
	if nonExec != "" {
		return "", fail(status.NotFound, "exec %q: executable file not found in $PATH (%s is not executable)", file, nonExec)
	}
	return "", fail(status.NotFound, "exec %q: executable file not found in $PATH=%s", file, pathEnv)
}

var (
	errIsDir   = errors.New("is a directory")
	errNotExec = errors.New("permission denied (no execute bit)")
)

func executable(st fs.FileInfo) error {
	if st.IsDir() {
		return errIsDir
	}
	if st.Mode().Perm()&0o111 == 0 {
		return errNotExec
	}
	return nil
}

// CheckDir makes sure who can use dir as working directory: it must be a
// directory every component of which who may search. A missing directory
// is created (root-owned, 0755) as runc does for a container's cwd.
func CheckDir(f Files, dir string, who *user.Identity) error {
	st, err := f.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := f.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("working directory %q: %w", dir, err)
		}
		st, err = f.Stat(dir)
	}
	if err != nil {
		return fmt.Errorf("working directory %q: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("working directory %q: not a directory", dir)
	}
	if who.UID == 0 {
		return nil
	}
	// Every component from the root down must be searchable.
	p := "/"
	for _, c := range append([]string{""}, strings.Split(strings.Trim(dir, "/"), "/")...) {
		p = path.Join(p, c)
		st, err := f.Stat(p)
		if err != nil {
			return fmt.Errorf("working directory %q: %w", dir, err)
		}
		if !searchable(st, who) {
			return fmt.Errorf("working directory %q: permission denied for uid %d on %q", dir, who.UID, p)
		}
	}
	return nil
}

func searchable(st fs.FileInfo, who *user.Identity) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return true // cannot tell: let the kernel decide
	}
	mode := st.Mode().Perm()
	switch {
	case sys.Uid == who.UID:
		return mode&0o100 != 0
	case sys.Gid == who.GID || containsID(who.Groups, sys.Gid):
		return mode&0o010 != 0
	}
	return mode&0o001 != 0
}

func containsID(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// ExecError classifies an error from starting the program: ENOENT (a
// missing interpreter or loader) is status.NotFound, everything else
// status.NoExec.
func ExecError(file string, err error) *Error {
	if errors.Is(err, syscall.ENOENT) {
		return &Error{Reason: status.NotFound, Err: fmt.Errorf("exec %q: %w (missing program, interpreter or dynamic loader)", file, err)}
	}
	return &Error{Reason: status.NoExec, Err: fmt.Errorf("exec %q: %w", file, err)}
}

// Dir is Files on the host directory it names: "/" inside the enclave after
// the switch root; a temporary directory in tests. Names are absolute paths
// inside that root. (Absolute symbolic links resolve against the real root,
// which is the same thing in the enclave.)
type Dir string

func (d Dir) join(name string) string { return path.Join(string(d), path.Join("/", name)) }

// Stat implements Files.
func (d Dir) Stat(name string) (fs.FileInfo, error) { return os.Stat(d.join(name)) }

// ReadFile implements Files.
func (d Dir) ReadFile(name string) ([]byte, error) { return os.ReadFile(d.join(name)) }

// MkdirAll implements Files.
func (d Dir) MkdirAll(name string, perm fs.FileMode) error { return os.MkdirAll(d.join(name), perm) }
