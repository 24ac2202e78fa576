//go:build linux

package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/qtenclave/enclave/image/eif"
	"github.com/qtenclave/enclave/internal/cache"
	"github.com/qtenclave/enclave/parent/emulator"
	"github.com/qtenclave/enclave/parent/output"
	"github.com/qtenclave/enclave/proto/control"
)

// stopMargin is how long, past the grace period, a stopping enclave may
// take to report and power off before QEMU is ended.
const stopMargin = 10 * time.Second

// requestStop asks init, on the enclave's control port, to stop the
// workload (proto/control).
func requestStop(ctx context.Context, p *emulator.Parent, port uint32, grace time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := p.Device.Dial(ctx, port)
	if err != nil {
		return err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	return control.Request(c, grace)
}

// Exit codes of Run besides the workload's own status.
const (
	ExitFailed      = 1   // the boot could not be set up (bad EIF, no socket)
	ExitNoStatus    = 123 // the enclave ended (or QEMU failed) without reporting an exit status
	ExitTimeout     = 124 // Options.Timeout expired first (as timeout(1))
	statusGrace     = 10 * time.Second
	qemuTermTimeout = 3 * time.Second
)

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Forward is a host socket forwarded to an enclave vsock port.
type Forward struct {
	Network, Addr string // "tcp" or "unix", and the address to listen on
	Port          uint32 // the enclave's port
}

// ParseForward parses HOST:ENCLAVEPORT where HOST is a port (listen on
// 127.0.0.1), an address host:port, or a unix socket path (starting with /
// or unix:).
func ParseForward(s string) (Forward, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || i == len(s)-1 {
		return Forward{}, fmt.Errorf("forward %q: want HOSTPORT:ENCLAVEPORT", s)
	}
	host, eport := s[:i], s[i+1:]
	p, err := strconv.ParseUint(eport, 10, 32)
	if err != nil {
		return Forward{}, fmt.Errorf("forward %q: enclave port %q: %v", s, eport, err)
	}
	spec := Forward{Network: "tcp", Port: uint32(p)}
	switch {
	case strings.HasPrefix(host, "unix:"):
		spec.Network, spec.Addr = "unix", strings.TrimPrefix(host, "unix:")
	case strings.HasPrefix(host, "/"):
		spec.Network, spec.Addr = "unix", host
	default:
		if n, err := strconv.ParseUint(host, 10, 16); err == nil {
			spec.Addr = net.JoinHostPort("127.0.0.1", strconv.FormatUint(n, 10))
		} else if _, _, err := net.SplitHostPort(host); err == nil {
			spec.Addr = host
		} else {
			return Forward{}, fmt.Errorf("forward %q: host side %q: want a port, host:port or a unix socket path", s, host)
		}
	}
	if spec.Addr == "" {
		return Forward{}, fmt.Errorf("forward %q: empty host side", s)
	}
	return spec, nil
}

// Options describe one local boot.
type Options struct {
	EIF          string        // the image (x86_64)
	CPUs         int           // vCPUs (0: the EIF's default, at least 1)
	MemMiB       int           // memory (0: the EIF's default, at least 256)
	CID          uint          // the enclave's CID (0: emulator.DefaultGuestCID)
	DebugConsole bool          // qtenclave.debug=1 on the command line
	Forwards     []Forward     // host sockets forwarded into the enclave
	QEMU         string        // qemu-system-x86_64 ("": Find)
	Timeout      time.Duration // kill the enclave after this long (0: never)
	ParentRole   string        // measured into PCR3
	ParentID     string        // measured into PCR4
	ModuleID     string        // the secure module's ID ("": random)
	Append       string        // more kernel command line (not measured)
	Verbose      bool          // the parent's diagnostics and QEMU's command line on stderr
	Icount       string        // TCG -icount shift ("0".."10"; "": off)
	Console      string        // the serial console: "-" or "" stdout, "none", or a file
	LogPort      uint          // the log stream's port (0: none; the workload writes to the console)
	// ControlPort is the port init takes stop requests on (0: none: a
	// signal then ends QEMU at once).
	ControlPort uint
	// StopTimeout is the grace period asked for when a signal stops the
	// enclave (0: the image's stop_timeout, else control.DefaultGrace).
	StopTimeout time.Duration
	// EgressAllow is the operator's egress allowlist (proto/egress rules;
	// empty: exactly what the image's policy allows). Both must allow.
	EgressAllow []string
	// EgressHosts resolves these names for egress without DNS.
	EgressHosts map[string][]netip.Addr
	// FakeKMS is a fake KMS policy file (kms/fakekms) to serve on the
	// host for the run ("": none).
	FakeKMS string
}

// Check refuses options Run cannot honour; the messages name the
// command-line flags.
func (o *Options) Check() error {
	if o.Icount != "" {
		if n, err := strconv.Atoi(o.Icount); err != nil || n < 0 || n > 10 || strconv.Itoa(n) != o.Icount {
			return fmt.Errorf("--icount %q: want a shift from 0 to 10", o.Icount)
		}
	}
	if o.CID != 0 && (o.CID < 4 || o.CID > 0xfffffffe) {
		return fmt.Errorf("--cid %d: want 4..4294967294", o.CID)
	}
	if o.LogPort > 0xffffffff || o.ControlPort > 0xffffffff {
		return fmt.Errorf("--log-port %d, --control-port %d: want vsock ports", o.LogPort, o.ControlPort)
	}
	if o.StopTimeout < 0 {
		return errors.New("--stop-timeout must not be negative")
	}
	if o.CPUs < 0 || o.MemMiB < 0 || o.Timeout < 0 {
		return errors.New("--cpus, --mem and --timeout must not be negative")
	}
	return nil
}

// Find resolves the QEMU binary.
func Find(flagPath string) (string, error) {
	if flagPath != "" {
		return flagPath, nil
	}
	if p := os.Getenv("QTENCLAVE_QEMU"); p != "" {
		return p, nil
	}
	if p := cache.Newest("qemu", "bin/qemu-system-x86_64"); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return "", errors.New("no QEMU: pass --qemu, set QTENCLAVE_QEMU or run scripts/build-qemu.sh (QEMU >= 9.2 with libcbor for -M nitro-enclave)")
	}
	return p, nil
}

