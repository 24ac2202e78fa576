package rootfs

import (
	"fmt"
	"strings"

	"github.com/qtenclave/enclave/proto/egress"
	"github.com/qtenclave/enclave/proto/launch"
)

// Manifest computes the launch manifest of img under opts (image config,
// then Options.Override, then Options.Launch's enclave options) and
// validates it. WriteRamdisk writes exactly this manifest.
func Manifest(img *Image, opts Options) (*launch.Manifest, error) {
	c := ApplyOverride(img.config, opts.Override)
	m := &launch.Manifest{
		Version:    launch.Version,
		Entrypoint: c.Entrypoint,
		Cmd:        c.Cmd,
		Env:        c.Env,
		WorkingDir: c.WorkingDir,
		User:       c.User,
	}
	if !hasKey(m.Env, "PATH") {
		m.Env = append(m.Env, "PATH="+launch.DefaultPath)
	}
	if l := opts.Launch; l != nil {
		m.Hostname, m.TmpNoexec, m.NofileLimit, m.Agent, m.StopTimeout = l.Hostname, l.TmpNoexec, l.NofileLimit, l.Agent, l.StopTimeout
		if e := l.Egress; e != nil {
			// The rules as proto/egress reads them, normalised, so that the
			// measured manifest holds exactly what is enforced.
			p, err := egress.Parse(e.Allow, e.Deny)
			if err != nil {
				return nil, fmt.Errorf("rootfs: %w", err)
			}
			allow, deny := p.Strings()
			m.Egress = &launch.Egress{Allow: allow, Deny: deny, ProxyPort: e.ProxyPort}
			for _, f := range e.Forwards {
				d, err := egress.ParseDestination(f)
				if err != nil {
					return nil, fmt.Errorf("rootfs: egress forward: %w", err)
				}
				if _, isAddr := d.Addr(); isAddr {
					return nil, fmt.Errorf("rootfs: egress forward %q: a forward maps a name; an address is reached through the proxy", f)
				}
				if dec := p.Check(d); !dec.Allowed {
					return nil, fmt.Errorf("rootfs: egress forward %q: the policy refuses it (%s)", f, dec.Rule)
				}
				m.Egress.Forwards = append(m.Egress.Forwards, d.String())
			}
		}
		m.Publish = l.Publish
		if (m.Egress != nil || len(m.Publish) > 0) && m.Agent != nil && !*m.Agent {
			return nil, fmt.Errorf("rootfs: egress and published ports are served by qtsm-agent, which the manifest turns off (agent: false)")
		}
	}
	if m.WorkingDir != "" && !strings.HasPrefix(m.WorkingDir, "/") {
		return nil, fmt.Errorf("rootfs: working directory %q is not absolute", m.WorkingDir)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("rootfs: %s: %w", img.ref, err)
	}
	return m, nil
}

// ApplyOverride applies o to the image config c the way docker run's
// --entrypoint, trailing arguments, -e, -w and -u do: a non-nil
// o.Entrypoint replaces the Entrypoint and drops the image's Cmd unless
// o.Cmd is non-nil too; a non-nil o.Cmd replaces Cmd; an o.Env entry
// replaces the entry with the same key or is appended; a non-empty
// WorkingDir or User replaces the image's.
func ApplyOverride(c, o Config) Config {
	c = cloneConfig(c)
	if o.Entrypoint != nil {
		c.Entrypoint = cloneStrings(o.Entrypoint)
		c.Cmd = nil
	}
	if o.Cmd != nil {
		c.Cmd = cloneStrings(o.Cmd)
	}
	for _, kv := range o.Env {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, old := range c.Env {
			if ok, _, _ := strings.Cut(old, "="); ok == k {
				c.Env[i] = kv
				replaced = true
			}
		}
		if !replaced {
			c.Env = append(c.Env, kv)
		}
	}
	if o.WorkingDir != "" {
		c.WorkingDir = o.WorkingDir
	}
	if o.User != "" {
		c.User = o.User
	}
	if len(c.Entrypoint) == 0 {
		c.Entrypoint = nil
	}
	if len(c.Cmd) == 0 {
		c.Cmd = nil
	}
	return c
}

func hasKey(env []string, key string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}
