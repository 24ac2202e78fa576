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

// errNoPublisher: published ports are served by the agent, which is not
// starting.
var errNoPublisher = errors.New("the launch manifest publishes ports, which qtsm-agent serves, and qtsm-agent is not started")

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
		f, err := b.M.ListenTCP4([4]byte{127, 0, 0, 1}, port)
		if err != nil {
			return "", err
		}
		b.egress, b.egressFile = m.Egress, f
		b.release = append(b.release, func() { f.Close() })
		for i, fw := range m.Egress.Forwards {
			_, p, _ := cutPort(fw)
			f, err := b.M.ListenTCP4(launch.ForwardAddr(i), p)
			if err != nil {
				return "", fmt.Errorf("forward %s: %w", fw, err)
			}
			b.forwardFiles = append(b.forwardFiles, f)
			b.release = append(b.release, func() { f.Close() })
		}
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		spec.Env = setDefault(spec.Env,
			"HTTP_PROXY="+url, "HTTPS_PROXY="+url, "http_proxy="+url, "https_proxy="+url,
			"NO_PROXY=localhost,127.0.0.1,::1", "no_proxy=localhost,127.0.0.1,::1")
		detail := fmt.Sprintf("proxy on 127.0.0.1:%d, %d allow and %d deny rules", port, len(m.Egress.Allow), len(m.Egress.Deny))
		if n := len(m.Egress.Forwards); n > 0 {
			detail += fmt.Sprintf(", %d forwards", n)
		}
		return detail, nil
	})
}

// cutPort splits a forward's name:port (the build checked its form).
func cutPort(s string) (string, int, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("forward %q has no port", s)
	}
	p, err := strconv.Atoi(s[i+1:])
	return s[:i], p, err
}

// hostsLines are the forwards' /etc/hosts lines.
func (b *Boot) hostsLines() string {
	if b.egress == nil {
		return ""
	}
	var sb strings.Builder
	for i, fw := range b.egress.Forwards {
		name, _, _ := cutPort(fw)
		a := launch.ForwardAddr(i)
		fmt.Fprintf(&sb, "%d.%d.%d.%d\t%s\n", a[0], a[1], a[2], a[3], name)
	}
	return sb.String()
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

// egressArgs are the agent's flags for the proxy on descriptor fd and
// the forwards on the descriptors after it.
func egressArgs(e *launch.Egress, fd int) []string {
	args := []string{"--egress-fd", strconv.Itoa(fd)}
	for i, fw := range e.Forwards {
		args = append(args, "--egress-forward", strconv.Itoa(fd+1+i)+"="+fw)
	}
	for _, r := range e.Allow {
		args = append(args, "--egress-allow", r)
	}
	for _, r := range e.Deny {
		args = append(args, "--egress-deny", r)
	}
	return args
}
