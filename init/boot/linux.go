package boot

import (
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/qtenclave/enclave/init/console"
	"github.com/qtenclave/enclave/init/entropy"
	"github.com/qtenclave/enclave/init/kmod"
	"github.com/qtenclave/enclave/init/logs"
	"github.com/qtenclave/enclave/init/mount"
	"github.com/qtenclave/enclave/init/netlo"
	"github.com/qtenclave/enclave/init/reaper"
	"github.com/qtenclave/enclave/init/vsock"
	"github.com/qtenclave/enclave/internal/unixsock"
	"github.com/qtenclave/enclave/proto/status"
	"golang.org/x/sys/unix"
)

// Linux is the real Machine.
type Linux struct {
	mount.Sys
	entropy.Kernel
}

// LoadModule implements Machine.
func (Linux) LoadModule(path string, flags int) error { return kmod.Sys{}.LoadModule(path, flags) }

// ReadFile implements Machine.
func (Linux) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }

// Stat implements Machine.
func (Linux) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

// WriteFileExcl implements Machine.
func (Linux) WriteFileExcl(name string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(name)
		return err
	}
	return f.Close()
}

// FS implements Machine.
func (Linux) FS() fs.FS { return os.DirFS("/") }

// agentFD is the lowest descriptor number OpenExec uses: above any
// descriptor a child is given (0-2 and a few extras), so the child's
// descriptor shuffling can never overwrite it before the exec, and below
// 64, so the descriptor table is not expanded (which, in a multi-threaded
// process, waits for an RCU grace period: milliseconds under TCG).
const agentFD = 10

// OpenExec implements Machine: the file is opened close-on-exec at a high
// descriptor number and run as /proc/self/fd/N, which works for ELF
// binaries (not scripts) once /proc is mounted in the new root.
func (Linux) OpenExec(name string) (string, func(), error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("open %s: %w", name, err)
	}
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, agentFD)
	unix.Close(fd)
	if err != nil {
		return "", nil, fmt.Errorf("dup %s: %w", name, err)
	}
	return fmt.Sprintf("/proc/self/fd/%d", high), func() { unix.Close(high) }, nil
}

// ReopenConsole implements Machine.
func (Linux) ReopenConsole() error {
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/console: %w (keeping the descriptors the kernel gave)", err)
	}
	for i := 0; i < 3; i++ {
		if i == fd {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
				return err
			}
			continue
		}
		if err := unix.Dup3(fd, i, 0); err != nil {
			return fmt.Errorf("dup console to %d: %w", i, err)
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
	return nil
}

// ListenUnix implements Machine.
func (Linux) ListenUnix(path string, mode fs.FileMode, gid int) (*os.File, error) {
	return unixsock.Listen(path, mode, gid)
}

// AppendFile implements Machine.
func (Linux) AppendFile(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ListenTCP4 implements Machine with system calls: init links no network
// package.
func (Linux) ListenTCP4(addr [4]byte, port int) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: addr})
	}
	if err == nil {
		err = unix.Listen(fd, 256)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen on %d.%d.%d.%d:%d: %w", addr[0], addr[1], addr[2], addr[3], port, err)
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("tcp %d.%d.%d.%d:%d", addr[0], addr[1], addr[2], addr[3], port)), nil
}

// Sethostname implements Machine.
func (Linux) Sethostname(name string) error { return unix.Sethostname([]byte(name)) }

// SetNofile implements Machine. syscall.Setrlimit (not x/sys/unix) also
// tells the Go runtime not to restore its startup limit in children.
func (Linux) SetNofile(n uint64) error {
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
		return fmt.Errorf("setrlimit nofile %d: %w", n, err)
	}
	return nil
}

// Loopback implements Machine.
func (Linux) Loopback() (netlo.Result, error) { return netlo.Up() }

// Sync implements Machine.
func (Linux) Sync() { unix.Sync() }

// Reboot implements Machine: reboot(RB_AUTOBOOT). With QEMU's -no-reboot
// this ends the run (docs/protocol.md §4); in a PID namespace it ends the namespace.
func (Linux) Reboot() error { return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART) }

// ReaperProcs is Procs over the reaper.
type ReaperProcs struct{ R *reaper.Reaper }

