// Package boot is the enclave's PID 1 sequence. Main wires it to the real
// system; Boot.Run and Boot.Finish take every dependency through small
// interfaces (Machine, Procs, vsock.Dialer, a secure-module opener) so the
// whole sequence is unit-tested with fakes, and run for real as PID 1 in a
// PID+mount+network namespace.
//
// The console lines it writes are documented in package init (init/doc.go).
package boot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/qtenclave/enclave/init/cmdline"
	"github.com/qtenclave/enclave/init/console"
	"github.com/qtenclave/enclave/init/entropy"
	"github.com/qtenclave/enclave/init/heartbeat"
	"github.com/qtenclave/enclave/init/kmod"
	"github.com/qtenclave/enclave/init/logs"
	"github.com/qtenclave/enclave/init/mount"
	"github.com/qtenclave/enclave/init/netlo"
	"github.com/qtenclave/enclave/init/reaper"
	"github.com/qtenclave/enclave/init/report"
	"github.com/qtenclave/enclave/init/supervise"
	"github.com/qtenclave/enclave/init/vsock"
	"github.com/qtenclave/enclave/init/workload"
	"github.com/qtenclave/enclave/proto/launch"
	"github.com/qtenclave/enclave/proto/logstream"
	"github.com/qtenclave/enclave/proto/status"
	"github.com/qtenclave/enclave/qtsm/device"
)

// Machine is everything the sequence does to the system. Paths are in the
// current root: the bootstrap ramdisk until the switch root, the
// application's root file system after it.
type Machine interface {
	mount.Mounter
	kmod.Loader
	entropy.Pool
	ReadFile(name string) ([]byte, error)
	Stat(name string) (fs.FileInfo, error)
	// WriteFileExcl creates name; fs.ErrExist if it exists.
	WriteFileExcl(name string, data []byte, perm fs.FileMode) error
	// FS is the current root as a file system.
	FS() fs.FS
	// OpenExec opens an executable so that it stays runnable after the
	// switch root, returning the path to exec it by (/proc/self/fd/N) and
	// a function that releases it.
	OpenExec(name string) (execPath string, release func(), err error)
	// ReopenConsole puts /dev/console on descriptors 0, 1 and 2.
	ReopenConsole() error
	// ListenUnix creates a listening Unix stream socket at path with mode
	// and, when gid >= 0, group gid (see package listen).
	ListenUnix(path string, mode fs.FileMode, gid int) (*os.File, error)
	Sethostname(name string) error
	SetNofile(n uint64) error
	Loopback() (netlo.Result, error)
	Sync()
	// Reboot is reboot(RB_AUTOBOOT); it returns only on failure.
	Reboot() error
}

// Proc is a process to start.
type Proc struct {
	Path   string
	Argv   []string
	Env    []string
	Dir    string
	Cred   *syscall.Credential // nil: init's (root)
	Setsid bool
	Stdout *os.File   // nil: init's descriptor 1
	Stderr *os.File   // nil: init's descriptor 2
	Extra  []*os.File // descriptors 3, 4, ...
}

// Procs starts and signals processes. In the enclave it is the reaper.
type Procs interface {
	Start(p Proc) (pid int, done <-chan reaper.Status, err error)
	Kill(pid int, sig syscall.Signal) error
	// ForwardTo makes pid the target of the signals init forwards.
	ForwardTo(pid int)
}

// Options are the sequence's policies.
type Options struct {
	ModuleDir    string        // where the driver modules are (default "/")
	ModuleNames  []string      // default kmod.Names
	DevicePaths  []string      // secure-module devices, in order (default device.Paths())
	DeviceWait   time.Duration // bound on the device wait after a module load (default 2s)
	EntropyBytes int           // default entropy.DefaultBytes
	CRNGWait     time.Duration // default entropy.DefaultReadyTimeout
	Heartbeat    heartbeat.Policy
	// TimeSync runs on the heartbeat connection after the echo
	// (Qingtian); nil skips it.
	TimeSync    heartbeat.Hook
	AgentPath   string        // default "/qtsm-agent" in the bootstrap ramdisk
	AgentSocket string        // default "/run/qtsm.sock"
	AgentWait   time.Duration // how long the agent's readiness is watched for, to log it (default 2s)
	AgentStop   time.Duration // SIGTERM-to-SIGKILL delay when stopping it (default 2s)
	Nofile      uint64        // RLIMIT_NOFILE for the workload (default 65536; the manifest overrides)
	Hostname    string        // default "enclave" (the manifest overrides)
	ReportWait  time.Duration // bound on the status report (default 2s)
	// LogDrain bounds the wait, after the workload exits, for the rest of
	// its output (a process it started may hold its pipes; default 2s).
	LogDrain time.Duration
	// LogClose bounds the wait for the parent to acknowledge the end of
	// the log stream (default logs.DefaultCloseTimeout).
	LogClose time.Duration
}

