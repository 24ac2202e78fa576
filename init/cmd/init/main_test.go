package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qtenclave/enclave/init/boot"
	"github.com/qtenclave/enclave/init/entropy"
	"github.com/qtenclave/enclave/init/heartbeat"
	"github.com/qtenclave/enclave/init/internal/nstest"
	"github.com/qtenclave/enclave/init/report"
	"github.com/qtenclave/enclave/init/vsock"
	"github.com/qtenclave/enclave/proto/logstream"
	"github.com/qtenclave/enclave/proto/status"
	"golang.org/x/sys/unix"
)

// MaxSize is the budget for the stripped init binary.
const MaxSize = 3 << 20

// buildFlags are the Makefile's (static, reproducible: README).
var buildFlags = []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid="}

func goTool(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds init: skipped with -short")
	}
	p, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	return p
}

func build(t *testing.T, out string) {
	t.Helper()
	cmd := exec.Command(goTool(t), append(buildFlags, "-o", out, ".")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
}

// TestBinary builds init as the Makefile does, twice: it must be
// byte-for-byte reproducible, statically linked and at most MaxSize.
func TestBinary(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	build(t, a)
	build(t, b)
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	ha, hb := sha256.Sum256(da), sha256.Sum256(db)
	if ha != hb {
		t.Errorf("two builds differ: %x vs %x", ha, hb)
	}
	t.Logf("init: %d bytes, sha256 %s", len(da), hex.EncodeToString(ha[:]))
	if len(da) > MaxSize {
		t.Errorf("init is %d bytes, budget %d", len(da), MaxSize)
	}
	f, err := elf.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("init has program header %v: not statically linked", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("init needs shared libraries %q", libs)
	}
	if s := f.Section(".symtab"); s != nil {
		t.Error("init is not stripped")
	}
}

// forbidden are packages init must not link (size, attack surface, or
// because the guest never needs them).
var forbidden = []string{
	"net", "net/http", "crypto/x509", "crypto/tls", "os/user", "os/exec", "plugin", "runtime/cgo", "math/big",
	"github.com/fxamacker/cbor/v2",
	"github.com/qtenclave/enclave/qtsm",
	"github.com/qtenclave/enclave/qtsm/sim",
	"github.com/qtenclave/enclave/qtsm/attestation",
	"github.com/veraison/go-cose",
	"github.com/google/go-containerregistry/pkg/v1",
	"github.com/mdlayher/vsock",
	"github.com/u-root/u-root/pkg/mount",
}

func TestDeps(t *testing.T) {
	cmd := exec.Command(goTool(t), "list", "-deps", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := map[string]bool{}
	for _, d := range strings.Fields(string(out)) {
		deps[d] = true
	}
	if !deps["encoding/json"] {
		t.Log("note: encoding/json no longer linked")
	}
	for _, f := range forbidden {
		if deps[f] {
			t.Errorf("init links %s", f)
		}
	}
	for d := range deps {
		if strings.HasPrefix(d, "net/") || strings.HasPrefix(d, "github.com/google/") {
			t.Errorf("init links %s", d)
		}
	}
}

// TestMain makes this test binary also the helper programs the boot test
// puts into its ramdisk, chosen by argv[0]: "workload", "qtsm-agent" and
// "exit0".
func TestMain(m *testing.M) {
	switch filepath.Base(os.Args[0]) {
	case "workload":
		if len(os.Args) == 2 && os.Args[1] == "qemu" {
			os.Exit(qemuWorkload())
		}
		os.Exit(workloadMain())
	case "qtsm-agent":
		os.Exit(agentMain())
	case "exit0":
		os.Exit(0)
	}

	os.Exit(m.Run())
}

// qemuWorkload runs in the QEMU guest: it checks the device and the agent's
// socket and exits 7.
func qemuWorkload() int {
	_, err := os.Stat("/dev/nsm")
	fmt.Printf("CHECK nsm %s\n", okFail(err))
	if _, err = os.Stat("/run/qtsm.sock"); err == nil {
		fmt.Println("CHECK agent-socket ok")
	} else {
		fmt.Println("CHECK agent-socket absent")
	}
	fmt.Printf("CHECK vsock-loopback %s\n", vsockLoopback())
	return 7
}

// vsockLoopback runs the heartbeat and the status report through init's
// real AF_VSOCK dialer against a parent on the local CID (vsock loopback).
func vsockLoopback() string {
	lfd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "absent: " + err.Error()
	}
	defer unix.Close(lfd)
	if err := unix.Bind(lfd, &unix.SockaddrVM{CID: vsock.CIDLocal, Port: 9000}); err != nil {
		return "absent: " + err.Error()
	}
	if err := unix.Listen(lfd, 2); err != nil {
		return "FAIL: " + err.Error()
	}
	got := make(chan string, 2)
	go func() {
		for i := 0; i < 2; i++ {
			nfd, _, err := unix.Accept(lfd)
			if err != nil {
				got <- err.Error()
				return
			}
			c := os.NewFile(uintptr(nfd), "peer")
			b := make([]byte, 16)
			n, _ := c.Read(b)
			if i == 0 {
				c.Write(b[:n]) // heartbeat echo
			}
			got <- string(b[:n])
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := heartbeat.Run(ctx, vsock.Kernel{}, heartbeat.Config{CID: vsock.CIDLocal, Port: 9000,
		Policy: heartbeat.Policy{Attempts: 1, Timeout: 5 * time.Second}}); err != nil {
		return "FAIL: heartbeat: " + err.Error()
	}
	if err := report.Report(ctx, vsock.Kernel{}, vsock.CIDLocal, 9000, status.Exit(7), time.Second); err != nil {
		return "FAIL: report: " + err.Error()
	}
	if a, b := <-got, <-got; a != "\xb7" || b != "EXIT 7\n" {
		return fmt.Sprintf("FAIL: parent got %q, %q", a, b)
	}
	return "ok"
}

func okFail(err error) string {
	if err != nil {
		return "FAIL: " + err.Error()
	}
	return "ok"
}

// agentMain serves the socket init hands over (descriptor 3): "ping" ->
// "pong", and reports ready on descriptor 4. (Raw syscalls: package net
// would make this test binary dynamically linked, and it must run inside
// the test root.)
func agentMain() int {
	fmt.Println("qtsm-agent: listening on /run/qtsm.sock (args " + strings.Join(os.Args[1:], " ") + ")")
	go func() {
		for {
			nfd, _, err := unix.Accept(3)
			if err != nil {
				fmt.Println("qtsm-agent: accept:", err)
				return
			}
			c := os.NewFile(uintptr(nfd), "conn")
			b := make([]byte, 4)
			if _, err := io.ReadFull(c, b); err == nil && string(b) == "ping" {
				c.Write([]byte("pong"))
			}
			c.Close()
		}
	}()
	os.NewFile(4, "ready").Write([]byte("ready\n"))
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	<-c
	fmt.Println("qtsm-agent: stopped")
	return 0
}

// askAgent sends "ping" to the agent's socket and expects "pong".
func askAgent() error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	c := os.NewFile(uintptr(fd), "agent")
	defer c.Close()
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: "/run/qtsm.sock"}); err != nil {
		return fmt.Errorf("connect /run/qtsm.sock: %w", err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "pong" {
		return fmt.Errorf("agent answered %q, %v", b, err)
	}
	return nil
}

// workloadMain checks, from inside, what init promised, prints one CHECK
// line per promise, then waits for the SIGTERM init forwards.
func workloadMain() int {
	check := func(name string, ok bool, detail any) {
		if ok {
			fmt.Printf("CHECK %s ok\n", name)
		} else {
			fmt.Printf("CHECK %s FAIL: %v\n", name, detail)
		}
	}
	check("uid", os.Getuid() == 1000 && os.Getgid() == 1000, fmt.Sprint(os.Getuid(), os.Getgid()))
	groups, _ := os.Getgroups()
	check("groups", len(groups) == 1 && groups[0] == 10, groups)
	wd, _ := os.Getwd()
	check("workdir", wd == "/home/app", wd)
	var u unix.Utsname
	unix.Uname(&u)
	host := unix.ByteSliceToString(u.Nodename[:])
	check("hostname", host == "nsboot", host)
	env := strings.Join(os.Environ(), " ")
	check("env", strings.Contains(env, "HOME=/home/app") && strings.Contains(env, "HOSTNAME=nsboot") &&
		strings.Contains(env, "PATH=/bin") && strings.Contains(env, "GREETING=hello world"), env)
	check("argv", strings.Join(os.Args, " ") == "workload arg1 two words", os.Args)
	sid, _ := unix.Getsid(0)
	check("session", sid == os.Getpid(), sid)
	info, _ := os.ReadFile("/proc/self/mountinfo")
	for _, m := range []string{" /proc ", " /sys ", " /dev ", " /dev/pts ", " /dev/shm ", " /run ", " /tmp "} {
		check("mount"+strings.TrimSpace(m), bytes.Contains(info, []byte(m)), "missing")
	}
	l, err := os.Readlink("/dev/fd")
	check("devfd", l == "/proc/self/fd", err)
	var rl unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &rl)
	check("nofile", rl.Cur == 4096 && rl.Max == 4096, rl)
	hosts, _ := os.ReadFile("/etc/hosts")
	check("hosts", bytes.Contains(hosts, []byte("127.0.1.1\tnsboot")), string(hosts))
	err = askAgent()
	check("agent-socket", err == nil, err)
	_, err = os.Stat("/rootfs")
	check("old-root-gone", os.IsNotExist(err), err)
	// Loopback: binding 127.0.0.1 needs the address on lo.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
		unix.Close(fd)
	}
	check("loopback", err == nil, err)
	flags, _ := os.ReadFile("/sys/class/net/lo/flags")
	check("lo-up", strings.TrimSpace(string(flags)) == "0x9", string(flags))
	// /tmp allows exec by default.
	self, _ := os.ReadFile("/proc/self/exe")
	err = os.WriteFile("/tmp/exit0", self, 0o755)
	if err == nil {
		err = exec.Command("/tmp/exit0").Run()
	}
	check("tmp-exec", err == nil, err)

	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	fmt.Println("WORKLOAD-READY")
	select {
	case <-c:
		fmt.Println("WORKLOAD-GOT-SIGTERM")
		return 42
	case <-time.After(20 * time.Second):
		fmt.Println("WORKLOAD-TIMEOUT")
		return 1
	}
}

