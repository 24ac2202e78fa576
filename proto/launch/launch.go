// Package launch defines the launch configuration that the host tooling
// writes into the application ramdisk and that init reads at boot.
//
// Two forms exist. The manifest (/launch.json) is ours: versioned JSON that
// carries what Docker carries (Entrypoint, Cmd, Env, WorkingDir, User) plus
// enclave options. The legacy pair /cmd and /env is what AWS's and
// Huawei's inits read: one argv element per line and one KEY=VALUE per line,
// only a trailing newline stripped, no quoting. The tooling writes both; init
// prefers the manifest.
package launch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Paths inside the application ramdisk (relative to its root, which is the
// bootstrap root "/" at boot, before the switch into /rootfs).
const (
	ManifestPath = "launch.json"
	CmdPath      = "cmd"
	EnvPath      = "env"
	RootfsDir    = "rootfs"
)

// Version is the manifest version this package writes and accepts.
const Version = 1

// DefaultPath is the PATH given to the workload when its environment has none
// (Docker's default).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Manifest is the launch configuration.
type Manifest struct {
	Version int `json:"version" yaml:"-"`
	// Entrypoint and Cmd as in the image config; Argv combines them the way
	// Docker does.
	Entrypoint []string `json:"entrypoint,omitempty" yaml:"entrypoint"`
	Cmd        []string `json:"cmd,omitempty" yaml:"cmd"`
	// Env is KEY=VALUE entries, in order; a later duplicate key wins.
	Env []string `json:"env,omitempty" yaml:"env"`
	// WorkingDir is the workload's working directory inside the rootfs
	// (default "/").
	WorkingDir string `json:"working_dir,omitempty" yaml:"working_dir"`
	// User is "name", "uid", "name:group", "uid:gid" and so on, resolved
	// against the rootfs's /etc/passwd and /etc/group (default root).
	User string `json:"user,omitempty" yaml:"user"`
	// Hostname for the enclave (default "enclave").
	Hostname string `json:"hostname,omitempty" yaml:"hostname"`
	// TmpNoexec mounts /tmp noexec (AWS's behaviour); default exec allowed.
	TmpNoexec bool `json:"tmp_noexec,omitempty" yaml:"tmp_noexec"`
	// NofileLimit raises RLIMIT_NOFILE for the workload (0 = init's default).
	NofileLimit uint64 `json:"nofile_limit,omitempty" yaml:"nofile_limit"`
	// Agent controls starting qtsm-agent: nil or true starts it when the
	// binary is present, false never starts it.
	Agent *bool `json:"agent,omitempty" yaml:"agent"`
	// StopTimeout is the grace period, in seconds, between SIGTERM and
	// SIGKILL when the parent stops the enclave (0 = proto/control's
	// DefaultGrace), as docker run --stop-timeout.
	StopTimeout uint32 `json:"stop_timeout,omitempty" yaml:"stop_timeout"`
	// Egress opens the way out (nil: none): the policy the companion and
	// the parent enforce, measured with the rest of the manifest.
	Egress *Egress `json:"egress,omitempty" yaml:"egress"`
	// Publish lists the TCP ports the workload serves on 127.0.0.1 that
	// the parent may reach: the companion listens on the same vsock port
	// and connects each stream to the workload's port.
	Publish []uint16 `json:"publish,omitempty" yaml:"publish"`
}

// Egress is the workload's way out of the enclave (proto/egress).
type Egress struct {
	// Allow and Deny are egress rules (proto/egress); what no rule allows
	// is refused.
	Allow []string `json:"allow,omitempty" yaml:"allow"`
	Deny  []string `json:"deny,omitempty" yaml:"deny"`
	// ProxyPort is the HTTP proxy's port on 127.0.0.1 (0: DefaultProxyPort).
	ProxyPort uint16 `json:"proxy_port,omitempty" yaml:"proxy_port"`
	// Forwards are destinations (name:port) for programs that ignore
	// proxies: init gives each name a loopback address of its own
	// (127.0.0.2, .3, ... in order) in /etc/hosts, and the companion
	// tunnels what arrives there to the destination.
	Forwards []string `json:"forwards,omitempty" yaml:"forwards"`
}

// MaxForwards is how many forwards fit in 127.0.0.2..127.0.0.254.
const MaxForwards = 253

// ForwardAddr is the loopback address of forward i: 127.0.0.(2+i).
func ForwardAddr(i int) [4]byte { return [4]byte{127, 0, 0, byte(2 + i)} }

// DefaultProxyPort is the egress proxy's port unless the manifest says
// otherwise (the usual port of an HTTP proxy).
const DefaultProxyPort = 3128

// Port is the proxy's port.
func (e *Egress) Port() int {
	if e.ProxyPort == 0 {
		return DefaultProxyPort
	}
	return int(e.ProxyPort)
}

// ErrNoCommand is returned when neither Entrypoint nor Cmd give a program.
var ErrNoCommand = errors.New("launch: empty command")

// Argv is the command the workload runs: Entrypoint followed by Cmd when
// Entrypoint is set, else Cmd.
func (m *Manifest) Argv() []string {
	argv := make([]string, 0, len(m.Entrypoint)+len(m.Cmd))
	argv = append(argv, m.Entrypoint...)
	return append(argv, m.Cmd...)
}

// MaxString is the longest argv or environment string the kernel passes
// to a program (MAX_ARG_STRLEN, 32 pages of 4 KiB, its NUL included).
const MaxString = 32*4096 - 1

// ErrInvalid is a manifest init cannot run as written.
var ErrInvalid = errors.New("launch: invalid manifest")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Validate checks the manifest for what init cannot run, or could only
// run by passing on bytes that would corrupt what comes after: it is
// called where the manifest is made (rootfs) and where init loads it, so
// a hostile image config is refused at build time and again at boot.
//
//   - argv and env strings: no NUL (exec cannot pass one), at most
//     MaxString bytes;
//   - env: KEY=VALUE, the key without control characters, the value
//     without a newline (/env holds one entry per line);
//   - user and working_dir: no control characters (they reach the console
//     and the kernel as paths and names);
//   - hostname: RFC 1123 (letters, digits, hyphens; labels of 1 to 63,
//     not starting or ending with a hyphen; 253 at most).
func (m *Manifest) Validate() error {
	if m.Version != Version {
		return fmt.Errorf("launch: manifest version %d, want %d", m.Version, Version)
	}
	argv := m.Argv()
	if len(argv) == 0 || argv[0] == "" {
		return ErrNoCommand
	}
	for i, s := range argv {
		if err := execString(s); err != nil {
			return invalid("argv[%d] %.40q: %v", i, s, err)
		}
	}
	for i, e := range m.Env {
		k, v, ok := strings.Cut(e, "=")
		switch {
		case !ok || k == "":
			return invalid("env entry %d %.40q is not KEY=VALUE", i, e)
		case hasControl(k):
			return invalid("env entry %d: key %q holds a control character", i, k)
		case strings.IndexByte(v, '\n') >= 0:
			return invalid("env entry %d (%s): the value holds a newline, which /env cannot represent", i, k)
		}
		if err := execString(e); err != nil {
			return invalid("env entry %d (%s): %v", i, k, err)
		}
	}
	if hasControl(m.User) {
		return invalid("user %q holds a control character", m.User)
	}
	if hasControl(m.WorkingDir) {
		return invalid("working_dir %q holds a control character", m.WorkingDir)
	}
	if m.Hostname != "" {
		if err := CheckHostname(m.Hostname); err != nil {
			return invalid("%v", err)
		}
	}
	if e := m.Egress; e != nil {
		// The rules' syntax is proto/egress's, checked where they are
		// used (qtenclave build, the companion, the parent); init, which
		// links no network code, only carries them.
		for _, r := range append(append(append([]string(nil), e.Allow...), e.Deny...), e.Forwards...) {
			if r == "" || hasControl(r) || strings.ContainsAny(r, " \t") {
				return invalid("egress rule or forward %q is empty or holds a space or control character", r)
			}
		}
		if len(e.Forwards) > MaxForwards {
			return invalid("%d egress forwards, at most %d", len(e.Forwards), MaxForwards)
		}
	}
	seen := map[uint16]bool{}
	for _, p := range m.Publish {
		if p == 0 || seen[p] {
			return invalid("publish: port %d is zero or listed twice", p)
		}
		seen[p] = true
	}
	return nil
}

func execString(s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return errors.New("holds a NUL byte")
	}
	if len(s) > MaxString {
		return fmt.Errorf("%d bytes, more than the kernel passes to a program (%d)", len(s), MaxString)
	}
	return nil
}

