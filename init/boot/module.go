package boot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/qtenclave/enclave/init/cmdline"
	"github.com/qtenclave/enclave/init/entropy"
	"github.com/qtenclave/enclave/init/heartbeat"
	"github.com/qtenclave/enclave/init/kmod"
	"github.com/qtenclave/enclave/init/mount"
)

// secureModule is the lane of steps 2 and 3: the driver, its device, and
// entropy from it.
func (b *Boot) secureModule(ctx context.Context, step func(string, func() (string, error))) {
	var loaded bool
	step("modules", func() (string, error) {
		// A device that is already there has a built-in driver: a
		// module of the same name would only fail to load.
		if p, err := kmod.WaitDevice(ctx, b.exists, b.Opts.DevicePaths, 0, 0); err == nil {
			return "", skipf("%s present (driver built in)", p)
		}
		res := kmod.LoadAll(b.M, b.exists, b.Opts.ModuleDir, b.Opts.ModuleNames)
		if len(res) == 0 {
			return "", skipf("no %s in %s (built in or absent)", strings.Join(b.Opts.ModuleNames, "/"), b.Opts.ModuleDir)
		}
		var parts []string
		var errs []error
		for _, r := range res {
			if r.Err != nil {
				errs = append(errs, r.Err)
				continue
			}
			loaded = true
			parts = append(parts, r.Path+" "+r.Outcome.String())
		}
		return strings.Join(parts, ", "), errors.Join(errs...)
	})
	step("device", func() (string, error) {
		wait := time.Duration(0)
		if loaded {
			wait = b.Opts.DeviceWait
		}
		t0 := time.Now()
		p, err := kmod.WaitDevice(ctx, b.exists, b.Opts.DevicePaths, wait, 0)
		if wait > 0 {
			b.deviceWait = time.Since(t0)
		}
		if err != nil {
			return "", skipf("%v: no entropy from the module, no qtsm-agent", err)
		}
		b.device = p
		return p, nil
	})
	step("entropy", func() (string, error) { return b.seed(ctx) })
}

func (b *Boot) exists(p string) bool {
	_, err := b.M.Stat(p)
	return err == nil
}

func (b *Boot) readCmdline() (string, error) {
	var line string
	if b.Cmdline != nil {
		line = *b.Cmdline
	} else {
		if err := mount.Do(b.M, mount.Proc()); err != nil {
			return "", fmt.Errorf("%w (using defaults)", err)
		}
		// The bootstrap root's /proc stays mounted, unreachable after the
		// switch root: unmounting costs an RCU grace period (milliseconds
		// under TCG) for nothing.
		data, err := b.M.ReadFile("/proc/cmdline")
		if err != nil {
			return "", fmt.Errorf("read /proc/cmdline: %w (using defaults)", err)
		}
		line = string(data)
	}
	k, warnings := cmdline.Parse(line)
	b.knobs = k
	for _, w := range warnings {
		b.Con.Warnf("%s", w)
	}
	hb := "off"
	if k.Heartbeat {
		hb = fmt.Sprintf("%d:%d", k.HeartbeatCID, k.HeartbeatPort)
	}
	return fmt.Sprintf("heartbeat=%s status_port=%d debug=%v", hb, k.StatusPort, k.Debug), nil
}

func (b *Boot) seed(ctx context.Context) (string, error) {
	var parts []string
	var seedErr error
	if b.device == "" {
		parts = append(parts, "0 bytes (no secure module)")
	} else {
		mod, closeMod, err := b.OpenModule(b.device)
		if err != nil {
			seedErr = err
			parts = append(parts, "0 bytes from "+b.device)
		} else {
			n, err := entropy.Seed(ctx, mod, b.M, b.Opts.EntropyBytes)
			closeMod()
			seedErr = err
			parts = append(parts, fmt.Sprintf("%d bytes from %s", n, b.device))
		}
	}
	waited, err := entropy.EnsureReady(ctx, b.M, b.Opts.CRNGWait)
	b.crngWait = waited
	switch {
	case err != nil:
		parts = append(parts, "crng NOT ready")
		return strings.Join(parts, ", "), errors.Join(seedErr, err)
	case waited > 0:
		parts = append(parts, "crng ready after "+Ms(waited))
	default:
		parts = append(parts, "crng ready")
	}
	return strings.Join(parts, ", "), seedErr
}

func (b *Boot) heartbeatStep(ctx context.Context) (string, error) {
	if !b.knobs.Heartbeat {
		return "", skipf("disabled on the kernel command line")
	}
	cfg := heartbeat.Config{
		CID: b.knobs.HeartbeatCID, Port: b.knobs.HeartbeatPort, Policy: b.Opts.Heartbeat, After: b.Opts.TimeSync,
		OnRetry: func(attempt int, err error, backoff time.Duration) {
			b.Con.Warnf("heartbeat attempt %d: %v; retrying in %v", attempt, err, backoff)
		},
	}
	r, err := heartbeat.Run(ctx, b.Dialer, cfg)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d:%d after %d attempt(s)", cfg.CID, cfg.Port, r.Attempts), nil
}
