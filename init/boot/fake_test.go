package boot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qtenclave/enclave/init/netlo"
	"github.com/qtenclave/enclave/init/reaper"
	"github.com/qtenclave/enclave/init/vsock"
	"github.com/qtenclave/enclave/internal/unixsock"
	"github.com/qtenclave/enclave/proto/logstream"
	"golang.org/x/sys/unix"
)

// events is the shared, ordered log of everything the fakes saw.
type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(format string, args ...any) {
	e.mu.Lock()
	e.log = append(e.log, fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

func (e *events) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.log...)
}

// index returns the position of the first event with prefix p, or -1.
func (e *events) index(p string) int {
	for i, s := range e.all() {
		if strings.HasPrefix(s, p) {
			return i
		}
	}
	return -1
}

// fakeMachine runs file operations for real below a host directory that
// stands for the current root, and records everything privileged.
type fakeMachine struct {
	ev       *events
	root     string // host path of the current root
	cwd      string // host path
	fail     map[string]error
	panicOn  string
	modDev   string // device LoadModule makes appear ("" = none)
	ready    bool   // CRNG ready
	added    int
	loopback netlo.Result
}

func (m *fakeMachine) host(name string) string {
	if filepath.IsAbs(name) {
		return filepath.Join(m.root, name)
	}
	return filepath.Join(m.cwd, name)
}

func (m *fakeMachine) op(key string) error {
	m.ev.add("%s", key)
	if m.panicOn != "" && strings.HasPrefix(key, m.panicOn) {
		panic("fake machine: " + key)
	}
	for k, err := range m.fail {
		if strings.HasPrefix(key, k) {
			return err
		}
	}
	return nil
}