// Default values.
const (
	DefaultDeviceWait = 2 * time.Second
	DefaultAgentPath  = "/qtsm-agent"
	DefaultSocket     = "/run/qtsm.sock"
	DefaultAgentWait  = 2 * time.Second
	DefaultAgentStop  = 2 * time.Second
	DefaultNofile     = 65536
	DefaultHostname   = "enclave"
	DefaultLogDrain   = 2 * time.Second
)

func (o *Options) defaults() {
	if o.ModuleDir == "" {
		o.ModuleDir = "/"
	}
	if o.ModuleNames == nil {
		o.ModuleNames = kmod.Names
	}
	if o.DevicePaths == nil {
		o.DevicePaths = device.Paths()
	}
	if o.DeviceWait == 0 {
		o.DeviceWait = DefaultDeviceWait
	}
	if o.Heartbeat == (heartbeat.Policy{}) {
		o.Heartbeat = heartbeat.DefaultPolicy
	}
	if o.AgentPath == "" {
		o.AgentPath = DefaultAgentPath
	}
	if o.AgentSocket == "" {
		o.AgentSocket = DefaultSocket
	}
	if o.AgentWait == 0 {
		o.AgentWait = DefaultAgentWait
	}
	if o.AgentStop == 0 {
		o.AgentStop = DefaultAgentStop
	}
	if o.Nofile == 0 {
		o.Nofile = DefaultNofile
	}
	if o.Hostname == "" {
		o.Hostname = DefaultHostname
	}
	if o.LogDrain == 0 {
		o.LogDrain = DefaultLogDrain
	}
}

// Boot is one run of the sequence.
type Boot struct {
	M      Machine
	Procs  Procs
	Dialer vsock.Dialer
	Con    *console.Console
	// Logs is the log stream to the parent; nil: none (the workload
	// writes to the console). Main mirrors the console into it.
	Logs *logs.Stream
	// OpenModule opens the secure-module device at path.
	OpenModule func(path string) (src entropy.Source, close func() error, err error)
	// Cmdline is the kernel command line; nil reads /proc/cmdline.
	Cmdline *string
	// Start is when init started (default: when Run is called).
	Start time.Time
	// Uptime is the kernel's uptime at Start, for the start line (0 when
	// unknown).
	Uptime time.Duration
	Opts   Options

	knobs     cmdline.Knobs
	device    string // secure-module device path, "" if none
	heartbeat time.Duration
	// Waits for other parties, excluded from init's own time.
	deviceWait, crngWait time.Duration
	agent                *supervise.Supervisor
	agentOut             *os.File      // init's copy of the write end of the agent's output pipe
	agentDone            chan struct{} // closed when all agent output is on the console
	agentReady           chan struct{} // closed when the agent-ready line is written
	release              []func()
	afterExec            func() // runs once the workload has started
}

// Knobs are the kernel command-line settings in effect (after Run).
func (b *Boot) Knobs() cmdline.Knobs { return b.knobs }

// errSkip marks a step that did nothing, for a reason that is not a failure.
type errSkip struct{ reason string }

func (e errSkip) Error() string { return e.reason }

func skipf(format string, args ...any) error { return errSkip{fmt.Sprintf(format, args...)} }

// Ms formats a duration the way every console line does: milliseconds with
// three decimals.
func Ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 3, 64) + "ms" }

// stepResult is one step's outcome, kept until its line is written.
type stepResult struct {
	name   string
	detail string
	err    error
	d      time.Duration
}

