//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/qtenclave/enclave/image"
	"github.com/qtenclave/enclave/image/eif"
	"github.com/qtenclave/enclave/internal/cliflag"
	"github.com/qtenclave/enclave/internal/interrupt"
	"github.com/qtenclave/enclave/parent/output"
	"github.com/qtenclave/enclave/parent/proxy"
	"github.com/qtenclave/enclave/parent/qemu"
	"github.com/qtenclave/enclave/proto/logstream"
	"github.com/qtenclave/enclave/proto/status"
	"github.com/qtenclave/enclave/proto/vsockports"
)

func init() {
	register("proxy", command{summary: "the parent's side of an enclave's egress and ingress on a real parent instance; `proxy vsock-proxy` is a drop-in for AWS's vsock-proxy", run: runProxy})
}

const proxyUsage = `--eif app.eif [--cid CID] [--egress-allow RULE].. [--egress-host NAME=IP].. [--publish HOSTPORT:ENCLAVEPORT].. [--status=false]
       qtenclave proxy vsock-proxy [-4|-6] [-w N] [--config FILE] LOCALPORT HOST PORT

On a Nitro or Qingtian parent instance, over AF_VSOCK:

  - serves the enclave's egress tunnels (vsock port 9004): each destination
    must be allowed by the image's policy (read from app.eif, the one the
    enclave runs, measured in its PCR2) and by the operator's allowlist
    (--egress-allow; default: exactly the image's policy); names are
    resolved here;
  - serves --publish: each connection to the host's HOSTPORT is joined to
    the enclave's vsock ENCLAVEPORT (qtenclave build --publish), with --cid;
  - receives the enclave's exit status (vsock port 9001, what init reports
    when the workload ends), prints it and exits with it (--status=false:
    leave that port to another program);
  - prints the enclave's log stream (vsock port 9002: the workload's stdout
    and stderr as "stdout: ..." and "stderr: ..." lines, and init's and the
    agent's), when the image's kernel command line asks init for it
    (qtenclave build --append qtenclave.log_port=9002; --logs=false: not read).

"qtenclave proxy vsock-proxy" behaves as AWS's vsock-proxy: it listens on
vsock LOCALPORT and forwards each connection, raw, to HOST:PORT, which the
allowlist file (--config, its YAML format, default
/etc/nitro_enclaves/vsock-proxy.yaml) must allow; HOST is resolved again for
every connection.`

// listenVsock is the AF_VSOCK listener: a thin adapter, swapped in tests
// (this machine's own vsock device is not for tests).
var listenVsock = func(port uint32) (net.Listener, error) { return vsock.Listen(port, nil) }