// hasControl reports whether s holds a C0 control character or DEL.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}

// CheckHostname checks name against RFC 1123's host names.
func CheckHostname(name string) error {
	if len(name) > 253 {
		return fmt.Errorf("hostname of %d characters, more than 253", len(name))
	}
	for _, label := range strings.Split(name, ".") {
		if len(label) == 0 || len(label) > 63 {
			return fmt.Errorf("hostname %q: a label of %d characters (want 1 to 63)", name, len(label))
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("hostname %q: a label starts or ends with a hyphen", name)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("hostname %q: character %q is not a letter, digit or hyphen", name, c)
			}
		}
	}
	return nil
}

// Parse decodes and validates a manifest. Unknown fields are an error so
// that a newer tool's options are never silently ignored; so are
// duplicate fields, field names in another case, invalid UTF-8 and
// anything after the object. (The decoder is not encoding/json, which init
// would otherwise link only for this; it decodes the same values.)
func Parse(data []byte) (*Manifest, error) {
	m, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("launch: parse manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// Marshal encodes the manifest deterministically (compact JSON, newline).
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseLegacy builds a manifest from the contents of /cmd and /env. Each
// line is one element; only the line terminator is removed: "\n", or
// "\r\n" in a file whose every line ends so (written on Windows); a CR
// elsewhere at a line's end is refused rather than passed on into argv.
// An empty /env is fine; an empty /cmd is ErrNoCommand.
func ParseLegacy(cmd, env []byte) (*Manifest, error) {
	c, err := lines(CmdPath, cmd)
	if err != nil {
		return nil, err
	}
	e, err := lines(EnvPath, env)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Version: Version, Cmd: c, Env: e}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// LegacyFiles renders /cmd (the combined argv) and /env.
func (m *Manifest) LegacyFiles() (cmd, env []byte) {
	return joinLines(m.Argv()), joinLines(m.Env)
}

func lines(name string, b []byte) ([]string, error) {
	if len(b) == 0 {
		return nil, nil
	}
	s := strings.TrimSuffix(string(b), "\n")
	out := strings.Split(s, "\n")
	crlf := 0
	for _, l := range out {
		if strings.HasSuffix(l, "\r") {
			crlf++
		}
	}
	switch {
	case crlf == 0:
	case crlf == len(out) && strings.HasSuffix(string(b), "\r\n"):
		for i, l := range out {
			out[i] = strings.TrimSuffix(l, "\r")
		}
	default:
		return nil, invalid("%s: %d of %d lines end with CR: mixed line ends", name, crlf, len(out))
	}
	return out, nil
}

func joinLines(ss []string) []byte {
	var b bytes.Buffer
	for _, s := range ss {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return b.Bytes()
}
