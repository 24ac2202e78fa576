// Command qtsm-agent owns the enclave's secure-module device (/dev/nsm or
// /dev/qtsm) and serves it to local applications as an HTTP/1.1 JSON API on
// a Unix socket (see agent/API.md). init starts it after the switch into the
// application root; it can also be run by hand, or against the software
// simulator (--sim) for development.
//
//	qtsm-agent [--socket /run/qtsm.sock] [--mode 0660] [--group NAME|GID]
//	           [--device auto|/dev/nsm|/dev/qtsm|PATH] [--sim[=nitro|qingtian]]
//	           [--timeout 30s] [--max-queue 1024] [--ready-fd N] [--listen-fd N]
//	           [--egress-fd N --egress-allow RULE.. --egress-deny RULE.. [--egress-port 9004]
//	            [--egress-forward FD=NAME:PORT]..] [--publish PORT]..
//
// With --egress-fd it is also the enclave's egress companion: it serves the
// workload's HTTP proxy (package agent/egress) on the TCP listener it
// inherits as that descriptor (init creates it on 127.0.0.1 before the
// workload starts), allowing what the rules allow (proto/egress; they are
// the launch manifest's), through tunnels to the parent's vsock port
// --egress-port.
//
// With --listen-fd (socket activation, how init starts it) the agent serves
// the listening socket it inherits as that descriptor: whoever started it
// created the socket at --socket, with its mode and group, and keeps it, so
// connections made before the agent is ready, or while it restarts, wait
// in the socket's backlog instead of being refused. --mode does not apply
// then, and the socket is not removed when the agent stops.
//
// When it accepts connections it prints one line,
// "qtsm-agent: listening on SOCKET (device DEVICE)", and, with --ready-fd,
// writes "ready\n" to that descriptor and closes it. SIGTERM or SIGINT
// stops it gracefully: no new connections, in-flight requests finish, the
// socket is removed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/qtenclave/enclave/agent"
	"github.com/qtenclave/enclave/agent/api"
	agentegress "github.com/qtenclave/enclave/agent/egress"
	"github.com/qtenclave/enclave/agent/ingress"
	"github.com/qtenclave/enclave/internal/splice"
	"github.com/qtenclave/enclave/proto/egress"
	"github.com/qtenclave/enclave/proto/vsockports"
	"github.com/qtenclave/enclave/qtsm"
)

func main() { os.Exit(serve()) }