// nsMachine is the real machine except where the test must not touch the
// host: the console stays on the test's pipe, and entropy is counted, not
// added to the host's pool.
type nsMachine struct {
	boot.Linux
}

func (nsMachine) ReopenConsole() error { return nil }
func (nsMachine) AddEntropy(data []byte, bits int) error {
	fmt.Printf("POOL-ADD %d bytes %d bits\n", len(data), bits)
	return nil
}

// socketParent is the parent side over a socketpair: it echoes the
// heartbeat and prints status lines (closing the connection after, which
// init's report waits for).
func socketParent(cid, port uint32) (vsock.Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	unix.SetNonblock(fds[0], true)
	mine, theirs := os.NewFile(uintptr(fds[0]), "enclave"), os.NewFile(uintptr(fds[1]), "parent")
	go func() {
		defer theirs.Close()
		if port == 9002 {
			// The log stream, read to its end (then closed: the
			// acknowledgement init waits for).
			r := logstream.NewReader(theirs)
			for {
				rec, err := r.Next()
				if err != nil {
					if !errors.Is(err, io.EOF) {
						fmt.Printf("PARENT-LOG-ERROR %v\n", err)
					}
					return
				}
				fmt.Printf("PARENT-LOG %v|%s\n", rec.Source, rec.Text)
			}
		}
		if port == 9000 {
			var b [1]byte
			if n, _ := theirs.Read(b[:]); n == 1 {
				theirs.Write(b[:])
				fmt.Printf("PARENT-HEARTBEAT %d:%d 0x%02X\n", cid, port, b[0])
			}
			return
		}
		line, _ := bufio.NewReader(theirs).ReadString('\n')
		fmt.Printf("PARENT-GOT %d:%d %q\n", cid, port, line)
	}()
	return vsock.FileConn{File: mine}, nil
}

