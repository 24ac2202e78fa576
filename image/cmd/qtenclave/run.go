//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/qtenclave/enclave/image/eif"
	"github.com/qtenclave/enclave/internal/cache"
	"github.com/qtenclave/enclave/internal/cliflag"
	"github.com/qtenclave/enclave/parent/emulator"
	"github.com/qtenclave/enclave/parent/output"
)

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func init() {
	register("run", command{summary: "boot an EIF locally under QEMU's nitro-enclave machine", run: runEnclave})
}

// Exit codes of `qtenclave run` besides the workload's own status.
const (
	exitNoStatus    = 123 // the enclave ended (or QEMU failed) without reporting an exit status
	exitRunTimeout  = 124 // --timeout expired first (as timeout(1))
	statusGrace     = 10 * time.Second
	qemuTermTimeout = 3 * time.Second
)

const runUsage = `usage: qtenclave run APP.eif [flags]

Boots APP.eif under QEMU's nitro-enclave machine (TCG, no KVM needed) with
this process as the parent instance: a vhost-user-vsock back-end that answers
the heartbeat (CID 3 port 9000), reads the enclave's log stream (port 9002:
init's lines, the agent's, and the workload's stdout and stderr, each line
whole) and receives the workload's exit status (port 9001).

Output: the workload's lines go to stdout as "stdout: LINE" and
"stderr: LINE". The serial console (kernel and init) goes where --console
says: stdout by default, line by line between the workload's lines; with
--console FILE or none, init's and the agent's lines are printed from the
log stream instead, so stdout holds nothing a kernel message can split.

Exit status: the workload's exit code (128+n when killed by signal n;
init's own failures are 125-127), 123 when the enclave ended without
reporting a status (QEMU failed, kernel panic, init died), 124 on --timeout,
130/143 when interrupted, 2 for usage errors.

QEMU is --qemu, else $QTENCLAVE_QEMU, else the newest
${QTENCLAVE_CACHE:-$HOME/.cache/qtenclave}/qemu/*/bin/qemu-system-x86_64
(scripts/build-qemu.sh), else qemu-system-x86_64 from PATH.

flags:
`

type forwardSpec struct {
	network, addr string
	port          uint32
}

type forwardList []forwardSpec

func (f *forwardList) String() string { return fmt.Sprint(*f) }

func (f *forwardList) Set(s string) error {
	spec, err := parseForward(s)
	if err != nil {
		return err
	}
	*f = append(*f, spec)
	return nil
}

// parseForward parses HOST:ENCLAVEPORT where HOST is a port (listen on
// 127.0.0.1), an address host:port, or a unix socket path (starting with /
// or unix:).
func parseForward(s string) (forwardSpec, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || i == len(s)-1 {
		return forwardSpec{}, fmt.Errorf("forward %q: want HOSTPORT:ENCLAVEPORT", s)
	}
	host, eport := s[:i], s[i+1:]
	p, err := strconv.ParseUint(eport, 10, 32)
	if err != nil {
		return forwardSpec{}, fmt.Errorf("forward %q: enclave port %q: %v", s, eport, err)
	}
	spec := forwardSpec{network: "tcp", port: uint32(p)}
	switch {
	case strings.HasPrefix(host, "unix:"):
		spec.network, spec.addr = "unix", strings.TrimPrefix(host, "unix:")
	case strings.HasPrefix(host, "/"):
		spec.network, spec.addr = "unix", host
	default:
		if n, err := strconv.ParseUint(host, 10, 16); err == nil {
			spec.addr = net.JoinHostPort("127.0.0.1", strconv.FormatUint(n, 10))
		} else if _, _, err := net.SplitHostPort(host); err == nil {
			spec.addr = host
		} else {
			return forwardSpec{}, fmt.Errorf("forward %q: host side %q: want a port, host:port or a unix socket path", s, host)
		}
	}
	if spec.addr == "" {
		return forwardSpec{}, fmt.Errorf("forward %q: empty host side", s)
	}
	return spec, nil
}

type runOptions struct {
	eif          string
	cpus         int
	memMiB       int
	cid          uint
	debugConsole bool
	forwards     forwardList
	qemu         string
	timeout      time.Duration
	parentRole   string
	parentID     string
	moduleID     string
	append       string
	verbose      bool
	icount       string // -icount shift, "" = off
	console      string // "-" (or "") stdout, "none", or a file
	logPort      uint   // 0 = no log stream
}

