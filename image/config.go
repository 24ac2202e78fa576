package image

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"

	"github.com/qtenclave/enclave/proto/launch"
)

// BuildConfig is qtenclave build --config's declarative file: everything
// the launch manifest holds, in YAML with the manifest's field names.
// Flags given on the command line win over the file (list flags add to
// its lists).
//
//	entrypoint: ["/app"]
//	cmd: ["--serve"]
//	env: ["MODE=prod"]
//	working_dir: /srv
//	user: app
//	hostname: payments
//	tmp_noexec: true
//	nofile_limit: 65536
//	agent: true
//	stop_timeout: 30
//	egress:
//	  allow: ["kms.eu-west-1.amazonaws.com:443", "**.example.com:443"]
//	  deny: ["10.0.0.0/8"]
//	  proxy_port: 3128
//	  forwards: ["kms.eu-west-1.amazonaws.com:443"]
//	publish: [8080]
type BuildConfig struct {
	Entrypoint  []string      `yaml:"entrypoint"`
	Cmd         []string      `yaml:"cmd"`
	Env         []string      `yaml:"env"`
	WorkingDir  string        `yaml:"working_dir"`
	User        string        `yaml:"user"`
	Hostname    string        `yaml:"hostname"`
	TmpNoexec   bool          `yaml:"tmp_noexec"`
	NofileLimit uint64        `yaml:"nofile_limit"`
	Agent       *bool         `yaml:"agent"`
	StopTimeout uint32        `yaml:"stop_timeout"`
	Egress      *EgressConfig `yaml:"egress"`
	Publish     []uint16      `yaml:"publish"`
}

// EgressConfig is the file's egress section (launch.Egress).
type EgressConfig struct {
	Allow     []string `yaml:"allow"`
	Deny      []string `yaml:"deny"`
	ProxyPort uint16   `yaml:"proxy_port"`
	Forwards  []string `yaml:"forwards"`
}

// MaxBuildConfig bounds the file.
const MaxBuildConfig = 1 << 20

// ParseBuildConfig reads the file strictly: an unknown key (a typo) is an
// error, not a setting silently ignored.
func ParseBuildConfig(b []byte) (*BuildConfig, error) {
	if len(b) > MaxBuildConfig {
		return nil, fmt.Errorf("build config: %d bytes, more than %d", len(b), MaxBuildConfig)
	}
	var c BuildConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("build config: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("build config: more than one YAML document")
	}
	return &c, nil
}

// Launch is the file's enclave options as the manifest's (nil when it sets
// none).
func (c *BuildConfig) Launch() *launch.Manifest {
	m := &launch.Manifest{Hostname: c.Hostname, TmpNoexec: c.TmpNoexec, NofileLimit: c.NofileLimit, Agent: c.Agent,
		StopTimeout: c.StopTimeout, Publish: c.Publish}
	if e := c.Egress; e != nil {
		m.Egress = &launch.Egress{Allow: e.Allow, Deny: e.Deny, ProxyPort: e.ProxyPort, Forwards: e.Forwards}
	}
	return m
}
