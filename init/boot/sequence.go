package boot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/qtenclave/enclave/init/mount"
	"github.com/qtenclave/enclave/init/reaper"
	"github.com/qtenclave/enclave/proto/launch"
	"github.com/qtenclave/enclave/proto/status"
	"github.com/qtenclave/enclave/proto/workload"
)

// run is the sequence of init/doc.go, step by step; each step's work is a
// method below.
func (b *Boot) run() (status.Status, error) {
	ctx := context.Background()

	// 1. devtmpfs, which the secure-module lane needs, first of all.
	logDev := b.later("devtmpfs", func() (string, error) { return "", mount.Do(b.M, mount.Dev()) })
	// 2-3. The secure module comes up on the other CPU: loading the
	// driver, waiting for its device and seeding entropy are kernel work
	// that overlaps the console, the command line and reading the launch
	// configuration. Their lines are written when the sequence joins them,
	// before the heartbeat, so the console keeps the documented order.
	module := b.goLane(func(step func(string, func() (string, error))) { b.secureModule(ctx, step) })
	b.Con.Logf("start pid=%d uptime=%s", os.Getpid(), Ms(b.Uptime))
	logDev()
	b.step("console", func() (string, error) { return "", b.M.ReopenConsole() })
	b.step("cmdline", b.readCmdline)
	b.Con.SetDebug(b.knobs.Debug)
	// lo depends on nothing else: the kernel brings it up while the
	// sequence goes on; joined before the workload.
	joinLoopback := b.async("loopback", b.loopback)
	// 5, read ahead: its line is written, and a bad configuration ends the
	// boot, after the heartbeat.
	var m *launch.Manifest
	logConfig := b.later("config", func() (detail string, err error) {
		m, detail, err = b.loadConfig()
		return detail, err
	})
	module.join(b) // every step in it is optional

	// 4. Heartbeat (excluded from the ready time), then the log stream.
	if err := b.heartbeatAndLogs(ctx); err != nil {
		return status.Status{}, &fatal{status.Failed(status.Heartbeat), err}
	}
	// 5. Launch configuration.
	if err := logConfig(); err != nil {
		return status.Status{}, &fatal{status.Failed(status.Config), err}
	}
	agentExec := b.openAgent(m)
	// 6. Switch root and the new root's mounts.
	if err := b.switchRoot(m); err != nil {
		return status.Status{}, &fatal{status.Failed(status.Setup), err}
	}
	// 7. The workload, prepared first (the agent's socket belongs to its
	// group), then the agent on the socket init creates.
	hostname, nofile := b.hostSettings(m)
	spec, err := b.prepareWorkload(m, hostname)
	if err != nil {
		return status.Status{}, workloadFatal(err)
	}
	joinLoopback() // if the boot fails earlier, its result is not logged
	if err := b.egressListen(m, agentExec, spec); err != nil {
		return status.Status{}, &fatal{status.Failed(status.Setup), err}
	}
	if len(m.Publish) > 0 && agentExec == "" {
		return status.Status{}, &fatal{status.Failed(status.Setup), errNoPublisher}
	}
	b.publish = m.Publish
	b.step("agent-start", func() (string, error) { return b.agentStart(agentExec, spec.User.GID) })
	b.step("hostname", func() (string, error) { return hostname, b.M.Sethostname(hostname) })
	b.step("hosts", func() (string, error) { return b.writeHosts(hostname) })
	b.step("rlimits", func() (string, error) { return fmt.Sprintf("nofile %d", nofile), b.M.SetNofile(nofile) })
	b.step("control", func() (string, error) { return b.listenControl(m) })
	defer b.stopper.close()
	// 8. The workload runs.
	pid, done, err := b.execWorkload(spec)
	if err != nil {
		return status.Status{}, workloadFatal(err)
	}
	b.stopper.running(pid)
	b.ready(pid)
	// 9. Its end.
	return b.waitWorkload(done), nil
}

// workloadFatal ends the boot with the status a workload error carries
// (internal for any other error).
func workloadFatal(err error) error {
	var we *workload.Error
	if errors.As(err, &we) {
		return &fatal{we.Status(), err}
	}
	return &fatal{status.Failed(status.Internal), err}
}

func (b *Boot) loopback() (string, error) {
	r, err := b.M.Loopback()
	return r.String(), err
}

// loadConfig reads the launch configuration; the detail names its source
// and argv.
func (b *Boot) loadConfig() (*launch.Manifest, string, error) {
	m, src, err := launch.Load(b.M.FS())
	if err != nil {
		return nil, "", err
	}
	return m, "/" + src + ", argv " + quoteList(m.Argv()), nil
}

// heartbeatAndLogs runs the heartbeat, measured (its time is excluded from
// the ready time), then connects the log stream.
func (b *Boot) heartbeatAndLogs(ctx context.Context) error {
	hb := time.Now()
	err := b.step("heartbeat", func() (string, error) { return b.heartbeatStep(ctx) })
	b.heartbeat = time.Since(hb)
	if err != nil {
		return err
	}
	b.step("log-stream", func() (string, error) { return b.connectLogs(ctx) })
	return nil
}