// parseRunArgs parses flags given before or after the EIF path.
func parseRunArgs(args []string, stderr io.Writer) (*runOptions, error) {
	o := &runOptions{}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, runUsage)
		fs.PrintDefaults()
	}
	fs.IntVar(&o.cpus, "cpus", 0, "vCPUs (default: the EIF's default, 2)")
	fs.IntVar(&o.memMiB, "mem", 0, "memory in MiB (default: the EIF's default, 1024)")
	fs.UintVar(&o.cid, "cid", emulator.DefaultGuestCID, "enclave CID (4..4294967294)")
	fs.BoolVar(&o.debugConsole, "debug-console", false, "verbose init console (adds qtenclave.debug=1 to the kernel command line)")
	fs.Var(&o.forwards, "forward", "HOSTPORT:ENCLAVEPORT: forward a host TCP port (or host:port, or a unix socket path) to an enclave vsock port; repeatable")
	fs.StringVar(&o.qemu, "qemu", "", "qemu-system-x86_64 to run")
	fs.DurationVar(&o.timeout, "timeout", 120*time.Second, "kill the enclave after this long (0: never)")
	fs.StringVar(&o.parentRole, "parent-role", "", "parent IAM role ARN / agency (measured into PCR3)")
	fs.StringVar(&o.parentID, "parent-id", "", "parent instance ID (measured into PCR4)")
	fs.StringVar(&o.moduleID, "module-id", "", "secure module ID the enclave sees (default i-<random>-enc<random>)")
	fs.StringVar(&o.append, "append", "", "extra kernel command line (not measured)")
	fs.StringVar(&o.icount, "icount", "", "run TCG with -icount shift=`N` (0..10): guest time counts instructions (2^N ns each), not host time, so timings measure the guest's work rather than the emulator's and the host's load; much slower (one vCPU runs at a time)")
	fs.StringVar(&o.console, "console", "-", "where the serial console goes: - (stdout), a `FILE`, or none")
	fs.UintVar(&o.logPort, "log-port", emulator.DefaultLogPort, "vsock port of the enclave's log stream (0: none; the workload then writes to the console)")
	fs.BoolVar(&o.verbose, "v", false, "log the parent's vsock and vhost-user diagnostics to stderr")
	positional, err := cliflag.Parse(fs, args)
	if err != nil {
		return nil, err
	}
	if o.icount != "" {
		if n, err := strconv.Atoi(o.icount); err != nil || n < 0 || n > 10 || strconv.Itoa(n) != o.icount {
			return nil, fmt.Errorf("--icount %q: want a shift from 0 to 10", o.icount)
		}
	}
	if len(positional) != 1 {
		fs.Usage()
		return nil, fmt.Errorf("want exactly one EIF, got %d arguments", len(positional))
	}
	o.eif = positional[0]
	if o.cid < 4 || o.cid > 0xfffffffe {
		return nil, fmt.Errorf("--cid %d: want 4..4294967294", o.cid)
	}
	if o.logPort > 0xffffffff {
		return nil, fmt.Errorf("--log-port %d: want a vsock port", o.logPort)
	}
	if o.cpus < 0 || o.memMiB < 0 || o.timeout < 0 {
		return nil, errors.New("--cpus, --mem and --timeout must not be negative")
	}
	return o, nil
}