// dialVsock dials the enclave; swapped in tests likewise.
var dialVsock = func(ctx context.Context, cid, port uint32) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() { c, err := vsock.Dial(cid, port, nil); ch <- result{c, err} }()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func runProxy(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "vsock-proxy" {
		return runVsockProxy(args[1:], stderr)
	}
	flags := newFlags("proxy", proxyUsage, stderr)
	eifPath := flags.String("eif", "", "the enclave's image `FILE` (its egress policy)")
	cid := flags.Uint("cid", 0, "the enclave's `CID`, for --publish")
	egressPort := flags.Uint("egress-port", vsockports.Egress, "the vsock port of egress tunnels")
	wantStatus := flags.Bool("status", true, "receive the enclave's exit status on vsock port 9001 and exit with it")
	wantLogs := flags.Bool("logs", true, "print the enclave's log stream from vsock port 9002")
	var allow cliflag.List
	flags.Var(&allow, "egress-allow", "the operator's egress allowlist: `RULE` (repeatable; default: the image's policy)")
	hosts := map[string][]netip.Addr{}
	flags.Func("egress-host", "resolve `NAME=IP` without DNS (repeatable)", func(s string) error { return qemu.ParseHost(s, hosts) })
	var publish []qemu.Forward
	flags.Func("publish", "`HOSTPORT:ENCLAVEPORT`: join connections to the host's port to the enclave's vsock port (repeatable)", func(s string) error {
		f, err := qemu.ParseForward(s)
		if err == nil {
			publish = append(publish, f)
		}
		return err
	})
	pos, err := cliflag.Parse(flags, args)
	if err != nil {
		return usageExit(err)
	}
	switch {
	case len(pos) != 0:
		fmt.Fprintf(stderr, "qtenclave proxy: unexpected argument %q\n", pos[0])
		return exitUsage
	case *eifPath == "" && len(publish) == 0:
		fmt.Fprintln(stderr, "qtenclave proxy: --eif (egress) or --publish (ingress) is needed")
		return exitUsage
	case len(publish) > 0 && (*cid < 4 || *cid > 0xfffffffe):
		fmt.Fprintln(stderr, "qtenclave proxy: --publish needs --cid, the enclave's CID (4..4294967294)")
		return exitUsage
	case *egressPort == 0 || *egressPort > 0xffffffff:
		fmt.Fprintln(stderr, "qtenclave proxy: --egress-port out of range")
		return exitUsage
	}
	logger := log.New(stderr, "qtenclave proxy: ", 0)
	ctx, stop := interrupt.Context(context.Background())
	defer stop()
	var t *proxy.Tunnels
	if *eifPath != "" {
		if t, err = imageTunnels(*eifPath, allow, hosts); err != nil {
			logger.Print(err)
			return exitFailed
		}
		if t == nil {
			logger.Printf("%s opens no egress (qtenclave build --egress-allow): no tunnels served", *eifPath)
		}
	}
	errs := make(chan error, 1+len(publish))
	exited := make(chan status.Status, 1)
	if *wantStatus {
		l, err := listenVsock(vsockports.Status)
		if err != nil {
			logger.Printf("exit status: vsock port %d: %v", vsockports.Status, err)
			return exitFailed
		}
		context.AfterFunc(ctx, func() { l.Close() })
		go receiveStatus(l, exited, logger)
	}
	if t != nil {
		t.Logf = logger.Printf
		l, err := listenVsock(uint32(*egressPort))
		if err != nil {
			logger.Printf("egress: vsock port %d: %v", *egressPort, err)
			return exitFailed
		}
		context.AfterFunc(ctx, func() { l.Close() })
		go func() { errs <- t.Serve(l) }()
		logger.Printf("egress tunnels on vsock port %d", *egressPort)
	}
	if *wantLogs {
		l, err := listenVsock(vsockports.Log)
		if err != nil {
			logger.Printf("log stream: vsock port %d: %v", vsockports.Log, err)
			return exitFailed
		}
		context.AfterFunc(ctx, func() { l.Close() })
		out := output.New(stdout, true)
		defer out.Flush()
		go printLogs(l, out, logger)
	}
	for _, p := range publish {
		l, err := net.Listen(p.Network, p.Addr)
		if err != nil {
			logger.Printf("publish %s: %v", p.Addr, err)
			return exitFailed
		}
		port := p.Port
		in := &proxy.Ingress{Dial: func(ctx context.Context) (net.Conn, error) { return dialVsock(ctx, uint32(*cid), port) }, Logf: logger.Printf}
		go func() { errs <- in.Serve(ctx, l) }()
		logger.Printf("publish %s to enclave %d port %d", l.Addr(), *cid, port)
	}
	select {
	case <-ctx.Done():
		return exitOK
	case st := <-exited:
		logger.Printf("enclave exited: %s", st.Line())
		return st.Code
	case err := <-errs:
		if err != nil {
			logger.Print(err)
			return exitFailed
		}
		return exitOK
	}
}

// receiveStatus takes the first well-formed exit status from l; closing
// the connection after it is the acknowledgement init waits for.
func receiveStatus(l net.Listener, out chan<- status.Status, logger *log.Logger) {
	defer l.Close()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		st, err := status.ReadWire(c)
		c.Close()
		if err != nil {
			logger.Printf("exit status from %v: %v", c.RemoteAddr(), err)
			continue
		}
		out <- st
		return
	}
}

// printLogs prints each log stream l accepts, record by record, each line
// whole; the close after a stream's end is the acknowledgement init waits
// for.
func printLogs(l net.Listener, out *output.Printer, logger *log.Logger) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		r := logstream.NewReader(c)
		for {
			rec, err := r.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					logger.Printf("log stream from %v: %v", c.RemoteAddr(), err)
				}
				break
			}
			out.Record(rec)
		}
		out.Flush()
		c.Close()
	}
}

