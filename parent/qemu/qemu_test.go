//go:build linux

package qemu

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/qtenclave/enclave/image/eif"
	"github.com/qtenclave/enclave/parent/vhostuser"
	"github.com/qtenclave/enclave/parent/vhostuser/vhostusertest"
	"github.com/qtenclave/enclave/parent/vsockdev"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("QTENCLAVE_FAKE_QEMU"); mode != "" {
		os.Exit(fakeQEMU(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func TestParseForward(t *testing.T) {
	tests := []struct {
		in      string
		want    Forward
		wantErr bool
	}{
		{"8080:80", Forward{"tcp", "127.0.0.1:8080", 80}, false},
		{"0.0.0.0:8443:443", Forward{"tcp", "0.0.0.0:8443", 443}, false},
		{"[::1]:9:10", Forward{"tcp", "[::1]:9", 10}, false},
		{"/run/app.sock:5000", Forward{"unix", "/run/app.sock", 5000}, false},
		{"unix:rel.sock:5000", Forward{"unix", "rel.sock", 5000}, false},
		{"8080", Forward{}, true},
		{"8080:", Forward{}, true},
		{":80", Forward{}, true},
		{"8080:x", Forward{}, true},
		{"8080:99999999999", Forward{}, true},
		{"host:80", Forward{}, true},
	}
	for _, tt := range tests {
		got, err := ParseForward(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseForward(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestQEMUArgs(t *testing.T) {
	o := &Options{EIF: "/x/app.eif", ModuleID: "i-1-enc2", ParentRole: "arn:aws:iam::1:role/a,b", ParentID: "i-0abc", DebugConsole: true, Append: "foo=1", LogPort: 9002}
	got := Args(o, "/tmp/q/vsock.sock", 2, 1024, 2096014, []string{"/usr/share/seabios"})
	want := []string{
		"-M", "nitro-enclave,vsock=c0,id=i-1-enc2,parent-role=arn:aws:iam::1:role/a,,b,parent-id=i-0abc",
		"-chardev", "socket,id=c0,path=/tmp/q/vsock.sock",
		"-kernel", "/x/app.eif",
		"-accel", "tcg", "-nographic", "-nic", "none", "-no-reboot",
		"-smp", "2", "-m", "1024",
		"-L", "/usr/share/seabios",
		"-append", "reboot=t panic=-1 tsc=reliable tsc_early_khz=2096014 qtenclave.log_port=9002 qtenclave.debug=1 foo=1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("qemuArgs =\n%q\nwant\n%q", got, want)
	}
}

func TestQEMUArgsIcount(t *testing.T) {
	o := &Options{EIF: "app.eif", Icount: "0"}
	if err := o.Check(); err != nil {
		t.Fatalf("Check(--icount 0): %v", err)
	}
	if got := GuestTSCkHz(o); got != 1000000 {
		t.Errorf("GuestTSCkHz(--icount 0) = %d, want 1000000 (1 GHz: the TSC counts virtual ns)", got)
	}
	got := strings.Join(Args(o, "/s", 2, 1024, GuestTSCkHz(o), nil), " ")
	for _, want := range []string{" -icount shift=0,sleep=on ", " tsc_early_khz=1000000"} {
		if !strings.Contains(got, want) {
			t.Errorf("Args(--icount 0) = %q, want it to contain %q", got, want)
		}
	}
}

func TestHostTSC(t *testing.T) {
	for in, want := range map[string]int{
		"processor\t: 0\ncpu MHz\t\t: 2096.014\n": 2096014,
		"cpu MHz : 3000\n":                        3000000,
		"processor : 0\n":                         0,
		"cpu MHz : fast\n":                        0,
	} {
		if got := HostTSCkHz(strings.NewReader(in)); got != want {
			t.Errorf("HostTSCkHz(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestFindQEMU(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("QTENCLAVE_CACHE", cache)
	t.Setenv("QTENCLAVE_QEMU", "")
	t.Setenv("PATH", t.TempDir())
	if _, err := Find(""); err == nil {
		t.Fatal("findQEMU with nothing installed = nil error")
	}
	mk := func(dir string, age time.Duration) string {
		p := filepath.Join(cache, "qemu", dir, "bin", "qemu-system-x86_64")
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755)
		ts := time.Now().Add(-age)
		os.Chtimes(p, ts, ts)
		return p
	}
	mk("old", time.Hour)
	newer := mk("new", time.Minute)
	mk("newest.build.123", 0) // unfinished build
	if got, _ := Find(""); got != newer {
		t.Errorf("findQEMU from cache = %q, want %q", got, newer)
	}
	t.Setenv("QTENCLAVE_QEMU", "/env/qemu")
	if got, _ := Find(""); got != "/env/qemu" {
		t.Errorf("findQEMU with $QTENCLAVE_QEMU = %q", got)
	}
	if got, _ := Find("/flag/qemu"); got != "/flag/qemu" {
		t.Errorf("Find(--qemu) = %q", got)
	}
}

// writeEIF builds an EIF from a kernel and one ramdisk.
func writeEIF(t testing.TB, path string, kernel, ramdisk []byte, cmdline string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := eif.NewWriter(f, eif.Options{})
	steps := []func() error{
		func() error { return w.WriteKernel(bytes.NewReader(kernel)) },
		func() error { return w.WriteCmdline(cmdline) },
		func() error {
			return w.WriteMetadata(&eif.Metadata{ImageName: "test", ImageVersion: "0", BuildMetadata: eif.BuildMetadata{BuildTime: "2000-01-01T00:00:00Z", BuildTool: "qtenclave-test"}})
		},
		func() error { return w.WriteRamdisk(bytes.NewReader(ramdisk)) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			w.Close()
			t.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// fakeRun runs Run with this test binary standing in for QEMU.
func fakeRun(t *testing.T, mode string, opts ...func(*Options)) (int, string) {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "app.eif")
	writeEIF(t, img, []byte("not a kernel"), []byte("not a cpio"), "console=ttyS0")
	t.Setenv("QTENCLAVE_FAKE_QEMU", mode)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	o := &Options{EIF: img, QEMU: exe, Timeout: 120 * time.Second}
	for _, f := range opts {
		f(o)
	}
	code, err := Run(o, nil, &stdout, &stderr)
	if err != nil {
		fmt.Fprintf(&stderr, "Run: %v\n", err)
	}
	return code, stdout.String() + stderr.String()
}

func TestRunWithFakeQEMU(t *testing.T) {
	tests := []struct {
		mode string
		opt  func(*Options)
		want int
	}{
		{"status:0", nil, 0},
		{"status:42", nil, 42},
		{"signal:15", nil, 143},
		{"exit", nil, ExitNoStatus},
		{"fail", nil, ExitNoStatus},
		{"hang", func(o *Options) { o.Timeout = time.Second }, ExitTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			var opts []func(*Options)
			if tt.opt != nil {
				opts = append(opts, tt.opt)
			}
			code, out := fakeRun(t, tt.mode, opts...)
			if code != tt.want {
				t.Fatalf("Run (fake QEMU %s) = %d, want %d; output:\n%s", tt.mode, code, tt.want, out)
			}
			if strings.HasPrefix(tt.mode, "status") && !strings.Contains(out, "heartbeat after") {
				t.Errorf("output lacks the heartbeat time:\n%s", out)
			}
		})
	}
}

func TestRunForwardWithFakeQEMU(t *testing.T) {
	fw := filepath.Join(t.TempDir(), "fw.sock")
	got := make(chan string, 1)
	go func() {
		for i := 0; i < 500; i++ {
			c, err := net.Dial("unix", fw)
			if err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write([]byte("hi"))
			b := make([]byte, 16)
			n, _ := c.Read(b)
			got <- string(b[:n])
			return
		}
		got <- "never connected"
	}()
	code, out := fakeRun(t, "forward", func(o *Options) { o.Forwards = []Forward{{Network: "unix", Addr: fw, Port: 8000}} })
	if code != 0 {
		t.Fatalf("Run with a forward = %d; output:\n%s", code, out)
	}
	if g := <-got; g != "ho" {
		t.Fatalf("host client got %q through the forward, want ho", g)
	}
}

// fakeQEMU plays QEMU plus a guest whose init does the heartbeat and
// reports a status, speaking vhost-user and virtio-vsock for real.
func fakeQEMU(mode string, args []string) int {
	var sock string
	for i, a := range args {
		if a == "-chardev" && i+1 < len(args) {
			for _, kv := range strings.Split(args[i+1], ",") {
				if p, ok := strings.CutPrefix(kv, "path="); ok {
					sock = p
				}
			}
		}
	}
	fmt.Println("fake QEMU:", strings.Join(args, " "))
	switch mode {
	case "fail":
		fmt.Fprintln(os.Stderr, "qemu-system-x86_64: -M nitro-enclave: unsupported machine")
		return 1
	case "exit":
		return 0
	}
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake QEMU: Failed to connect:", err)
		return 1
	}
	g, err := newFakeGuest(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake QEMU:", err)
		return 1
	}
	if mode == "hang" {
		time.Sleep(time.Hour)
	}
	if err := g.exchange(1024, 9000, []byte{0xB7}, 1); err != nil {
		fmt.Fprintln(os.Stderr, "fake QEMU: heartbeat:", err)
		return 1
	}
	if mode == "forward" {
		// A host client connects to the forwarded port: serve one request
		// on enclave port 8000 ("hi" -> "ho"), then report status 0.
		if err := g.serveOnce(8000); err != nil {
			fmt.Fprintln(os.Stderr, "fake QEMU: forward:", err)
			return 1
		}
		mode = "status:0"
	}
	kind, n, _ := strings.Cut(mode, ":")
	msg := "EXIT " + n + "\n"
	if kind == "signal" {
		msg = "SIGNAL " + n + "\n"
	}
	if err := g.exchange(1025, 9001, []byte(msg), 0); err != nil {
		fmt.Fprintln(os.Stderr, "fake QEMU: status:", err)
		return 1
	}
	return 0
}

type fakeGuest struct {
	fe      *vhostusertest.FrontEnd
	rx, tx  *vhostusertest.Queue
	cid     uint64
	pending [][]byte
}

func newFakeGuest(c *net.UnixConn) (*fakeGuest, error) {
	fe, err := vhostusertest.New(c, 4<<20)
	if err != nil {
		return nil, err
	}
	cfg, err := fe.Call(vhostusertest.GetConfig, 0, append(make([]byte, 4), 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
	if err != nil || len(cfg) != 20 {
		return nil, fmt.Errorf("GET_CONFIG: %x %v", cfg, err)
	}
	_, qs, err := fe.Setup(2, 64, vhostuser.FeatureVersion1)
	if err != nil {
		return nil, err
	}
	g := &fakeGuest{fe: fe, rx: qs[0], tx: qs[1], cid: uint64(cfg[12]) | uint64(cfg[13])<<8}
	for i := 0; i < 16; i++ {
		g.rx.Driver.Add(nil, []int{vsockdev.HeaderSize + 4096})
	}
	return g, g.rx.KickNow()
}

func (g *fakeGuest) send(sport, dport uint32, op uint16, flags uint32, payload []byte) error {
	h := vsockdev.Header{SrcCID: g.cid, DstCID: 3, SrcPort: sport, DstPort: dport, Type: vsockdev.TypeStream, Op: op, Flags: flags, Len: uint32(len(payload)), BufAlloc: 65536}
	hb := make([]byte, vsockdev.HeaderSize)
	h.Marshal(hb)
	g.tx.Driver.TakeUsed()
	if _, ok := g.tx.Driver.Add([][]byte{hb, payload}, nil); !ok {
		return fmt.Errorf("tx ring full")
	}
	return g.tx.KickNow()
}

// recv returns the next packet for guest port gport; packets for other
// ports stay queued for later calls.
func (g *fakeGuest) recv(gport uint32, op uint16) (vsockdev.Header, []byte, error) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, b := range g.pending {
			h, err := vsockdev.ParseHeader(b)
			if err != nil {
				return h, nil, err
			}
			if h.DstPort != gport {
				continue
			}
			g.pending = append(g.pending[:i:i], g.pending[i+1:]...)
			if h.Op != op {
				return h, nil, fmt.Errorf("got %v, want op %d", h, op)
			}
			return h, b[vsockdev.HeaderSize:], nil
		}
		used := g.rx.Driver.TakeUsed()
		if len(used) == 0 {
			g.rx.WaitCall(20 * time.Millisecond)
			continue
		}
		for range used {
			g.rx.Driver.Add(nil, []int{vsockdev.HeaderSize + 4096})
		}
		g.rx.KickNow()
		for _, u := range used {
			g.pending = append(g.pending, append([]byte(nil), u.Written...))
		}
	}
	return vsockdev.Header{}, nil, fmt.Errorf("timeout waiting for op %d on port %d", op, gport)
}

// exchange connects to the parent's port, writes msg, reads answer bytes,
// then closes.
func (g *fakeGuest) exchange(sport, dport uint32, msg []byte, answer int) error {
	if err := g.send(sport, dport, vsockdev.OpRequest, 0, nil); err != nil {
		return err
	}
	if _, _, err := g.recv(sport, vsockdev.OpResponse); err != nil {
		return err
	}
	if err := g.send(sport, dport, vsockdev.OpRW, 0, msg); err != nil {
		return err
	}
	if answer > 0 {
		_, p, err := g.recv(sport, vsockdev.OpRW)
		if err != nil {
			return err
		}
		if len(p) != answer || p[0] != 0xB7 {
			return fmt.Errorf("answer %x", p)
		}
	}
	return g.send(sport, dport, vsockdev.OpShutdown, 3, nil)
}

// serveOnce accepts one parent connection to port, answers "hi" with "ho".
func (g *fakeGuest) serveOnce(port uint32) error {
	h, _, err := g.recv(port, vsockdev.OpRequest)
	if err != nil {
		return err
	}
	reply := func(op uint16, flags uint32, p []byte) error {
		hd := vsockdev.Header{SrcCID: g.cid, DstCID: 3, SrcPort: port, DstPort: h.SrcPort, Type: vsockdev.TypeStream, Op: op, Flags: flags, Len: uint32(len(p)), BufAlloc: 65536}
		hb := make([]byte, vsockdev.HeaderSize)
		hd.Marshal(hb)
		g.tx.Driver.TakeUsed()
		g.tx.Driver.Add([][]byte{hb, p}, nil)
		return g.tx.KickNow()
	}
	if err := reply(vsockdev.OpResponse, 0, nil); err != nil {
		return err
	}
	_, p, err := g.recv(port, vsockdev.OpRW)
	if err != nil {
		return err
	}
	if string(p) != "hi" {
		return fmt.Errorf("forwarded %q, want hi", p)
	}
	if err := reply(vsockdev.OpRW, 0, []byte("ho")); err != nil {
		return err
	}
	return reply(vsockdev.OpShutdown, 3, nil)
}