// do runs one step and measures it.
func (b *Boot) do(name string, fn func() (string, error)) stepResult {
	t0 := time.Now()
	b.Con.Debugf("step %s begins at +%s", name, Ms(t0.Sub(b.Start)))
	detail, err := fn()
	return stepResult{name: name, detail: detail, err: err, d: time.Since(t0)}
}

// recovered is fn with a panic turned into its error: a panic escaping a
// goroutine would end PID 1.
func recovered(fn func() (string, error)) func() (string, error) {
	return func() (detail string, err error) {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("panic: %v", v)
			}
		}()
		return fn()
	}
}

// log writes a step's line, "step NAME ok|skipped|failed in DUR[: detail]",
// and returns its error (nil when skipped).
func (b *Boot) log(r stepResult) error {
	d := Ms(r.d)
	var skip errSkip
	switch {
	case errors.As(r.err, &skip):
		b.Con.Logf("step %s skipped in %s: %s", r.name, d, skip.reason)
		return nil
	case r.err != nil && r.detail != "":
		b.Con.Logf("step %s failed in %s: %s: %v", r.name, d, r.detail, r.err)
		return r.err
	case r.err != nil:
		b.Con.Logf("step %s failed in %s: %v", r.name, d, r.err)
		return r.err
	case r.detail != "":
		b.Con.Logf("step %s ok in %s: %s", r.name, d, r.detail)
	default:
		b.Con.Logf("step %s ok in %s", r.name, d)
	}
	return nil
}

// step runs fn and logs its line.
func (b *Boot) step(name string, fn func() (string, error)) error {
	return b.log(b.do(name, fn))
}

// later runs fn now and returns a function that logs its line, and returns
// its error, at that later point of the sequence: work done ahead of its
// turn keeps the console in the documented order.
func (b *Boot) later(name string, fn func() (string, error)) (logIt func() error) {
	r := b.do(name, fn)
	return func() error { return b.log(r) }
}

// lane is a goroutine running steps one after another while the sequence
// goes on; join waits for it and logs their lines in order.
type lane chan []stepResult

// goLane starts a lane; run calls step for each of its steps.
func (b *Boot) goLane(run func(step func(name string, fn func() (string, error)))) lane {
	c := make(lane, 1)
	go func() {
		var rs []stepResult
		defer func() {
			if v := recover(); v != nil {
				rs = append(rs, stepResult{name: "lane", err: fmt.Errorf("panic: %v", v)})
			}
			c <- rs
		}()
		run(func(name string, fn func() (string, error)) { rs = append(rs, b.do(name, recovered(fn))) })
	}()
	return c
}

// join waits for the lane and logs its steps; it returns their errors.
func (l lane) join(b *Boot) error {
	var errs []error
	for _, r := range <-l {
		errs = append(errs, b.log(r))
	}
	return errors.Join(errs...)
}

// async starts fn now and returns a function that waits for it and logs
// its step line (with fn's own duration) at that point of the sequence.
func (b *Boot) async(name string, fn func() (string, error)) (join func() error) {
	l := b.goLane(func(step func(string, func() (string, error))) { step(name, fn) })
	return func() error { return l.join(b) }
}

// fatal is a failure that ends the boot with a status.
type fatal struct {
	st  status.Status
	err error
}

func (f *fatal) Error() string { return f.err.Error() }