// findQEMU resolves the QEMU binary.
func findQEMU(flagPath string) (string, error) {
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

// hostTSCkHz reads the host CPU frequency for tsc_early_khz (TSC
// calibration hangs in 10-25 % of TCG boots without it).
func hostTSCkHz(cpuinfo io.Reader) int {
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

// qemuArgs builds QEMU's command line.
func qemuArgs(o *runOptions, sock string, cpus, memMiB, tscKHz int, dataDirs []string) []string {
	machine := "nitro-enclave,vsock=c0,id=" + qemuOpt(o.moduleID)
	if o.parentRole != "" {
		machine += ",parent-role=" + qemuOpt(o.parentRole)
	}
	if o.parentID != "" {
		machine += ",parent-id=" + qemuOpt(o.parentID)
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
	if o.logPort != 0 {
		cmdline = append(cmdline, fmt.Sprintf("qtenclave.log_port=%d", o.logPort))
	}
	if o.debugConsole {
		cmdline = append(cmdline, "qtenclave.debug=1")
	}
	if o.append != "" {
		cmdline = append(cmdline, o.append)
	}
	args := []string{
		"-M", machine,
		"-chardev", "socket,id=c0,path=" + qemuOpt(sock),
		"-kernel", o.eif,
		"-accel", "tcg",
		"-nographic", "-nic", "none", "-no-reboot",
		"-smp", strconv.Itoa(cpus),
		"-m", strconv.Itoa(memMiB),
	}
	if o.icount != "" {
		// icount needs the single-threaded TCG; sleep=on lets guest time
		// run on with real time while every vCPU is idle (waits on the
		// parent stay real).
		args = append(args, "-icount", "shift="+o.icount+",sleep=on")
	}
	for _, d := range dataDirs {
		args = append(args, "-L", d)
	}
	return append(args, "-append", strings.Join(cmdline, " "))
}

// guestTSCkHz is the TSC frequency to tell the guest kernel (0: let it
// calibrate): the host's, which TCG passes through, or 1 GHz under icount,
// where the TSC counts virtual nanoseconds.
func guestTSCkHz(o *runOptions) int {
	if o.icount != "" {
		return 1000000
	}
	ci, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	defer ci.Close()
	return hostTSCkHz(ci)
}

func randomModuleID() string {
	b := make([]byte, 16)
	if f, err := os.Open("/dev/urandom"); err == nil {
		io.ReadFull(f, b)
		f.Close()
	}
	return fmt.Sprintf("i-%x-enc%x", b[:8], b[8:])
}

func runEnclave(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseRunArgs(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "qtenclave run: %v\n", err)
		return exitUsage
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigc)
	code, err := bootEnclave(o, sigc, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "qtenclave run: %v\n", err)
	}
	return code
}

// bootEnclave runs QEMU with the emulated parent and returns the exit code.
func bootEnclave(o *runOptions, sigc <-chan os.Signal, stdout, stderr io.Writer) (int, error) {
	f, err := eif.Open(o.eif)
	if err != nil {
		return exitFailed, err
	}
	hdr := f.Header
	f.Close()
	if hdr.Flags != 0 {
		return exitFailed, fmt.Errorf("%s: %v image: QEMU's nitro-enclave machine boots x86_64 images only", o.eif, hdr.Arch())
	}
	cpus, memMiB := o.cpus, o.memMiB
	if cpus == 0 {
		cpus = int(max(hdr.DefaultCPUs, 1))
	}
	if memMiB == 0 {
		memMiB = int(max(hdr.DefaultMemory>>20, 256))
	}
	if o.moduleID == "" {
		o.moduleID = randomModuleID()
	}
	qemu, err := findQEMU(o.qemu)
	if err != nil {
		return exitNoStatus, err
	}

	tmp, err := os.MkdirTemp("", "qtenclave-run-")
	if err != nil {
		return exitFailed, err
	}
	defer os.RemoveAll(tmp)
	sock := filepath.Join(tmp, "vsock.sock")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return exitFailed, fmt.Errorf("vhost-user socket: %w", err)
	}
	var logf func(string, ...any)
	if o.verbose {
		logf = func(format string, args ...any) { fmt.Fprintf(stderr, "qtenclave run: "+format+"\n", args...) }
	}
	consoleOnStdout := o.console == "" || o.console == "-"
	out := output.New(stdout, !consoleOnStdout)
	defer out.Flush()
	var console io.WriteCloser
	switch {
	case consoleOnStdout:
		console = out.Console()
	case o.console == "none":
		console = nopCloser{io.Discard}
	default:
		f, err := os.Create(o.console)
		if err != nil {
			ul.Close()
			return exitFailed, fmt.Errorf("console: %w", err)
		}
		console = f
	}
	defer console.Close()
	parent, err := emulator.New(emulator.Config{GuestCID: uint32(o.cid), Logf: logf, LogPort: uint32(o.logPort), OnLog: out.Record})
	if err != nil {
		ul.Close()
		return exitFailed, err
	}
	defer parent.Close()
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- parent.ServeVhostUser(sctx, ul) }()
	defer func() { cancel(); <-served }()
	for _, fw := range o.forwards {
		l, err := net.Listen(fw.network, fw.addr)
		if err != nil {
			return exitFailed, fmt.Errorf("forward %s %s: %w", fw.network, fw.addr, err)
		}
		go parent.Forward(sctx, l, fw.port)
	}

	tsc := guestTSCkHz(o)
	var dataDirs []string
	for _, d := range []string{"/usr/share/seabios", "/usr/share/qemu"} {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			dataDirs = append(dataDirs, d)
		}
	}
	args := qemuArgs(o, sock, cpus, memMiB, tsc, dataDirs)
	if o.verbose {
		fmt.Fprintf(stderr, "qtenclave run: %s %s\n", qemu, strings.Join(args, " "))
	}
	cmd := exec.Command(qemu, args...)
	cmd.Stdout, cmd.Stderr = console, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return exitNoStatus, fmt.Errorf("start QEMU: %w", err)
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
	if o.timeout > 0 {
		t := time.NewTimer(o.timeout)
		defer t.Stop()
		timeout = t.C
	}
	heartbeat := parent.Heartbeat()
	var booted time.Duration
	report := func(format string, args ...any) {
		out.Flush()
		msg := fmt.Sprintf(format, args...)
		if booted > 0 {
			msg += fmt.Sprintf(", heartbeat after %.2fs", booted.Seconds())
		}
		fmt.Fprintf(stderr, "qtenclave run: %s (%.2fs)\n", msg, time.Since(start).Seconds())
	}
	for {
		select {
		case <-heartbeat:
			booted = time.Since(start)
			heartbeat = nil
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
				return exitNoStatus, fmt.Errorf("QEMU: %v; the enclave reported no exit status", err)
			}
			return exitNoStatus, errors.New("the enclave stopped without reporting an exit status")
		case <-timeout:
			kill()
			return exitRunTimeout, fmt.Errorf("timed out after %v", o.timeout)
		case s := <-sigc:
			kill()
			code := 128 + int(syscall.SIGINT)
			if s == syscall.SIGTERM {
				code = 128 + int(syscall.SIGTERM)
			}
			return code, fmt.Errorf("interrupted by %v", s)
		}
	}
}