// HostTSCkHz reads the host CPU frequency for tsc_early_khz (TSC
// calibration hangs in 10-25 % of TCG boots without it).
func HostTSCkHz(cpuinfo io.Reader) int {
	sc := bufio.NewScanner(cpuinfo)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || mhz <= 0 {
			return 0
		}
		return int(mhz*1000 + 0.5)
	}
	return 0
}

// qemuOpt escapes a value inside a QEMU option list (commas double).
func qemuOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Args builds QEMU's command line.
func Args(o *Options, sock string, cpus, memMiB, tscKHz int, dataDirs []string) []string {
	machine := "nitro-enclave,vsock=c0,id=" + qemuOpt(o.ModuleID)
	if o.ParentRole != "" {
		machine += ",parent-role=" + qemuOpt(o.ParentRole)
	}
	if o.ParentID != "" {
		machine += ",parent-id=" + qemuOpt(o.ParentID)
	}
	// reboot=t: init ends with reboot(RESTART), which with -no-reboot makes
	// QEMU exit (a power-off only halts the CPU on this machine); panic=-1
	// ends a panicked boot at once; tsc=reliable keeps the TSC clocksource on
	// a loaded host (else TCG's skew makes the kernel fall back to jiffies).
	// These later values override the EIF's measured reboot=k panic=30.
	cmdline := []string{"reboot=t", "panic=-1", "tsc=reliable"}
	if tscKHz > 0 {
		cmdline = append(cmdline, fmt.Sprintf("tsc_early_khz=%d", tscKHz))
	}
	if o.LogPort != 0 {
		cmdline = append(cmdline, fmt.Sprintf("qtenclave.log_port=%d", o.LogPort))
	}
	if o.ControlPort != 0 {
		cmdline = append(cmdline, fmt.Sprintf("qtenclave.control_port=%d", o.ControlPort))
	}
	if o.DebugConsole {
		cmdline = append(cmdline, "qtenclave.debug=1")
	}
	if o.Append != "" {
		cmdline = append(cmdline, o.Append)
	}
	args := []string{
		"-M", machine,
		"-chardev", "socket,id=c0,path=" + qemuOpt(sock),
		"-kernel", o.EIF,
		"-accel", "tcg",
		"-nographic", "-nic", "none", "-no-reboot",
		"-smp", strconv.Itoa(cpus),
		"-m", strconv.Itoa(memMiB),
	}
	if o.Icount != "" {
		// icount needs the single-threaded TCG; sleep=on lets guest time
		// run on with real time while every vCPU is idle (waits on the
		// parent stay real).
		args = append(args, "-icount", "shift="+o.Icount+",sleep=on")
	}
	for _, d := range dataDirs {
		args = append(args, "-L", d)
	}
	return append(args, "-append", strings.Join(cmdline, " "))
}