// Start implements Procs.
func (p ReaperProcs) Start(pr Proc) (int, <-chan reaper.Status, error) {
	files := []uintptr{0, 1, 2}
	if pr.Stdout != nil {
		files[1] = pr.Stdout.Fd()
	}
	if pr.Stderr != nil {
		files[2] = pr.Stderr.Fd()
	}
	for _, f := range pr.Extra {
		files = append(files, f.Fd())
	}
	attr := &syscall.ProcAttr{Dir: pr.Dir, Env: pr.Env, Files: files,
		Sys: &syscall.SysProcAttr{Setsid: pr.Setsid, Credential: pr.Cred}}
	return p.R.StartProcess(pr.Path, pr.Argv, attr)
}

// Kill implements Procs.
func (p ReaperProcs) Kill(pid int, sig syscall.Signal) error { return p.R.Kill(pid, sig) }

// ForwardTo implements Procs.
func (p ReaperProcs) ForwardTo(pid int) { p.R.ForwardTo(pid) }

// LateProcs is ReaperProcs for a reaper started in the background: its
// methods wait for it. Nothing can signal init before its first child
// starts (there is no other process, and the console is not its
// controlling terminal), so the signal handlers need only be in place by
// then.
type LateProcs struct {
	c    <-chan *reaper.Reaper
	once sync.Once
	r    ReaperProcs
}

// StartReaper starts the reaper in the background.
func StartReaper(o reaper.Options) *LateProcs {
	c := make(chan *reaper.Reaper, 1)
	go func() { c <- reaper.Start(o) }()
	return &LateProcs{c: c}
}

func (p *LateProcs) procs() ReaperProcs {
	p.once.Do(func() { p.r = ReaperProcs{<-p.c} })
	return p.r
}

// Start implements Procs.
func (p *LateProcs) Start(pr Proc) (int, <-chan reaper.Status, error) { return p.procs().Start(pr) }

// Kill implements Procs.
func (p *LateProcs) Kill(pid int, sig syscall.Signal) error { return p.procs().Kill(pid, sig) }

// ForwardTo implements Procs.
func (p *LateProcs) ForwardTo(pid int) { p.procs().ForwardTo(pid) }

// OpenModule opens the secure-module device at path with init's minimal
// GetRandom client.
func OpenModule(path string) (entropy.Source, func() error, error) {
	d, err := entropy.OpenDevice(path)
	if err != nil {
		return nil, nil, err
	}
	return entropy.Client{T: d}, d.Close, nil
}

// Main is PID 1: it boots, runs the workload, reports and reboots. It never
// returns.
func Main() { MainWith(nil) }

// MainWith is Main with a hook that adjusts the Boot before it runs (the
// namespace test replaces the console and command line).
func MainWith(setup func(*Boot)) {
	start := time.Now()
	// No garbage collection during the boot: it allocates little, and a GC
	// cycle under TCG costs milliseconds. Restored once the workload runs.
	gc := debug.SetGCPercent(-1)
	con := console.New(os.Stderr)
	var b *Boot
	defer func() {
		// Last resort: whatever happened, PID 1 does not return.
		if v := recover(); v != nil {
			con.Errorf("panic: %v", v)
			con.Line(status.Failed(status.Internal).Line())
			unix.Sync()
			unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
		}
		hang(con)
	}()
	// Every console line also goes to the log stream, which keeps them
	// until it connects (after the heartbeat) or is turned off.
	stream := logs.New(os.Stderr)
	stream.Warnf = con.Warnf
	con.SetMirror(stream.Line)
	procs := StartReaper(reaper.Options{Logf: con.Debugf})
	b = &Boot{M: Linux{}, Procs: procs, Dialer: vsock.Kernel{}, Listen: vsock.Kernel{}.Listen, Con: con, Logs: stream, OpenModule: OpenModule, Start: start}
	if setup != nil {
		setup(b)
	}
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	b.Uptime = time.Duration(ts.Nano())
	b.afterExec = func() { debug.SetGCPercent(gc) }
	st := b.Run()
	b.Finish(st)
}

func hang(con *console.Console) {
	con.Errorf("reboot did not happen; halting here")
	for {
		time.Sleep(time.Hour)
	}
}