// TestIntegrationBoot runs the real init sequence as PID 1 in new PID,
// mount, network and UTS namespaces, from a bootstrap directory with an
// application root file system, a launch manifest and an agent: the
// workload checks every promise from inside, SIGTERM sent to init is
// forwarded, the exit status is reported, and init ends with
// reboot(RB_AUTOBOOT), which in a PID namespace kills its init with SIGHUP.
func TestIntegrationBoot(t *testing.T) {
	if nstest.Child(t.Name()) {
		childBoot(t)
		return
	}
	if os.Getuid() != 0 {
		t.Skip("needs root for namespaces")
	}
	if !nstest.StaticSelf() {
		t.Skip("test binary is dynamically linked (-race?); cannot run it inside the test root file system")
	}
	dir := t.TempDir()
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"rootfs/bin", "rootfs/etc", "rootfs/home/app", "rootfs/tmp", "rootfs/proc", "rootfs/dev", "rootfs/sys", "rootfs/run"} {
		must(os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	must(os.Chmod(filepath.Join(dir, "rootfs/tmp"), 0o1777))
	must(os.Chown(filepath.Join(dir, "rootfs/home/app"), 1000, 1000))
	must(os.WriteFile(filepath.Join(dir, "rootfs/bin/workload"), self, 0o755))
	must(os.WriteFile(filepath.Join(dir, "qtsm-agent"), self, 0o755))
	must(os.WriteFile(filepath.Join(dir, "fake-nsm"), nil, 0o600))
	must(os.WriteFile(filepath.Join(dir, "rootfs/etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "rootfs/etc/group"), []byte("root:x:0:\napp:x:1000:\nwheel:x:10:app\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "launch.json"), []byte(`{"version":1,"entrypoint":["workload","arg1"],"cmd":["two words"],`+
		`"env":["PATH=/bin","GREETING=hello world"],"working_dir":"/home/app","user":"app","hostname":"nsboot","nofile_limit":4096}`), 0o644))

	cmd := exec.Command(os.Args[0], "-test.run=^TestIntegrationBoot$", "-test.count=1")
	cmd.Env = append(os.Environ(), "QTENCLAVE_NSTEST=TestIntegrationBoot", "NSTEST_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL,
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET | syscall.CLONE_NEWUTS}
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot create namespaces: %v", err)
	}
	killer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer killer.Stop()
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if line == "PARENT-LOG stdout|WORKLOAD-READY" {
			// SIGTERM to init (PID 1 in its namespace) must reach the workload.
			cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	err = cmd.Wait()
	console := out.String()
	if testing.Verbose() {
		t.Logf("console (%v):\n%s", time.Since(start), console)
	}
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGHUP {
		t.Errorf("init ended with %v (%v), want killed by SIGHUP (reboot(RB_AUTOBOOT) in a PID namespace)\n%s", err, ws, console)
	}
	if strings.Contains(console, "FAIL") {
		t.Errorf("workload checks failed:\n%s", console)
	}
	for _, want := range []string{
		"init: start pid=1 uptime=",
		"PARENT-HEARTBEAT 3:9000 0xB7\n",
		"POOL-ADD 64 bytes 512 bits\n",
		"init: step entropy ok in",
		"init: step switch-root ok in",
		"init: step mounts ok in",
		"init: step loopback ok in",
		"qtsm-agent: listening on /run/qtsm.sock (args --socket /run/qtsm.sock --listen-fd 3 --device /fake-nsm --group 1000 --ready-fd 4)\n",
		"CHECK agent-socket ok\n",
		"init: step agent-ready ok in",
		"CHECK tmp-exec ok\n",
		"WORKLOAD-GOT-SIGTERM\n",
		"qtsm-agent: stopped\n",
		"qtenclave-exit: code=42 signal=0 reason=exited\n",
		`PARENT-GOT 3:9001 "EXIT 42\n"`,
		"init: rebooting (RB_AUTOBOOT)\n",
		// The log stream: init's lines from before it connected, the
		// workload's (through init's pipes), the end before the report.
		"PARENT-LOG init|init: start pid=1 uptime=",
		"PARENT-LOG init|init: step log-stream ok in",
		"PARENT-LOG stdout|CHECK agent-socket ok\n",
		"PARENT-LOG init|qtenclave-exit: code=42 signal=0 reason=exited\n",
		"init: step log-close ok in",
	} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if n := strings.Count(console, "CHECK "); n < 20 {
		t.Errorf("only %d workload checks ran:\n%s", n, console)
	}
	for _, l := range strings.Split(console, "\n") {
		if strings.HasPrefix(l, "init: ready in ") {
			t.Logf("%s (namespace boot on the host, not QEMU)", l)
		}
	}
}

// urandomModule answers GetRandom with 32 bytes from the kernel's CRNG,
// encoded as the secure module does ({"GetRandom":{"random":bstr}}).
type urandomModule struct{}

func (urandomModule) RoundTrip(_ context.Context, req []byte) ([]byte, error) {
	if !bytes.Equal(req, entropy.GetRandomRequest) {
		return nil, fmt.Errorf("unexpected request %x", req)
	}
	b := make([]byte, 32)
	if _, err := unix.Getrandom(b, 0); err != nil {
		return nil, err
	}
	return append([]byte("\xa1\x69GetRandom\xa1\x66random\x58\x20"), b...), nil
}

func childBoot(t *testing.T) {
	dir := os.Getenv("NSTEST_DIR")
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fmt.Println("private mounts:", err)
		os.Exit(3)
	}
	if err := unix.Chroot(dir); err != nil {
		fmt.Println("chroot:", err)
		os.Exit(3)
	}
	unix.Chdir("/")
	cmdline := "console=ttyS0 qtenclave.debug=0 qtenclave.log_port=9002"
	boot.MainWith(func(b *boot.Boot) {
		b.M = nsMachine{}
		b.Cmdline = &cmdline
		b.Dialer = vsock.DialerFunc(func(_ context.Context, cid, port uint32) (vsock.Conn, error) { return socketParent(cid, port) })
		b.Opts.DevicePaths = []string{"/fake-nsm"}
		b.OpenModule = func(string) (entropy.Source, func() error, error) {
			return entropy.Client{T: urandomModule{}}, func() error { return nil }, nil
		}
	})
}