// serve runs the agent until SIGTERM or SIGINT; its deferred calls run
// before main exits.
func serve() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return run(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// simFlag is --sim or --sim=VENDOR.
type simFlag struct {
	on     bool
	vendor qtsm.Vendor
}

func (s *simFlag) IsBoolFlag() bool { return true }
func (s *simFlag) String() string {
	if s == nil || !s.on {
		return ""
	}
	return s.vendor.String()
}
func (s *simFlag) Set(v string) error {
	switch strings.ToLower(v) {
	case "false":
		s.on = false
		return nil
	case "true", "":
		s.on, s.vendor = true, qtsm.VendorNitro
		return nil
	}
	vendor, err := qtsm.ParseVendor(v)
	if err != nil || vendor == qtsm.VendorUnknown {
		return fmt.Errorf("want nitro or qingtian, got %q", v)
	}
	s.on, s.vendor = true, vendor
	return nil
}

// config is the parsed command line.
type config struct {
	socket     string
	mode       os.FileMode
	group      int // -1: none
	device     string
	deviceWait time.Duration
	sim        simFlag
	timeout    time.Duration
	maxQueue   int
	readyFD    int
	listenFD   int
	egressFD   int
	egressPort uint
	egress     *egress.Policy
	forwards   []forwardFlag
	publish    []uint32
	drain      time.Duration
	// egressParent is where tunnels go: "" for the parent over vsock, or
	// tcp:HOST:PORT (development and benchmarks outside an enclave).
	egressParent string
}

// forwardFlag is --egress-forward FD=NAME:PORT.
type forwardFlag struct {
	fd   int
	dest egress.Destination
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{group: -1, readyFD: -1, listenFD: -1, egressFD: -1}
	var allow, deny listFlag
	fs := flag.NewFlagSet("qtsm-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.socket, "socket", api.DefaultSocket, "Unix socket to listen on")
	mode := fs.String("mode", "0660", "socket permissions (octal)")
	group := fs.String("group", "", "group (name or GID) that owns the socket and may extend and lock PCRs")
	fs.StringVar(&c.device, "device", "auto", "secure-module device: auto, /dev/nsm, /dev/qtsm or a path")
	fs.DurationVar(&c.deviceWait, "device-wait", 5*time.Second, "with --device auto, how long to wait for a device to appear")
	fs.Var(&c.sim, "sim", "serve the software simulator instead of a device (--sim or --sim=nitro|qingtian)")
	fs.DurationVar(&c.timeout, "timeout", agent.DefaultTimeout, "deadline of every request, queueing included")
	fs.IntVar(&c.maxQueue, "max-queue", agent.DefaultMaxQueue, "requests that may wait for the device before 503 Busy")
	fs.IntVar(&c.readyFD, "ready-fd", -1, `write "ready\n" to this descriptor and close it once listening`)
	fs.IntVar(&c.listenFD, "listen-fd", -1, "serve the listening Unix socket inherited as this descriptor (socket activation; --socket names it)")
	fs.IntVar(&c.egressFD, "egress-fd", -1, "serve the egress HTTP proxy on the TCP listener inherited as this descriptor")
	fs.Var(&allow, "egress-allow", "egress `RULE` the proxy allows (repeatable)")
	fs.Var(&deny, "egress-deny", "egress `RULE` the proxy denies (repeatable)")
	fs.UintVar(&c.egressPort, "egress-port", vsockports.Egress, "the parent's vsock port for egress tunnels")
	fs.StringVar(&c.egressParent, "egress-parent", "", "open egress tunnels to `tcp:HOST:PORT` instead of the parent's vsock port (development and benchmarks outside an enclave)")
	fs.Func("egress-forward", "serve a transparent forward to `FD=NAME:PORT` on the listener inherited as FD (repeatable)", func(v string) error {
		fd, dest, ok := strings.Cut(v, "=")
		n, err := strconv.Atoi(fd)
		if !ok || err != nil || n < 3 {
			return fmt.Errorf("want FD=NAME:PORT with FD above 2, got %q", v)
		}
		d, err := egress.ParseDestination(dest)
		if err != nil {
			return err
		}
		c.forwards = append(c.forwards, forwardFlag{n, d})
		return nil
	})
	fs.DurationVar(&c.drain, "drain", 3*time.Second, "on stopping, how long open egress and ingress streams may take to finish")
	fs.Func("publish", "listen on vsock `PORT` and join each connection to the workload's 127.0.0.1:PORT (repeatable)", func(v string) error {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("want a TCP port, got %q", v)
		}
		c.publish = append(c.publish, uint32(n))
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.egressParent != "" && !strings.HasPrefix(c.egressParent, "tcp:") {
		return nil, fmt.Errorf("--egress-parent %q: want tcp:HOST:PORT", c.egressParent)
	}
	if c.egressFD >= 0 {
		if c.egressFD < 3 {
			return nil, fmt.Errorf("--egress-fd %d: want a descriptor above 2", c.egressFD)
		}
		p, err := egress.Parse(allow, deny)
		if err != nil {
			return nil, err
		}
		c.egress = p
	} else if len(allow)+len(deny)+len(c.forwards) > 0 {
		return nil, errors.New("--egress-allow, --egress-deny and --egress-forward go with --egress-fd")
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	m, err := strconv.ParseUint(*mode, 8, 32)
	if err != nil || m > 0o777 {
		return nil, fmt.Errorf("--mode %q: want octal permissions like 0660", *mode)
	}
	c.mode = os.FileMode(m)
	if *group != "" {
		gid, err := lookupGroup(*group)
		if err != nil {
			return nil, fmt.Errorf("--group: %w", err)
		}
		c.group = gid
	}
	if c.timeout <= 0 {
		return nil, errors.New("--timeout must be positive")
	}
	if c.maxQueue < 1 {
		return nil, errors.New("--max-queue must be at least 1")
	}
	if c.listenFD >= 0 && c.listenFD < 3 {
		return nil, fmt.Errorf("--listen-fd %d: want a descriptor above 2", c.listenFD)
	}
	if c.sim.on && c.device != "auto" {
		return nil, errors.New("--sim and --device are exclusive")
	}
	return c, nil
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// lookupGroup resolves a group name or numeric GID.
func lookupGroup(s string) (int, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return int(n), nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("group %s has GID %q", s, g.Gid)
	}
	return n, nil
}

// openDevice opens the simulator or the configured device.
func openDevice(ctx context.Context, c *config) (qtsm.Transport, string, qtsm.Vendor, error) {
	if c.sim.on {
		t, err := openSim(c.sim.vendor)
		if err != nil {
			return nil, "", 0, err
		}
		return t, "simulator (" + c.sim.vendor.String() + ")", c.sim.vendor, nil
	}
	d, spec, err := agent.OpenDevice(ctx, c.device, c.deviceWait)
	if err != nil {
		return nil, "", 0, err
	}
	return d, spec.Path, spec.Vendor, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	logger := log.New(stderr, "qtsm-agent: ", 0)
	c, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		logger.Print(err)
		return 2
	}
	t, device, vendor, err := openDevice(ctx, c)
	if err != nil {
		logger.Print(err)
		if c.listenFD >= 0 {
			// Connections waiting on the inherited socket get an error
			// now rather than a wait for an agent that cannot start.
			if l, err := agent.ListenInherited(c.listenFD, c.socket); err == nil {
				if n := agent.RejectPending(l); n > 0 {
					logger.Printf("closed %d waiting connection(s)", n)
				}
				l.Close()
			}
		}
		return 1
	}
	// The egress proxy's listener, taken now: KMS requests the agent
	// serves go out through it.
	var egressL net.Listener
	if c.egressFD >= 0 {
		if egressL, err = net.FileListener(os.NewFile(uintptr(c.egressFD), "egress")); err != nil {
			logger.Printf("egress: listener on descriptor %d: %v", c.egressFD, err)
		}
	}
	cfg := agent.Config{
		Module:   qtsm.NewSession(t),
		Device:   device,
		Vendor:   vendor,
		Timeout:  c.timeout,
		MaxQueue: c.maxQueue,
		Logf:     logger.Printf,
	}
	if c.group >= 0 {
		cfg.Policy.Groups = []uint32{uint32(c.group)}
	}
	if egressL != nil {
		cfg.KMSProxy = &url.URL{Scheme: "http", Host: egressL.Addr().String()}
	}
	srv := agent.New(cfg)
	l, err := listen(c)
	if err != nil {
		logger.Print(err)
		srv.Shutdown(context.Background())
		return 1
	}
	served := make(chan error, 1)
	go func(served chan<- error) { served <- srv.Serve(l) }(served)
	logger.Printf("listening on %s (device %s)", c.socket, device)
	// The way out and the way in; at the end their listeners close and
	// the streams still open get c.drain to finish (their bytes may still
	// be on their way when the workload exits).
	var streams splice.Group
	var closers []func()
	defer func() {
		for _, f := range closers {
			f()
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.drain)
		defer cancel()
		if n := streams.Wait(ctx); n > 0 {
			logger.Printf("%d egress or ingress stream(s) still open after %v: closed", n, c.drain)
		}
	}()
	if egressL != nil {
		stopEgress, err := serveEgress(c, egressL, &streams, logger)
		if err != nil {
			logger.Print(err)
		} else {
			closers = append(closers, stopEgress)
		}
	}
	for _, port := range c.publish {
		l, err := vsock.Listen(port, nil)
		if err != nil {
			logger.Printf("ingress: vsock port %d: %v", port, err)
			continue
		}
		closers = append(closers, func() { l.Close() })
		p := &ingress.Publisher{Port: int(port), Logf: logger.Printf, Conns: &streams}
		go p.Serve(l)
		logger.Printf("ingress: vsock port %d to 127.0.0.1:%d", port, port)
	}
	if c.readyFD >= 0 {
		if err := agent.SignalReady(c.readyFD); err != nil {
			logger.Print(err)
		}
	}

	code := 0
	select {
	case <-ctx.Done():
		logger.Printf("stopping: finishing in-flight requests")
		served = stopServer(logger, c, srv, served, &code)
	case err := <-served:
		logger.Printf("serve: %v", err)
		code = 1
		stopServer(logger, c, srv, nil, &code)
	}
	if served != nil {
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Printf("serve: %v", err)
		}
	}
	l.Close()
	if code == 0 {
		logger.Printf("stopped")
	}
	return code
}

// serveEgress serves the workload's egress proxy on the inherited listener.
func serveEgress(c *config, l net.Listener, streams *splice.Group, logger *log.Logger) (stop func(), err error) {
	open := agentegress.VsockOpen(vsockports.ParentCID, uint32(c.egressPort))
	parent := fmt.Sprintf("%d:%d", vsockports.ParentCID, c.egressPort)
	if addr, ok := strings.CutPrefix(c.egressParent, "tcp:"); ok {
		open = func(ctx context.Context) (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, "tcp", addr) }
		parent = c.egressParent
	}
	px := &agentegress.Proxy{Policy: c.egress, Open: open, Logf: logger.Printf, Conns: streams}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := px.Serve(l); err != nil {
			logger.Printf("egress: %v", err)
		}
	}()
	var fls []net.Listener
	for _, fw := range c.forwards {
		fl, err := net.FileListener(os.NewFile(uintptr(fw.fd), "forward"))
		if err != nil {
			logger.Printf("egress: forward to %s: listener on descriptor %d: %v", fw.dest, fw.fd, err)
			continue
		}
		fls = append(fls, fl)
		f := &agentegress.Forward{Dest: fw.dest, Policy: c.egress, Open: open, Logf: logger.Printf, Conns: streams}
		go f.Serve(fl)
		logger.Printf("egress: forward %s to %s", fl.Addr(), fw.dest)
	}
	logger.Printf("egress proxy on %s (%d allow, %d deny rules, tunnels to %s)", l.Addr(), len(c.egress.Allow), len(c.egress.Deny), parent)
	return func() {
		for _, fl := range fls {
			fl.Close()
		}
		l.Close()
		<-done
	}, nil
}

// listen creates the socket, or takes the inherited one.
func listen(c *config) (net.Listener, error) {
	if c.listenFD < 0 {
		return agent.Listen(c.socket, c.mode, c.group)
	}
	return agent.ListenInherited(c.listenFD, c.socket)
}

// stopServer removes the socket path unless it was inherited (so nobody
// connects to a closing agent), then shuts the server down; it returns
// served for the caller to drain.
func stopServer(logger *log.Logger, c *config, srv *agent.Server, served chan error, code *int) chan error {
	if c.listenFD < 0 {
		os.Remove(c.socket)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout+5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Printf("shutdown: %v", err)
		*code = 1
	}
	return served
}