// switchRoot moves into the application's root and mounts what it needs.
func (b *Boot) switchRoot(m *launch.Manifest) error {
	if err := b.step("switch-root", func() (string, error) {
		return "/" + launch.RootfsDir, mount.SwitchRoot(b.M, "/"+launch.RootfsDir)
	}); err != nil {
		return err
	}
	return b.step("mounts", func() (string, error) { return b.mounts(m) })
}

func (b *Boot) mounts(m *launch.Manifest) (string, error) {
	var skipped []string
	err := mount.All(b.M, mount.Table(mount.Options{TmpNoexec: m.TmpNoexec}), func(err error) {
		skipped = append(skipped, err.Error())
	})
	if err != nil {
		return "", err
	}
	if err := mount.Symlinks(b.M, mount.Links()); err != nil {
		return "", err
	}
	tmp := "/tmp exec"
	if m.TmpNoexec {
		tmp = "/tmp noexec"
	}
	if len(skipped) > 0 {
		return tmp + "; optional mounts skipped: " + strings.Join(skipped, "; "), nil
	}
	return tmp, nil
}

// hostSettings are the hostname and RLIMIT_NOFILE: the manifest's, else
// init's defaults.
func (b *Boot) hostSettings(m *launch.Manifest) (hostname string, nofile uint64) {
	hostname, nofile = b.Opts.Hostname, b.Opts.Nofile
	if m.Hostname != "" {
		hostname = m.Hostname
	}
	if m.NofileLimit != 0 {
		nofile = m.NofileLimit
	}
	return hostname, nofile
}

// prepareWorkload resolves the workload the way Docker would.
func (b *Boot) prepareWorkload(m *launch.Manifest, hostname string) (*workload.Spec, error) {
	var spec *workload.Spec
	err := b.step("workload", func() (string, error) {
		var err error
		if spec, err = workload.Prepare(m, b.M, hostname); err != nil {
			return "", err
		}
		// Path and directory come from the image: quoted, so no byte of
		// theirs can start a console line.
		return fmt.Sprintf("%s as %d:%d in %s", strconv.Quote(spec.Path), spec.User.UID, spec.User.GID, strconv.Quote(spec.Dir)), nil
	})
	return spec, err
}

// execWorkload starts the workload, its output into the log stream when
// that is connected.
func (b *Boot) execWorkload(spec *workload.Spec) (int, <-chan reaper.Status, error) {
	var pid int
	var done <-chan reaper.Status
	err := b.step("exec", func() (string, error) {
		p := Proc{
			Path: spec.Path, Argv: spec.Argv, Env: spec.Env, Dir: spec.Dir, Setsid: true,
			Cred: &syscall.Credential{Uid: spec.User.UID, Gid: spec.User.GID, Groups: spec.User.Groups},
		}
		where := b.workloadOutput(&p)
		var err error
		pid, done, err = b.Procs.Start(p)
		// The workload has its copies of the pipes now (or never will).
		for _, f := range []*os.File{p.Stdout, p.Stderr} {
			if f != nil {
				f.Close()
			}
		}
		if err != nil {
			return "", workload.ExecError(spec.Argv[0], err)
		}
		return fmt.Sprintf("pid %d, output %s", pid, where), nil
	})
	return pid, done, err
}

// ready hands the signals to the workload and writes the ready and own
// time lines.
func (b *Boot) ready(pid int) {
	b.Procs.ForwardTo(pid)
	ready := time.Since(b.Start) - b.heartbeat
	if b.afterExec != nil {
		b.afterExec()
	}
	b.Con.Logf("ready in %s (heartbeat %s excluded)", Ms(ready), Ms(b.heartbeat))
	var ru syscall.Rusage
	if b.Con.Debug() && syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		b.Con.Debugf("page faults so far: %d minor, %d major; max RSS %d KiB", ru.Minflt, ru.Majflt, ru.Maxrss)
	}
	own := ready - b.deviceWait - b.crngWait
	b.Con.Logf("own time %s (waits excluded: heartbeat %s, device %s, crng %s)",
		Ms(own), Ms(b.heartbeat), Ms(b.deviceWait), Ms(b.crngWait))
}

// waitWorkload waits for the workload's end and the rest of its output,
// and returns its status.
func (b *Boot) waitWorkload(done <-chan reaper.Status) status.Status {
	ws := <-done
	b.stopper.running(0)
	b.Procs.ForwardTo(0)
	if b.Logs != nil && !b.Logs.Drain(b.Opts.LogDrain) {
		b.Con.Warnf("the workload's output is still open %v after it exited (a process it started holds it); not waiting for the rest", b.Opts.LogDrain)
	}
	b.Con.Logf("workload %v", ws)
	if ws.Signaled() {
		return status.Killed(int(ws.Signal()))
	}
	return status.Exit(ws.ExitStatus())
}

// quoteList is fmt's %q of a []string, without fmt's reflection (whose
// first use costs milliseconds of translation under TCG).
func quoteList(ss []string) string {
	b := []byte{'['}
	for i, s := range ss {
		if i > 0 {
			b = append(b, ' ')
		}
		b = strconv.AppendQuote(b, s)
	}
	return string(append(b, ']'))
}
