// Package emulator plays the parent instance of an enclave booted locally
// under QEMU's nitro-enclave machine: it serves the vhost-user-vsock socket
// QEMU connects to, answers the heartbeat on CID 3 port 9000 (read 0xB7,
// write 0xB7), receives the workload's exit status on port 9001 (one line,
// `EXIT <code>\n` or `SIGNAL <n>\n`, see proto/status; closing the
// connection after it is the acknowledgement init waits for), reads the
// enclave's log stream on port 9002 (proto/logstream; closing after its
// end is again the acknowledgement) and forwards host sockets to enclave
// ports.
package emulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/qtenclave/enclave/parent/proxy"
	"github.com/qtenclave/enclave/parent/vhostuser"
	"github.com/qtenclave/enclave/parent/vsockdev"
	"github.com/qtenclave/enclave/proto/logstream"
	"github.com/qtenclave/enclave/proto/status"
	"github.com/qtenclave/enclave/proto/vsockports"
)

// Defaults.
const (
	DefaultGuestCID      = 4
	DefaultHeartbeatPort = vsockports.Heartbeat
	DefaultStatusPort    = vsockports.Status
	DefaultLogPort       = vsockports.Log
	DefaultControlPort   = vsockports.Control
	HeartbeatByte        = vsockports.HeartbeatByte
)

// Config configures a Parent.
type Config struct {
	GuestCID      uint32 // default 4
	HeartbeatPort uint32 // default 9000
	StatusPort    uint32 // default 9001
	// LogPort is where the log stream is read (0: not read). OnLog gets
	// each record, in order, before the stream's end is acknowledged.
	LogPort     uint32
	OnLog       func(logstream.Record)
	NoHeartbeat bool // do not listen on the heartbeat port
	NoStatus    bool // do not listen on the status port
	// IOTimeout bounds one heartbeat or status exchange (default 10 s).
	IOTimeout time.Duration
	Logf      func(format string, args ...any)
}

// Parent is the emulated parent instance.
type Parent struct {
	cfg     Config
	Device  *vsockdev.Device
	Backend *vhostuser.Backend

	heartbeat     chan struct{}
	heartbeatOnce sync.Once
	heartbeatAt   time.Time // set before heartbeat is closed
	status        chan status.Status
	statusOnce    sync.Once
	listeners     []*vsockdev.Listener
	wg            sync.WaitGroup
}

// New starts the vsock services.
func New(cfg Config) (*Parent, error) {
	if cfg.GuestCID == 0 {
		cfg.GuestCID = DefaultGuestCID
	}
	if cfg.HeartbeatPort == 0 {
		cfg.HeartbeatPort = DefaultHeartbeatPort
	}
	if cfg.StatusPort == 0 {
		cfg.StatusPort = DefaultStatusPort
	}
	if cfg.IOTimeout <= 0 {
		cfg.IOTimeout = 10 * time.Second
	}
	dev, err := vsockdev.New(vsockdev.Config{GuestCID: cfg.GuestCID, Logf: cfg.Logf})
	if err != nil {
		return nil, err
	}
	p := &Parent{
		cfg:       cfg,
		Device:    dev,
		Backend:   &vhostuser.Backend{Device: dev, Logf: cfg.Logf},
		heartbeat: make(chan struct{}),
		status:    make(chan status.Status, 1),
	}
	if !cfg.NoHeartbeat {
		l, err := dev.Listen(cfg.HeartbeatPort)
		if err != nil {
			dev.Close()
			return nil, fmt.Errorf("heartbeat: %w", err)
		}
		p.serve(l, p.answerHeartbeat, true)
	}
	if !cfg.NoStatus {
		l, err := dev.Listen(cfg.StatusPort)
		if err != nil {
			dev.Close()
			return nil, fmt.Errorf("status: %w", err)
		}
		p.serve(l, p.readStatus, true)
	}
	if cfg.LogPort != 0 {
		l, err := dev.Listen(cfg.LogPort)
		if err != nil {
			dev.Close()
			return nil, fmt.Errorf("log stream: %w", err)
		}
		p.serve(l, p.readLogs, false)
	}
	return p, nil
}