func (m *fakeMachine) Mount(source, target, fstype string, flags uintptr, data string) error {
	return m.op(fmt.Sprintf("mount %s %s %s %#x %s", source, target, fstype, flags, data))
}
func (m *fakeMachine) Unmount(target string, flags int) error { return m.op("umount " + target) }
func (m *fakeMachine) MkdirAll(p string, perm fs.FileMode) error {
	if err := m.op("mkdir " + p); err != nil {
		return err
	}
	return os.MkdirAll(m.host(p), perm)
}
func (m *fakeMachine) Symlink(o, n string) error { return m.op("symlink " + n) }
func (m *fakeMachine) Chdir(d string) error {
	if err := m.op("chdir " + d); err != nil {
		return err
	}
	h := m.host(d)
	if st, err := os.Stat(h); err != nil || !st.IsDir() {
		return syscall.ENOENT
	}
	m.cwd = h
	return nil
}
func (m *fakeMachine) Chroot(d string) error {
	if err := m.op("chroot " + d); err != nil {
		return err
	}
	m.root = m.host(d)
	return nil
}
func (m *fakeMachine) LoadModule(path string, flags int) error {
	if err := m.op(fmt.Sprintf("load %s %d", path, flags)); err != nil {
		return err
	}
	if m.modDev != "" {
		os.MkdirAll(filepath.Dir(m.host(m.modDev)), 0o755)
		return os.WriteFile(m.host(m.modDev), nil, 0o666)
	}
	return nil
}
func (m *fakeMachine) AddEntropy(data []byte, bits int) error {
	if err := m.op(fmt.Sprintf("entropy %d %d", len(data), bits)); err != nil {
		return err
	}
	m.added += len(data)
	if bits >= 256 {
		m.ready = true
	}
	return nil
}
func (m *fakeMachine) Ready() (bool, error) { return m.ready, nil }
func (m *fakeMachine) WaitReady(ctx context.Context) error {
	m.ev.add("crng wait")
	<-ctx.Done()
	return ctx.Err()
}
func (m *fakeMachine) ReadFile(name string) ([]byte, error)  { return os.ReadFile(m.host(name)) }
func (m *fakeMachine) Stat(name string) (fs.FileInfo, error) { return os.Stat(m.host(name)) }
func (m *fakeMachine) WriteFileExcl(name string, data []byte, perm fs.FileMode) error {
	if err := m.op("write " + name); err != nil {
		return err
	}
	f, err := os.OpenFile(m.host(name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	f.Write(data)
	return f.Close()
}
func (m *fakeMachine) FS() fs.FS { return os.DirFS(m.root) }
func (m *fakeMachine) OpenExec(name string) (string, func(), error) {
	if err := m.op("openexec " + name); err != nil {
		return "", nil, err
	}
	return "/proc/self/fd/100", func() { m.ev.add("release %s", name) }, nil
}
func (m *fakeMachine) ReopenConsole() error          { return m.op("console") }
func (m *fakeMachine) Sethostname(name string) error { return m.op("hostname " + name) }
func (m *fakeMachine) SetNofile(n uint64) error      { return m.op(fmt.Sprintf("nofile %d", n)) }
func (m *fakeMachine) Loopback() (netlo.Result, error) {
	return m.loopback, m.op("loopback")
}
func (m *fakeMachine) ListenUnix(path string, mode fs.FileMode, gid int) (*os.File, error) {
	if err := m.op(fmt.Sprintf("listen %s %#o %d", path, mode, gid)); err != nil {
		return nil, err
	}
	return unixsock.Listen(m.host(path), mode, -1)
}
func (m *fakeMachine) AppendFile(name string, data []byte) error {
	if err := m.op("append " + name); err != nil {
		return err
	}
	f, err := os.OpenFile(m.host(name), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	f.Write(data)
	return f.Close()
}
func (m *fakeMachine) ListenTCP4(addr [4]byte, port int) (*os.File, error) {
	if err := m.op(fmt.Sprintf("listen-tcp %d.%d.%d.%d:%d", addr[0], addr[1], addr[2], addr[3], port)); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0") // any port: tests run side by side
	if err != nil {
		return nil, err
	}
	defer l.Close()
	return l.(*net.TCPListener).File()
}
func (m *fakeMachine) Sync()         { m.op("sync") }
func (m *fakeMachine) Reboot() error { return m.op("reboot") }

// fakeProcs starts pretend processes. The agent ("/proc/self/fd/100")
// reports ready, prints a line and runs until SIGTERM; the workload does
// what workload says.
type fakeProcs struct {
	ev       *events
	mu       sync.Mutex
	next     int
	started  map[int]Proc
	kills    map[int]chan syscall.Signal
	workload func(p Proc, kill <-chan syscall.Signal) syscall.WaitStatus
	agent    func(p Proc, kill <-chan syscall.Signal) syscall.WaitStatus
	startErr map[string]error
	forward  []int
}

func newProcs(ev *events) *fakeProcs {
	return &fakeProcs{ev: ev, next: 41, started: map[int]Proc{}, kills: map[int]chan syscall.Signal{}}
}

func exitCode(n int) syscall.WaitStatus { return syscall.WaitStatus(n << 8) }

func agentObedient(p Proc, kill <-chan syscall.Signal) syscall.WaitStatus {
	fmt.Fprintf(p.Stdout, "qtsm-agent: listening on /run/qtsm.sock (device /dev/nsm)\n")
	if len(p.Extra) > 1 {
		p.Extra[1].Write([]byte("ready\n"))
	}
	for s := range kill {
		if s == syscall.SIGTERM || s == syscall.SIGKILL {
			return syscall.WaitStatus(s)
		}
	}
	return 0
}

func (f *fakeProcs) Start(p Proc) (int, <-chan reaper.Status, error) {
	f.ev.add("start %s", p.Path)
	if err := f.startErr[p.Path]; err != nil {
		return 0, nil, err
	}
	f.mu.Lock()
	f.next++
	pid := f.next
	f.started[pid] = p
	kill := make(chan syscall.Signal, 4)
	f.kills[pid] = kill
	f.mu.Unlock()
	behave := f.workload
	if strings.HasPrefix(p.Path, "/proc/self/fd/") {
		behave = f.agent
		if behave == nil {
			behave = agentObedient
		}
	}
	// The child gets its own copies of the descriptors, as after a fork.
	dup := func(fl *os.File) *os.File {
		if fl == nil {
			return nil
		}
		fd, _ := unix.Dup(int(fl.Fd()))
		return os.NewFile(uintptr(fd), fl.Name())
	}
	cp := p
	cp.Stdout, cp.Stderr, cp.Extra = dup(p.Stdout), dup(p.Stderr), nil
	for _, e := range p.Extra {
		cp.Extra = append(cp.Extra, dup(e))
	}
	done := make(chan reaper.Status, 1)
	go func() {
		ws := behave(cp, kill)
		for _, f := range []*os.File{cp.Stdout, cp.Stderr} {
			if f != nil {
				f.Close()
			}
		}
		for _, e := range cp.Extra {
			e.Close()
		}
		f.ev.add("exit %d %#x", pid, uint32(ws))
		done <- reaper.Status{Pid: pid, WaitStatus: ws}
	}()
	return pid, done, nil
}

func (f *fakeProcs) Kill(pid int, sig syscall.Signal) error {
	f.ev.add("kill %d %d", pid, int(sig))
	if pid < 0 { // a process group: its leader stands for it
		pid = -pid
	}
	f.mu.Lock()
	c := f.kills[pid]
	f.mu.Unlock()
	if c == nil {
		return syscall.ESRCH
	}
	select {
	case c <- sig:
	default:
	}
	return nil
}

func (f *fakeProcs) ForwardTo(pid int) {
	f.mu.Lock()
	f.forward = append(f.forward, pid)
	f.mu.Unlock()
	f.ev.add("forward %d", pid)
}

// byPath returns the started process with path p.
func (f *fakeProcs) byPath(p string) (Proc, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, pr := range f.started {
		if pr.Path == p {
			return pr, true
		}
	}
	return Proc{}, false
}

// fakeParent answers the heartbeat on port 9000, reads the log stream on
// port 9002 (proto/logstream's reader) and records status lines on port
// 9001, over net.Pipe.
type fakeParent struct {
	ev      *events
	refuse  bool
	refused map[uint32]bool // ports that refuse connections
	mu      sync.Mutex
	reports []string
	records []string // "source|text" ("source+|text" for a piece), or "error|..."
	wg      sync.WaitGroup
}

func (p *fakeParent) Dial(ctx context.Context, cid, port uint32) (vsock.Conn, error) {
	p.ev.add("dial %d:%d", cid, port)
	if p.refuse || p.refused[port] {
		return nil, syscall.ECONNRESET
	}
	a, b := net.Pipe()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer b.Close()
		switch port {
		case 9000:
			var x [1]byte
			if _, err := io.ReadFull(b, x[:]); err == nil {
				b.Write(x[:])
			}
		case 9002:
			r := logstream.NewReader(b)
			for {
				rec, err := r.Next()
				if err != nil {
					if !errors.Is(err, io.EOF) {
						p.addRecord("error|" + err.Error())
					}
					return
				}
				mark := ""
				if rec.More {
					mark = "+"
				}
				p.addRecord(rec.Source.String() + mark + "|" + string(rec.Text))
			}
		default:
			line, _ := bufio.NewReader(b).ReadString('\n')
			p.mu.Lock()
			p.reports = append(p.reports, line)
			p.mu.Unlock()
		}
	}()
	return a, nil
}

func (p *fakeParent) addRecord(s string) {
	p.mu.Lock()
	p.records = append(p.records, s)
	p.mu.Unlock()
}

// logged is what the parent read from the log stream.
func (p *fakeParent) logged() []string {
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.records...)
}

func (p *fakeParent) got() []string {
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.reports...)
}

// syncBuffer is a console sink safe for the agent's output goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fakeListener hands out the connections a test makes with connect.
type fakeListener struct {
	conns  chan vsock.Conn
	closed chan struct{}
	once   sync.Once
}

func newFakeListener() *fakeListener {
	return &fakeListener{conns: make(chan vsock.Conn), closed: make(chan struct{})}
}

func (l *fakeListener) Accept() (vsock.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *fakeListener) Close() error { l.once.Do(func() { close(l.closed) }); return nil }

// connect is the parent connecting: it sends line and returns the answer.
func (l *fakeListener) connect(t *testing.T, line string) string {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	select {
	case l.conns <- b:
	case <-time.After(5 * time.Second):
		t.Fatal("init is not accepting stop requests")
	}
	a.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(a, line); err != nil {
		t.Fatalf("send %q: %v", line, err)
	}
	ans, _ := bufio.NewReader(a).ReadString('\n')
	return ans
}
