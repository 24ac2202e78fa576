package image

import (
	"fmt"

	"github.com/qtenclave/enclave/internal/strictyaml"
	"github.com/qtenclave/enclave/proto/launch"
)

// MaxBuildConfig bounds qtenclave build --config's file.
const MaxBuildConfig = 1 << 20

// ParseBuildConfig reads qtenclave build --config's declarative file:
// everything the launch manifest holds, in YAML with the manifest's own
// field names (launch.Manifest), strictly (an unknown key is an error).
// Flags given on the command line win over the file; list flags add to
// its lists.
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
func ParseBuildConfig(b []byte) (*launch.Manifest, error) {
	var m launch.Manifest
	if err := strictyaml.Decode(b, MaxBuildConfig, &m); err != nil {
		return nil, fmt.Errorf("build config: %w", err)
	}
	return &m, nil
}