// imageTunnels reads the image's egress policy.
func imageTunnels(path string, allow []string, hosts map[string][]netip.Addr) (*proxy.Tunnels, error) {
	f, err := eif.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := image.LaunchManifest(f)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return proxy.ForImage(m, allow, hosts)
}

const vsockProxyUsage = `[-4|-6] [-w N] [--config FILE] LOCALPORT HOST PORT`

func runVsockProxy(args []string, stderr io.Writer) int {
	flags := newFlags("proxy vsock-proxy", vsockProxyUsage, stderr)
	v4 := flags.Bool("ipv4", false, "use IPv4 addresses only")
	flags.BoolVar(v4, "4", false, "same as --ipv4")
	v6 := flags.Bool("ipv6", false, "use IPv6 addresses only")
	flags.BoolVar(v6, "6", false, "same as --ipv6")
	workers := flags.Int("num_workers", 4, "connections served at once")
	flags.IntVar(workers, "w", 4, "same as --num_workers")
	config := flags.String("config", "/etc/nitro_enclaves/vsock-proxy.yaml", "the allowlist `FILE` (vsock-proxy's YAML)")
	pos, err := cliflag.Parse(flags, args)
	if err != nil {
		return usageExit(err)
	}
	if len(pos) != 3 {
		fmt.Fprintln(stderr, "qtenclave proxy vsock-proxy: want LOCALPORT HOST PORT")
		return exitUsage
	}
	local, err1 := strconv.ParseUint(pos[0], 10, 32)
	port, err2 := strconv.ParseUint(pos[2], 10, 16)
	switch {
	case err1 != nil || local == 0:
		fmt.Fprintf(stderr, "qtenclave proxy vsock-proxy: local port %q is not valid\n", pos[0])
		return exitUsage
	case err2 != nil || port == 0:
		fmt.Fprintf(stderr, "qtenclave proxy vsock-proxy: remote port %q is not valid\n", pos[2])
		return exitUsage
	case *v4 && *v6:
		fmt.Fprintln(stderr, "qtenclave proxy vsock-proxy: -4 and -6 exclude each other")
		return exitUsage
	case *workers < 1:
		fmt.Fprintln(stderr, "qtenclave proxy vsock-proxy: -w must be at least 1")
		return exitUsage
	}
	fam := proxy.AnyFamily
	if *v4 {
		fam = proxy.IPv4Only
	} else if *v6 {
		fam = proxy.IPv6Only
	}
	logger := log.New(stderr, "qtenclave proxy vsock-proxy: ", 0)
	ctx, stop := interrupt.Context(context.Background())
	defer stop()
	f, err := vsockProxy(ctx, *config, pos[1], int(port), fam, *workers)
	if err != nil {
		logger.Print(err)
		return exitFailed
	}
	f.Logf = logger.Printf
	l, err := listenVsock(uint32(local))
	if err != nil {
		logger.Printf("vsock port %d: %v", local, err)
		return exitFailed
	}
	context.AfterFunc(ctx, func() { l.Close() })
	logger.Printf("forwarding vsock port %d to %s:%d", local, pos[1], port)
	if err := f.Serve(l); err != nil {
		logger.Print(err)
		return exitFailed
	}
	return exitOK
}

// vsockProxy checks HOST:PORT against the allowlist file, as vsock-proxy
// does before it listens, and returns the forwarder.
func vsockProxy(ctx context.Context, config, host string, port int, fam proxy.Family, workers int) (*proxy.Fixed, error) {
	b, err := os.ReadFile(config)
	if err != nil {
		return nil, err
	}
	a, err := proxy.ParseAllowlist(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", config, err)
	}
	if ok, why := a.Allows(ctx, nil, host, port, fam); !ok {
		return nil, fmt.Errorf("%s:%d is not allowed by %s: %s", host, port, config, why)
	}
	return &proxy.Fixed{Host: host, Port: port, Family: fam, Workers: workers}, nil
}
