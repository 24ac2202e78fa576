//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/qtenclave/enclave/internal/cliflag"
	"github.com/qtenclave/enclave/parent/emulator"
	"github.com/qtenclave/enclave/parent/qemu"
)

func init() {
	register("run", command{summary: "boot an EIF locally under QEMU's nitro-enclave machine", run: runEnclave})
}

const runUsage = `usage: qtenclave run APP.eif [flags]

Boots APP.eif under QEMU's nitro-enclave machine (TCG, no KVM needed) with
this process as the parent instance: a vhost-user-vsock back-end that answers
the heartbeat (CID 3 port 9000), reads the enclave's log stream (port 9002:
init's lines, the agent's, and the workload's stdout and stderr, each line
whole) and receives the workload's exit status (port 9001).

Stopping: SIGTERM or SIGINT (systemctl stop, docker stop, Ctrl-C) asks
the enclave to stop as docker stop does: init sends SIGTERM to the
workload, SIGKILL after the grace period, reports the real exit status and
powers off; qtenclave run then exits with that status. A second signal, or
an enclave that does not answer, ends QEMU at once.

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

type forwardList []qemu.Forward

func (f *forwardList) String() string { return fmt.Sprint(*f) }

func (f *forwardList) Set(s string) error {
	spec, err := qemu.ParseForward(s)
	if err != nil {
		return err
	}
	*f = append(*f, spec)
	return nil
}

// parseRunArgs parses flags given before or after the EIF path.
func parseRunArgs(args []string, stderr io.Writer) (*qemu.Options, error) {
	o := &qemu.Options{}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, runUsage)
		fs.PrintDefaults()
	}
	fs.IntVar(&o.CPUs, "cpus", 0, "vCPUs (default: the EIF's default, 2)")
	fs.IntVar(&o.MemMiB, "mem", 0, "memory in MiB (default: the EIF's default, 1024)")
	fs.UintVar(&o.CID, "cid", emulator.DefaultGuestCID, "enclave CID (4..4294967294)")
	fs.BoolVar(&o.DebugConsole, "debug-console", false, "verbose init console (adds qtenclave.debug=1 to the kernel command line)")
	fs.Var((*forwardList)(&o.Forwards), "forward", "HOSTPORT:ENCLAVEPORT: forward a host TCP port (or host:port, or a unix socket path) to an enclave vsock port; repeatable")
	fs.Var((*forwardList)(&o.Forwards), "publish", "HOSTPORT:ENCLAVEPORT: reach the workload's TCP server on ENCLAVEPORT (published by qtenclave build --publish) from the host's HOSTPORT; the same as --forward; repeatable")
	fs.StringVar(&o.QEMU, "qemu", "", "qemu-system-x86_64 to run")
	fs.DurationVar(&o.Timeout, "timeout", 120*time.Second, "kill the enclave after this long (0: never)")
	fs.StringVar(&o.ParentRole, "parent-role", "", "parent IAM role ARN / agency (measured into PCR3)")
	fs.StringVar(&o.ParentID, "parent-id", "", "parent instance ID (measured into PCR4)")
	fs.StringVar(&o.ModuleID, "module-id", "", "secure module ID the enclave sees (default i-<random>-enc<random>)")
	fs.StringVar(&o.Append, "append", "", "extra kernel command line (not measured)")
	fs.StringVar(&o.Icount, "icount", "", "run TCG with -icount shift=`N` (0..10): guest time counts instructions (2^N ns each), not host time, so timings measure the guest's work rather than the emulator's and the host's load; much slower (one vCPU runs at a time)")
	fs.StringVar(&o.Console, "console", "-", "where the serial console goes: - (stdout), a `FILE`, or none")
	fs.UintVar(&o.LogPort, "log-port", emulator.DefaultLogPort, "vsock port of the enclave's log stream (0: none; the workload then writes to the console)")
	fs.UintVar(&o.ControlPort, "control-port", emulator.DefaultControlPort, "vsock port init takes stop requests on (0: none: a signal ends QEMU at once)")
	fs.DurationVar(&o.StopTimeout, "stop-timeout", 0, "on SIGTERM or SIGINT, the grace period between the workload's SIGTERM and SIGKILL (0: the image's stop_timeout, else 10s); a second signal ends QEMU at once")
	fs.BoolVar(&o.Verbose, "v", false, "log the parent's vsock and vhost-user diagnostics to stderr")
	fs.Var((*cliflag.List)(&o.EgressAllow), "egress-allow", "the operator's egress allowlist: `RULE` (repeatable; default: exactly what the image's policy allows; both must allow)")
	fs.StringVar(&o.FakeKMS, "fake-kms", "", "serve a fake KMS on the host as the policy `FILE` says (kms/fakekms: its address, keys and their PCR conditions), for local boots")
	o.EgressHosts = map[string][]netip.Addr{}
	fs.Func("egress-host", "resolve `NAME=IP` for egress without DNS, as docker's --add-host (repeatable)", func(s string) error { return qemu.ParseHost(s, o.EgressHosts) })
	positional, err := cliflag.Parse(fs, args)
	if err != nil {
		return nil, err
	}
	if len(positional) != 1 {
		fs.Usage()
		return nil, fmt.Errorf("want exactly one EIF, got %d arguments", len(positional))
	}
	o.EIF = positional[0]
	if err := o.Check(); err != nil {
		return nil, err
	}
	return o, nil
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
	code, err := qemu.Run(o, sigc, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "qtenclave run: %v\n", err)
	}
	return code
}