func (p *Parent) logf(format string, args ...any) {
	if p.cfg.Logf != nil {
		p.cfg.Logf(format, args...)
	}
}

// serve handles each connection on l; bounded ones get IOTimeout.
func (p *Parent) serve(l *vsockdev.Listener, handle func(net.Conn), bounded bool) {
	p.listeners = append(p.listeners, l)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer c.Close()
				if bounded {
					c.SetDeadline(time.Now().Add(p.cfg.IOTimeout))
				}
				handle(c)
			}()
		}
	}()
}

// ServeVhostUser serves QEMU on l until ctx ends (see vhostuser.Backend).
func (p *Parent) ServeVhostUser(ctx context.Context, l *net.UnixListener) error {
	return p.Backend.Serve(ctx, l)
}

// Heartbeat is closed once the enclave's first heartbeat was answered.
func (p *Parent) Heartbeat() <-chan struct{} { return p.heartbeat }

// HeartbeatTime is when the first heartbeat was answered (zero before).
func (p *Parent) HeartbeatTime() time.Time {
	select {
	case <-p.heartbeat:
		return p.heartbeatAt
	default:
		return time.Time{}
	}
}

// Status delivers the first exit status the enclave reports.
func (p *Parent) Status() <-chan status.Status { return p.status }

func (p *Parent) answerHeartbeat(c net.Conn) {
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		p.logf("heartbeat from %v: %v", c.RemoteAddr(), err)
		return
	}
	if b[0] != HeartbeatByte {
		p.logf("heartbeat from %v: byte %#x, want %#x", c.RemoteAddr(), b[0], HeartbeatByte)
		return
	}
	if _, err := c.Write([]byte{HeartbeatByte}); err != nil {
		p.logf("heartbeat to %v: %v", c.RemoteAddr(), err)
		return
	}
	p.heartbeatOnce.Do(func() {
		p.heartbeatAt = time.Now()
		close(p.heartbeat)
	})
}

func (p *Parent) readStatus(c net.Conn) {
	s, err := status.ReadWire(c)
	if err != nil {
		p.logf("exit status from %v: %v", c.RemoteAddr(), err)
		return
	}
	delivered := false
	p.statusOnce.Do(func() {
		p.status <- s
		delivered = true
	})
	if !delivered {
		p.logf("exit status from %v: %q after the first one, ignored", c.RemoteAddr(), s.Wire())
	}
}

// readLogs reads one log stream to its end; the caller's close is the
// acknowledgement.
func (p *Parent) readLogs(c net.Conn) {
	r := logstream.NewReader(c)
	for {
		rec, err := r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				p.logf("log stream from %v: %v", c.RemoteAddr(), err)
			}
			return
		}
		if p.cfg.OnLog != nil {
			p.cfg.OnLog(rec)
		}
	}
}

// Forward accepts host connections on l and connects each to guestPort in
// the enclave, until ctx ends or l fails. It closes l.
func (p *Parent) Forward(ctx context.Context, l net.Listener, guestPort uint32) error {
	in := &proxy.Ingress{
		Dial:        func(ctx context.Context) (net.Conn, error) { return p.Device.Dial(ctx, guestPort) },
		DialTimeout: p.cfg.IOTimeout,
		Logf: func(format string, args ...any) {
			p.logf("forward to enclave port %d: "+format, append([]any{guestPort}, args...)...)
		},
	}
	if err := in.Serve(ctx, l); err != nil {
		return fmt.Errorf("forward to enclave port %d: %w", guestPort, err)
	}
	return nil
}

// Close stops the services and resets all connections.
func (p *Parent) Close() error {
	for _, l := range p.listeners {
		l.Close()
	}
	err := p.Device.Close()
	p.wg.Wait()
	return err
}