// Run performs the boot up to the workload's end and returns the status
// to report. It never panics: a panic becomes status reason "internal".
func (b *Boot) Run() (st status.Status) {
	b.Opts.defaults()
	if b.Start.IsZero() {
		b.Start = time.Now()
	}
	b.knobs = cmdline.Defaults()
	defer func() {
		if v := recover(); v != nil {
			b.Con.Errorf("panic: %v\n%s", v, debug.Stack())
			st = status.Failed(status.Internal)
		}
		b.stopAgent()
	}()
	st, err := b.run()
	if err != nil {
		var f *fatal
		if errors.As(err, &f) {
			return f.st
		}
		b.Con.Errorf("%v", err)
		return status.Failed(status.Internal)
	}
	return st
}

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
	// lo does not depend on anything else: the kernel brings it up while
	// the sequence goes on; joined before the workload.
	joinLoopback := b.async("loopback", func() (string, error) {
		r, err := b.M.Loopback()
		return r.String(), err
	})
	// 5, read ahead: the launch configuration is read now; its line is
	// written, and a bad one ends the boot, after the heartbeat.
	var m *launch.Manifest
	logConfig := b.later("config", func() (string, error) {
		var src string
		var err error
		m, src, err = launch.Load(b.M.FS())
		if err != nil {
			return "", err
		}
		return "/" + src + ", argv " + quoteList(m.Argv()), nil
	})
	module.join(b) // every step in it is optional

	// 4. Heartbeat (excluded from the ready time).
	hb := time.Now()
	err := b.step("heartbeat", func() (string, error) { return b.heartbeatStep(ctx) })
	b.heartbeat = time.Since(hb)
	if err != nil {
		return status.Status{}, &fatal{status.Failed(status.Heartbeat), err}
	}
	b.step("log-stream", func() (string, error) { return b.connectLogs(ctx) })

	// 5. Launch configuration.
	if err := logConfig(); err != nil {
		return status.Status{}, &fatal{status.Failed(status.Config), err}
	}
	agentExec := b.openAgent(m)

	// 6. Switch root and the new root's mounts.
	if err := b.step("switch-root", func() (string, error) {
		return "/" + launch.RootfsDir, mount.SwitchRoot(b.M, "/"+launch.RootfsDir)
	}); err != nil {
		return status.Status{}, &fatal{status.Failed(status.Setup), err}
	}
	if err := b.step("mounts", func() (string, error) {
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
	}); err != nil {
		return status.Status{}, &fatal{status.Failed(status.Setup), err}
	}

	hostname := b.Opts.Hostname
	if m.Hostname != "" {
		hostname = m.Hostname
	}
	nofile := b.Opts.Nofile
	if m.NofileLimit != 0 {
		nofile = m.NofileLimit
	}
	// 7. The workload, prepared first: the agent's socket group depends on
	// its user.
	var spec *workload.Spec
	if err := b.step("workload", func() (string, error) {
		var err error
		spec, err = workload.Prepare(m, b.M, hostname)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s as %d:%d in %s", spec.Path, spec.User.UID, spec.User.GID, spec.Dir), nil
	}); err != nil {
		var we *workload.Error
		if errors.As(err, &we) {
			return status.Status{}, &fatal{we.Status(), err}
		}
		return status.Status{}, &fatal{status.Failed(status.Internal), err}
	}
	// 8. The agent starts now, on a socket init has created (socket
	// activation): the workload may connect at once, so nobody waits for
	// the agent; its readiness is logged when it comes.
	b.step("agent-start", func() (string, error) {
		ready, err := b.startAgent(agentExec, spec.User.GID)
		if err != nil {
			return "", err
		}
		b.agentReady = make(chan struct{})
		go func() {
			defer close(b.agentReady)
			b.log(b.do("agent-ready", recovered(ready)))
		}()
		return fmt.Sprintf("%s listening, handed over", b.Opts.AgentSocket), nil
	})

	joinLoopback() // if the boot fails earlier, its result is not logged
	b.step("hostname", func() (string, error) { return hostname, b.M.Sethostname(hostname) })
	b.step("hosts", func() (string, error) { return b.writeHosts(hostname) })
	b.step("rlimits", func() (string, error) {
		return fmt.Sprintf("nofile %d", nofile), b.M.SetNofile(nofile)
	})

	var pid int
	var done <-chan reaper.Status
	if err := b.step("exec", func() (string, error) {
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
	}); err != nil {
		var we *workload.Error
		if !errors.As(err, &we) {
			return status.Status{}, &fatal{status.Failed(status.Internal), err}
		}
		return status.Status{}, &fatal{we.Status(), err}
	}
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

	ws := <-done
	b.Procs.ForwardTo(0)
	if b.Logs != nil && !b.Logs.Drain(b.Opts.LogDrain) {
		b.Con.Warnf("the workload's output is still open %v after it exited (a process it started holds it); not waiting for the rest", b.Opts.LogDrain)
	}
	b.Con.Logf("workload %v", ws)
	if ws.Signaled() {
		return status.Killed(int(ws.Signal())), nil
	}
	return status.Exit(ws.ExitStatus()), nil
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

