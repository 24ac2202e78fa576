package boot

import (
	"bufio"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/qtenclave/enclave/init/vsock"
	"github.com/qtenclave/enclave/proto/control"
	"github.com/qtenclave/enclave/proto/launch"
)

// stopper serves the parent's stop requests (proto/control) while the
// workload runs: SIGTERM to the workload's process group, SIGKILL after
// the grace period.
type stopper struct {
	b     *Boot
	l     vsock.Listener
	grace time.Duration // the manifest's, or control.DefaultGrace

	mu      sync.Mutex
	pid     int  // the workload, 0 before it starts and after it ends
	ended   bool // the workload has ended
	pending bool // a stop came before the workload had started
	pgrace  time.Duration
	stopped bool
	kill    *time.Timer
	wg      sync.WaitGroup
}

// listenControl is step "control": listening for stop requests when the
// kernel command line names a port.
func (b *Boot) listenControl(m *launch.Manifest) (string, error) {
	port := b.knobs.ControlPort
	switch {
	case port == 0:
		return "", skipf("off (no qtenclave.control_port)")
	case b.Listen == nil:
		return "", skipf("no vsock listener in this init")
	}
	l, err := b.Listen(port)
	if err != nil {
		return "", err
	}
	grace := control.DefaultGrace
	if m.StopTimeout > 0 {
		grace = time.Duration(m.StopTimeout) * time.Second
	}
	s := &stopper{b: b, l: l, grace: grace}
	b.stopper = s
	s.wg.Add(1)
	go s.serve()
	return fmt.Sprintf("port %d, stop grace %v", port, grace), nil
}

func (s *stopper) serve() {
	defer s.wg.Done()
	defer func() { recover() }() // never let this take PID 1 down
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.handle(c)
	}
}

// handle answers one connection: one request line, one answer line.
func (s *stopper) handle(c vsock.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReaderSize(io.LimitReader(c, control.MaxLine), control.MaxLine).ReadString('\n')
	if err != nil {
		return
	}
	req, err := control.ParseStop(line)
	if err != nil {
		io.WriteString(c, control.Refused(err.Error()))
		return
	}
	if err := s.stop(req.Grace); err != nil {
		io.WriteString(c, control.Refused(err.Error()))
		return
	}
	io.WriteString(c, control.OK)
}

// stop sends SIGTERM to the workload's process group now and SIGKILL
// after the grace period (the request's, else the manifest's). A request
// that comes while the workload is being started is carried out as soon
// as it runs; a second request while stopping changes nothing.
func (s *stopper) stop(grace time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.ended:
		return fmt.Errorf("the workload has ended")
	case s.stopped:
		return nil
	case s.pid == 0:
		s.pending, s.pgrace = true, grace
		return nil
	}
	s.signal(grace)
	return nil
}

// signal does the stop; s.mu is held and s.pid is the workload.
func (s *stopper) signal(grace time.Duration) {
	if grace <= 0 {
		grace = s.grace
	}
	s.stopped = true
	pid := s.pid
	s.b.Con.Logf("stop requested by the parent: SIGTERM to the workload's process group %d, SIGKILL in %v", pid, grace)
	if err := s.b.Procs.Kill(-pid, syscall.SIGTERM); err != nil {
		s.b.Con.Warnf("SIGTERM to process group %d: %v", pid, err)
	}
	s.kill = time.AfterFunc(grace, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.pid == pid {
			s.b.Con.Logf("grace period of %v over: SIGKILL to the workload's process group %d", grace, pid)
			s.b.Procs.Kill(-pid, syscall.SIGKILL)
		}
	})
}

// running tells the stopper which process to stop (0: none any more).
func (s *stopper) running(pid int) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pid = pid
	switch {
	case pid == 0:
		s.ended = true
		if s.kill != nil {
			s.kill.Stop()
		}
	case s.pending:
		s.pending = false
		s.signal(s.pgrace)
	}
}

// close stops listening.
func (s *stopper) close() {
	if s == nil {
		return
	}
	s.running(0)
	s.l.Close()
	s.wg.Wait()
}
