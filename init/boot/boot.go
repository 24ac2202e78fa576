// Package boot is the enclave's PID 1 sequence. Main wires it to the real
// system; Boot.Run and Boot.Finish take every dependency through small
// interfaces (Machine, Procs, vsock.Dialer, a secure-module opener) so the
// whole sequence is unit-tested with fakes, and run for real as PID 1 in a
// PID+mount+network namespace.
//
// The console lines it writes are documented in package init (init/doc.go).
package boot

import (
	"errors"
	"io/fs"
	"os"
	"runtime/debug"
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
	"github.com/qtenclave/enclave/init/supervise"
	"github.com/qtenclave/enclave/init/vsock"
	"github.com/qtenclave/enclave/proto/launch"
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
	// ListenTCP4 creates a listening TCP socket on addr:port (a loopback
	// address).
	ListenTCP4(addr [4]byte, port int) (*os.File, error)
	// AppendFile appends data to the existing file name.
	AppendFile(name string, data []byte) error
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
	AgentStop   time.Duration // SIGTERM-to-SIGKILL delay when stopping it (default 5s: its egress and ingress streams get 3s to finish)
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
	DefaultAgentStop  = 5 * time.Second
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
	// Listen listens on a vsock port (the parent's stop requests); nil:
	// none.
	Listen func(port uint32) (vsock.Listener, error)
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
	agentOut             *os.File       // init's copy of the write end of the agent's output pipe
	agentDone            chan struct{}  // closed when all agent output is on the console
	agentReady           chan struct{}  // closed when the agent-ready line is written
	egress               *launch.Egress // the way out, when the manifest opens one
	egressFile           *os.File       // its proxy's listener, handed to the agent
	forwardFiles         []*os.File     // the forwards' listeners, in the manifest's order
	publish              []uint16       // ports the agent publishes to the parent
	release              []func()
	afterExec            func() // runs once the workload has started
	stopper              *stopper
}

// Knobs are the kernel command-line settings in effect (after Run).
func (b *Boot) Knobs() cmdline.Knobs { return b.knobs }

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
