package boot

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/qtenclave/enclave/proto/launch"
	"github.com/qtenclave/enclave/proto/workload"
)

// errNoCompanion: egress is served by the agent, which is not starting.
var errNoCompanion = errors.New("the launch manifest opens egress, which qtsm-agent serves, and qtsm-agent is not started")

// egressListen is step "egress": the HTTP proxy's listener on 127.0.0.1,
// created before the agent and the workload start (socket activation, as
// for the agent's socket: the workload's first request never meets a
// refused connection), and the proxy variables in the workload's
// environment. The agent serves the proxy on it.
func (b *Boot) egressListen(m *launch.Manifest, agentExec string, spec *workload.Spec) error {
	if m.Egress == nil {
		return nil
	}
	return b.step("egress", func() (string, error) {
		if agentExec == "" {
			return "", errNoCompanion
		}
		port := m.Egress.Port()
		f, err := b.M.ListenLoopback(port)
		if err != nil {
			return "", err
		}
		b.egress, b.egressFile = m.Egress, f
		b.release = append(b.release, func() { f.Close() })
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		spec.Env = setDefault(spec.Env,
			"HTTP_PROXY="+url, "HTTPS_PROXY="+url, "http_proxy="+url, "https_proxy="+url,
			"NO_PROXY=localhost,127.0.0.1,::1", "no_proxy=localhost,127.0.0.1,::1")
		return fmt.Sprintf("proxy on 127.0.0.1:%d, %d allow and %d deny rules", port, len(m.Egress.Allow), len(m.Egress.Deny)), nil
	})
}

// setDefault appends each KEY=VALUE whose key env does not set: the
// image's own setting wins.
func setDefault(env []string, kvs ...string) []string {
	have := make(map[string]bool, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		have[k] = true
	}
	for _, kv := range kvs {
		if k, _, _ := strings.Cut(kv, "="); !have[k] {
			env = append(env, kv)
		}
	}
	return env
}

// egressArgs are the agent's flags for the proxy on descriptor fd.
func egressArgs(e *launch.Egress, fd int) []string {
	args := []string{"--egress-fd", strconv.Itoa(fd)}
	for _, r := range e.Allow {
		args = append(args, "--egress-allow", r)
	}
	for _, r := range e.Deny {
		args = append(args, "--egress-deny", r)
	}
	return args
}