// connectLogs connects the log stream when the kernel command line names
// its port; otherwise the stream is off and the workload writes to the
// console.
func (b *Boot) connectLogs(ctx context.Context) (string, error) {
	if b.Logs == nil {
		return "", skipf("no log stream in this init")
	}
	port := b.knobs.LogPort
	if port == 0 {
		b.Logs.Disable()
		return "", skipf("off (no qtenclave.log_port): the workload writes to the console")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := b.Logs.Connect(ctx, b.Dialer, b.knobs.HeartbeatCID, port); err != nil {
		return "the workload writes to the console", err
	}
	return fmt.Sprintf("%d:%d", b.knobs.HeartbeatCID, port), nil
}

// workloadOutput gives p pipes into the log stream when it is connected,
// and says where the workload's output goes.
func (b *Boot) workloadOutput(p *Proc) string {
	if b.Logs == nil || !b.Logs.Connected() {
		return "to the console"
	}
	out, err := b.Logs.Pipe(logstream.Stdout)
	if err != nil {
		b.Con.Warnf("%v: the workload writes to the console", err)
		return "to the console"
	}
	errw, err := b.Logs.Pipe(logstream.Stderr)
	if err != nil {
		out.Close()
		b.Con.Warnf("%v: the workload writes to the console", err)
		return "to the console"
	}
	p.Stdout, p.Stderr = out, errw
	return "to the log stream"
}

// closeLogs ends the log stream: everything logged so far is at the parent
// once it returns (or its bound has passed).
func (b *Boot) closeLogs() {
	if b.Logs == nil || !b.Logs.Connected() {
		if b.Logs != nil {
			b.Logs.Disable()
		}
		return
	}
	t0 := time.Now()
	if err := b.Logs.Close(b.Opts.LogClose); err != nil {
		b.Con.Logf("step log-close failed in %s: %v", Ms(time.Since(t0)), err)
		return
	}
	b.Con.Logf("step log-close ok in %s", Ms(time.Since(t0)))
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

// openAgent keeps the agent binary runnable across the switch root when it
// is wanted and present.
func (b *Boot) openAgent(m *launch.Manifest) string {
	var p string
	b.step("agent-open", func() (string, error) {
		switch {
		case m.Agent != nil && !*m.Agent:
			return "", skipf("disabled by the launch manifest")
		case !b.exists(b.Opts.AgentPath):
			return "", skipf("no %s in the bootstrap ramdisk", b.Opts.AgentPath)
		case b.device == "":
			return "", skipf("no secure-module device")
		}
		execPath, release, err := b.M.OpenExec(b.Opts.AgentPath)
		if err != nil {
			return "", err
		}
		b.release = append(b.release, release)
		p = execPath
		return b.Opts.AgentPath + " as " + execPath, nil
	})
	return p
}

// startAgent creates the agent's socket and starts the supervised agent on
// it; the returned function waits for its readiness.
func (b *Boot) startAgent(execPath string, gid uint32) (func() (string, error), error) {
	if execPath == "" {
		return nil, skipf("not started")
	}
	// Mode 0660 and the workload's group: it may connect (and extend and
	// lock PCRs 16-31, by the agent's --group policy); root may anyway.
	sock, err := b.M.ListenUnix(b.Opts.AgentSocket, 0o660, int(gid))
	if err != nil {
		return nil, err
	}
	b.release = append(b.release, func() { sock.Close() })
	out, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	b.agentOut, b.agentDone = outW, make(chan struct{})
	go func() {
		defer close(b.agentDone)
		defer out.Close()
		defer func() { recover() }() // never let logging take PID 1 down
		w := b.Con.PrefixWriter("qtsm-agent: ", logstream.Agent)
		io.Copy(w, out)
		w.Close()
	}()
	var readyR *os.File
	first := true
	start := func() (int, <-chan reaper.Status, error) {
		// Every instance gets the same socket as descriptor 3.
		argv := []string{"qtsm-agent", "--socket", b.Opts.AgentSocket, "--listen-fd", "3", "--device", b.device}
		if gid != 0 {
			argv = append(argv, "--group", strconv.FormatUint(uint64(gid), 10))
		}
		p := Proc{Path: execPath, Env: []string{"PATH=" + launch.DefaultPath}, Dir: "/", Setsid: true, Stdout: outW, Stderr: outW,
			Extra: []*os.File{sock}}
		var readyW *os.File
		if first {
			first = false
			var err error
			if readyR, readyW, err = os.Pipe(); err != nil {
				return 0, nil, err
			}
			argv = append(argv, "--ready-fd", "4")
			p.Extra = append(p.Extra, readyW)
		}
		p.Argv = argv
		pid, done, err := b.Procs.Start(p)
		if readyW != nil {
			readyW.Close()
		}
		return pid, done, err
	}
	b.agent = &supervise.Supervisor{
		Name: "qtsm-agent", Start: start, Kill: b.Procs.Kill,
		Logf: func(f string, a ...any) { b.Con.Warnf(f, a...) },
	}
	if err := b.agent.Go(); err != nil {
		b.agent = nil
		if readyR != nil {
			readyR.Close()
		}
		b.drainAgent()
		return nil, err
	}
	pid := b.agent.Pid()
	wait := func() (string, error) {
		defer readyR.Close()
		readyR.SetReadDeadline(time.Now().Add(b.Opts.AgentWait))
		line, err := bufio.NewReader(readyR).ReadString('\n')
		if line == "ready\n" {
			return fmt.Sprintf("pid %d serving %s", pid, b.Opts.AgentSocket), nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return "", fmt.Errorf("qtsm-agent not ready after %v (it stays supervised; connections wait)", b.Opts.AgentWait)
		}
		return "", fmt.Errorf("qtsm-agent exited before it was ready (it stays supervised; connections wait)")
	}
	return wait, nil
}

func (b *Boot) stopAgent() {
	if b.agent == nil {
		return
	}
	a := b.agent
	b.agent = nil
	t0 := time.Now()
	a.Stop(b.Opts.AgentStop)
	if b.agentReady != nil {
		// Its line is written by now: a stopped agent closed the pipe.
		<-b.agentReady
	}
	b.drainAgent()
	b.Con.Logf("step agent-stop ok in %s", Ms(time.Since(t0)))
	for _, r := range b.release {
		r()
	}
	b.release = nil
}

// drainAgent closes init's end of the agent's output pipe and waits, briefly,
// until everything the agent wrote is on the console.
func (b *Boot) drainAgent() {
	if b.agentOut == nil {
		return
	}
	b.agentOut.Close()
	b.agentOut = nil
	select {
	case <-b.agentDone:
	case <-time.After(time.Second):
	}
}

func (b *Boot) writeHosts(hostname string) (string, error) {
	if b.exists("/etc/hosts") {
		return "", skipf("/etc/hosts exists in the image")
	}
	if err := b.M.MkdirAll("/etc", 0o755); err != nil {
		return "", err
	}
	data := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + hostname + "\n"
	if err := b.M.WriteFileExcl("/etc/hosts", []byte(data), 0o644); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", skipf("/etc/hosts exists in the image")
		}
		return "", err
	}
	return "/etc/hosts written", nil
}

// Finish reports st and reboots: sync, the console status line, the
// status to the parent when a port is configured, then reboot(RB_AUTOBOOT).
// It returns only if the reboot fails.
func (b *Boot) Finish(st status.Status) {
	defer func() {
		if v := recover(); v != nil {
			b.Con.Errorf("panic while finishing: %v", v)
			b.M.Sync()
			b.M.Reboot()
		}
	}()
	b.M.Sync()
	b.Con.Line(st.Line())
	b.closeLogs()
	if port := b.knobs.StatusPort; port != 0 && b.Dialer != nil {
		t0 := time.Now()
		err := report.Report(context.Background(), b.Dialer, b.knobs.HeartbeatCID, port, st, b.Opts.ReportWait)
		if err != nil {
			b.Con.Logf("step report failed in %s: %v", Ms(time.Since(t0)), err)
		} else {
			b.Con.Logf("step report ok in %s: %d:%d %q", Ms(time.Since(t0)), b.knobs.HeartbeatCID, port, strings.TrimSpace(st.Wire()))
		}
	}
	b.Con.Logf("rebooting (RB_AUTOBOOT)")
	b.M.Sync()
	if err := b.M.Reboot(); err != nil {
		b.Con.Errorf("reboot: %v", err)
	}
}
