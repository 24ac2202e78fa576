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
	Version int `json:"version"`
	// Entrypoint and Cmd as in the image config; Argv combines them the way
	// Docker does.
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	// Env is KEY=VALUE entries, in order; a later duplicate key wins.
	Env []string `json:"env,omitempty"`
	// WorkingDir is the workload's working directory inside the rootfs
	// (default "/").
	WorkingDir string `json:"working_dir,omitempty"`
	// User is "name", "uid", "name:group", "uid:gid" and so on, resolved
	// against the rootfs's /etc/passwd and /etc/group (default root).
	User string `json:"user,omitempty"`
	// Hostname for the enclave (default "enclave").
	Hostname string `json:"hostname,omitempty"`
	// TmpNoexec mounts /tmp noexec (AWS's behaviour); default exec allowed.
	TmpNoexec bool `json:"tmp_noexec,omitempty"`
	// NofileLimit raises RLIMIT_NOFILE for the workload (0 = init's default).
	NofileLimit uint64 `json:"nofile_limit,omitempty"`
	// Agent controls starting qtsm-agent: nil or true starts it when the
	// binary is present, false never starts it.
	Agent *bool `json:"agent,omitempty"`
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

// Validate checks the manifest for what init cannot run.
func (m *Manifest) Validate() error {
	if m.Version != Version {
		return fmt.Errorf("launch: manifest version %d, want %d", m.Version, Version)
	}
	argv := m.Argv()
	if len(argv) == 0 || argv[0] == "" {
		return ErrNoCommand
	}
	for i, e := range m.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("launch: env entry %d %q is not KEY=VALUE", i, e)
		}
	}
	for _, s := range append(argv, m.Env...) {
		if strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("launch: NUL byte in %q", s)
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
// line is one element; only the line terminator is removed. An empty /env
// is fine; an empty /cmd is ErrNoCommand.
func ParseLegacy(cmd, env []byte) (*Manifest, error) {
	m := &Manifest{Version: Version, Cmd: lines(cmd), Env: lines(env)}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// LegacyFiles renders /cmd (the combined argv) and /env.
func (m *Manifest) LegacyFiles() (cmd, env []byte) {
	return joinLines(m.Argv()), joinLines(m.Env)
}

func lines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	s := strings.TrimSuffix(string(b), "\n")
	out := strings.Split(s, "\n")
	// Tolerate a lone trailing empty line from editors, nothing else.
	return out
}

func joinLines(ss []string) []byte {
	var b bytes.Buffer
	for _, s := range ss {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return b.Bytes()
}