// GuestTSCkHz is the TSC frequency to tell the guest kernel (0: let it
// calibrate): the host's, which TCG passes through, or 1 GHz under icount,
// where the TSC counts virtual nanoseconds.
func GuestTSCkHz(o *Options) int {
	if o.Icount != "" {
		return 1000000
	}
	ci, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	defer ci.Close()
	return HostTSCkHz(ci)
}

func randomModuleID() string {
	b := make([]byte, 16)
	if f, err := os.Open("/dev/urandom"); err == nil {
		io.ReadFull(f, b)
		f.Close()
	}
	return fmt.Sprintf("i-%x-enc%x", b[:8], b[8:])
}

// Run boots o.EIF under QEMU with an emulated parent and returns the exit
// code: the workload's status, or ExitNoStatus, ExitTimeout,
// 128+signal when sigc delivers SIGINT or SIGTERM, or ExitFailed.
func Run(o *Options, sigc <-chan os.Signal, stdout, stderr io.Writer) (int, error) {
	f, err := eif.Open(o.EIF)
	if err != nil {
		return ExitFailed, err
	}
	hdr := f.Header
	var logf func(string, ...any)
	if o.Verbose {
		logf = func(format string, args ...any) { fmt.Fprintf(stderr, "qtenclave run: "+format+"\n", args...) }
	}
	tunnels, err := egressTunnels(o, f, stderr, logf)
	f.Close()
	if err != nil {
		return ExitFailed, fmt.Errorf("%s: %w", o.EIF, err)
	}
	if hdr.Flags != 0 {
		return ExitFailed, fmt.Errorf("%s: %v image: QEMU's nitro-enclave machine boots x86_64 images only", o.EIF, hdr.Arch())
	}
	cpus, memMiB := o.CPUs, o.MemMiB
	if cpus == 0 {
		cpus = int(max(hdr.DefaultCPUs, 1))
	}
	if memMiB == 0 {
		memMiB = int(max(hdr.DefaultMemory>>20, 256))
	}
	if o.ModuleID == "" {
		o.ModuleID = randomModuleID()
	}
	if o.CID == 0 {
		o.CID = emulator.DefaultGuestCID
	}
	qemu, err := Find(o.QEMU)
	if err != nil {
		return ExitNoStatus, err
	}

	tmp, err := os.MkdirTemp("", "qtenclave-run-")
	if err != nil {
		return ExitFailed, err
	}
	defer os.RemoveAll(tmp)
	sock := filepath.Join(tmp, "vsock.sock")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return ExitFailed, fmt.Errorf("vhost-user socket: %w", err)
	}
	consoleOnStdout := o.Console == "" || o.Console == "-"
	out := output.New(stdout, !consoleOnStdout)
	defer out.Flush()
	var console io.WriteCloser
	switch {
	case consoleOnStdout:
		console = out.Console()
	case o.Console == "none":
		console = nopCloser{io.Discard}
	default:
		f, err := os.Create(o.Console)
		if err != nil {
			ul.Close()
			return ExitFailed, fmt.Errorf("console: %w", err)
		}
		console = f
	}
	defer console.Close()
	parent, err := emulator.New(emulator.Config{GuestCID: uint32(o.CID), Logf: logf, LogPort: uint32(o.LogPort), OnLog: out.Record})
	if err != nil {
		ul.Close()
		return ExitFailed, err
	}
	defer parent.Close()
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- parent.ServeVhostUser(sctx, ul) }()
	defer func() { cancel(); <-served }()
	if o.FakeKMS != "" {
		stop, err := serveFakeKMS(o.FakeKMS, stderr)
		if err != nil {
			return ExitFailed, err
		}
		defer stop()
	}
	if tunnels != nil {
		stop, err := serveEgress(parent, tunnels)
		if err != nil {
			return ExitFailed, err
		}
		defer stop()
	}
	for _, fw := range o.Forwards {
		l, err := net.Listen(fw.Network, fw.Addr)
		if err != nil {
			return ExitFailed, fmt.Errorf("forward %s %s: %w", fw.Network, fw.Addr, err)
		}
		go parent.Forward(sctx, l, fw.Port)
	}

	tsc := GuestTSCkHz(o)
	var dataDirs []string
	for _, d := range []string{"/usr/share/seabios", "/usr/share/qemu"} {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			dataDirs = append(dataDirs, d)
		}
	}
	args := Args(o, sock, cpus, memMiB, tsc, dataDirs)
	if o.Verbose {
		fmt.Fprintf(stderr, "qtenclave run: %s %s\n", qemu, strings.Join(args, " "))
	}
	cmd := exec.Command(qemu, args...)
	cmd.Stdout, cmd.Stderr = console, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return ExitNoStatus, fmt.Errorf("start QEMU: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	kill := func() error {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(qemuTermTimeout):
			cmd.Process.Kill()
			return <-exited
		}
	}
	var timeout <-chan time.Time
	if o.Timeout > 0 {
		t := time.NewTimer(o.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var stopping <-chan time.Time // set once a stop was requested
	report := func(format string, args ...any) {
		out.Flush()
		msg := fmt.Sprintf(format, args...)
		if hb := parent.HeartbeatTime(); !hb.IsZero() {
			msg += fmt.Sprintf(", heartbeat after %.2fs", hb.Sub(start).Seconds())
		}
		fmt.Fprintf(stderr, "qtenclave run: %s (%.2fs)\n", msg, time.Since(start).Seconds())
	}
	for {
		select {
		case st := <-parent.Status():
			// The enclave reported; let it power off by itself, briefly.
			select {
			case <-exited:
			case <-time.After(statusGrace):
				kill()
			}
			report("enclave exited with status %d", st.Code)
			return st.Code, nil
		case err := <-exited:
			// A status sent just before power-off may still be in flight.
			select {
			case st := <-parent.Status():
				report("enclave exited with status %d", st.Code)
				return st.Code, nil
			case <-time.After(500 * time.Millisecond):
			}
			if err != nil {
				return ExitNoStatus, fmt.Errorf("QEMU: %v; the enclave reported no exit status", err)
			}
			return ExitNoStatus, errors.New("the enclave stopped without reporting an exit status")
		case <-timeout:
			kill()
			return ExitTimeout, fmt.Errorf("timed out after %v", o.Timeout)
		case s := <-sigc:
			// The first signal asks the enclave to stop (docker stop):
			// SIGTERM to the workload, SIGKILL after the grace period,
			// its real status reported. A second signal, or an enclave
			// that does not answer, or one that takes longer than the
			// grace period and a margin, ends QEMU at once.
			if stopping == nil && o.ControlPort != 0 {
				if err := requestStop(sctx, parent, uint32(o.ControlPort), o.StopTimeout); err == nil {
					report("asked the enclave to stop (%v)", s)
					wait := o.StopTimeout
					if wait == 0 {
						wait = control.DefaultGrace
					}
					t := time.NewTimer(wait + stopMargin)
					defer t.Stop()
					stopping = t.C
					continue
				} else {
					fmt.Fprintf(stderr, "qtenclave run: stop request: %v; ending QEMU\n", err)
				}
			}
			kill()
			code := 128 + int(syscall.SIGINT)
			if s == syscall.SIGTERM {
				code = 128 + int(syscall.SIGTERM)
			}
			return code, fmt.Errorf("interrupted by %v", s)
		case <-stopping:
			kill()
			return 128 + int(syscall.SIGTERM), errors.New("the enclave did not stop within the grace period; QEMU ended")
		}
	}
}
