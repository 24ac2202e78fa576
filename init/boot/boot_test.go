package boot

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qtenclave/enclave/init/console"
	"github.com/qtenclave/enclave/init/entropy"
	"github.com/qtenclave/enclave/init/heartbeat"
	"github.com/qtenclave/enclave/init/netlo"
	"github.com/qtenclave/enclave/proto/status"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/sim"
	"golang.org/x/sys/unix"
)

type entry struct {
	data string
	mode os.FileMode // 0 = 0644 file; os.ModeDir|perm for a directory
}

func writeTree(t *testing.T, dir string, tree map[string]entry) {
	t.Helper()
	for name, e := range tree {
		p := filepath.Join(dir, name)
		if e.mode&os.ModeDir != 0 {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, e.mode.Perm())
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		if err := os.WriteFile(p, []byte(e.data), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
	}
}

// baseTree is a bootstrap ramdisk with an application root file system.
func baseTree() map[string]entry {
	return map[string]entry{
		"rootfs/bin/app":     {"#!/bin/sh\n", 0o755},
		"rootfs/bin/data":    {"x", 0o644},
		"rootfs/etc/passwd":  {"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n", 0},
		"rootfs/etc/group":   {"root:x:0:\napp:x:1000:\nwheel:x:10:app\n", 0},
		"rootfs/home/app":    {"", os.ModeDir | 0o755},
		"rootfs/srv/private": {"", os.ModeDir | 0o700},
		"rootfs/tmp":         {"", os.ModeDir | 0o777},
	}
}

type rig struct {
	b      *Boot
	m      *fakeMachine
	procs  *fakeProcs
	parent *fakeParent
	out    *syncBuffer
	ev     *events
	dir    string
}

func newRig(t *testing.T, tree map[string]entry, cmdline string) *rig {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, tree)
	ev := &events{}
	m := &fakeMachine{ev: ev, root: dir, cwd: dir, ready: true, loopback: netlo.Result{IPv4: true, IPv6: true}}
	out := &syncBuffer{}
	r := &rig{m: m, procs: newProcs(ev), parent: &fakeParent{ev: ev}, out: out, ev: ev, dir: dir}
	r.procs.workload = func(Proc, <-chan syscall.Signal) syscall.WaitStatus { return exitCode(0) }
	r.b = &Boot{
		M: m, Procs: r.procs, Dialer: r.parent, Con: console.New(out), Cmdline: &cmdline,
		OpenModule: func(path string) (entropy.Source, func() error, error) {
			ev.add("open module %s", path)
			s, err := sim.New(sim.Options{Vendor: qtsm.VendorNitro})
			if err != nil {
				return nil, nil, err
			}
			return entropy.Client{T: s}, s.Close, nil
		},
		Opts: Options{
			DeviceWait: 50 * time.Millisecond, CRNGWait: 20 * time.Millisecond,
			Heartbeat: heartbeat.Policy{Attempts: 2, Initial: time.Millisecond, Timeout: time.Second},
			AgentWait: 2 * time.Second, AgentStop: 500 * time.Millisecond, ReportWait: time.Second,
		},
	}
	return r
}

// finish runs the whole sequence and returns the status.
func (r *rig) finish(t *testing.T) status.Status {
	t.Helper()
	done := make(chan status.Status, 1)
	go func() {
		st := r.b.Run()
		r.b.Finish(st)
		done <- st
	}()
	select {
	case st := <-done:
		return st
	case <-time.After(20 * time.Second):
		t.Fatalf("sequence did not finish; console:\n%s", r.out.String())
	}
	return status.Status{}
}

// before checks that event prefixes occur in order.
func (r *rig) before(t *testing.T, prefixes ...string) {
	t.Helper()
	last := -1
	for _, p := range prefixes {
		i := r.ev.index(p)
		if i < 0 {
			t.Errorf("no event %q; events:\n%s", p, strings.Join(r.ev.all(), "\n"))
			return
		}
		if i < last {
			t.Errorf("event %q (at %d) happened before %q; events:\n%s", p, i, prefixes[slices.Index(prefixes, p)-1], strings.Join(r.ev.all(), "\n"))
		}
		last = i
	}
}

func count(ss []string, prefix string) int {
	n := 0
	for _, s := range ss {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

func TestSequence(t *testing.T) {
	tree := baseTree()
	tree["launch.json"] = entry{`{"version":1,"entrypoint":["app","--serve"],"cmd":["x y"],"env":["A=1","PATH=/usr/bin:/bin"],` +
		`"working_dir":"/home/app","user":"app","hostname":"enc1","nofile_limit":4096}`, 0}
	tree["nsm.ko.xz"] = entry{"module", 0}
	tree["qtsm-agent"] = entry{"agent", 0o755}
	r := newRig(t, tree, "console=ttyS0 qtenclave.debug=1")
	r.m.ready = false // the module's bytes make it ready
	r.m.modDev = "/dev/nsm"
	r.procs.workload = func(p Proc, kill <-chan syscall.Signal) syscall.WaitStatus { return exitCode(3) }

	st := r.finish(t)
	out := r.out.String()
	if st != status.Exit(3) {
		t.Errorf("status = %+v, want exit 3; console:\n%s", st, out)
	}
	// The boot contract's order.
	bind := "mount /rootfs /rootfs  0x5000"
	// The secure-module lane (2-3) runs beside the console and command
	// line steps: ordered after devtmpfs, not after them.
	r.before(t, "mount devtmpfs /dev devtmpfs", "console", "loopback")
	r.before(t,
		"mount devtmpfs /dev devtmpfs", // 1. devtmpfs first
		"load /nsm.ko.xz 4",            // 2. compressed module
		"open module /dev/nsm",
		"entropy 64 512", // 3. seeded from the module
		"dial 3:9000",    // 4. heartbeat
		"openexec /qtsm-agent",
		bind, "chdir /rootfs", "mount . /  0x2000", "chroot .", // 6. move-mount switch root
		"mount proc /proc proc",
		"mount tmpfs /tmp tmpfs 0x6",
		"symlink /dev/fd",
		"listen /run/qtsm.sock 0660 1000", // 7. the agent's socket, then the agent, before the workload
		"start /proc/self/fd/100",
		"hostname enc1", "write /etc/hosts", "nofile 4096",
		"start /bin/app", // 8. the workload
		"exit 43",
		"kill 42 15", // 9. agent stopped
		"release /qtsm-agent",
		"sync",
		"dial 3:9001", // status report
		"reboot",
	)
	if n := count(r.ev.all(), "reboot"); n != 1 {
		t.Errorf("%d reboots, want 1", n)
	}
	r.before(t, "start /bin/app", "forward 43", "forward 0", "reboot") // signals go to the workload while it runs
	r.before(t, "console", "loopback", "start /bin/app")               // lo comes up concurrently, before the workload
	// The workload, the Docker way.
	w, ok := r.procs.byPath("/bin/app")
	if !ok {
		t.Fatalf("workload not started; events %q", r.ev.all())
	}
	if want := []string{"app", "--serve", "x y"}; !slices.Equal(w.Argv, want) {
		t.Errorf("argv = %q, want %q", w.Argv, want)
	}
	if want := []string{"PATH=/usr/bin:/bin", "HOSTNAME=enc1", "A=1", "HOME=/home/app"}; !slices.Equal(w.Env, want) {
		t.Errorf("env = %q, want %q", w.Env, want)
	}
	if w.Dir != "/home/app" || !w.Setsid || w.Cred == nil || w.Cred.Uid != 1000 || w.Cred.Gid != 1000 || !slices.Equal(w.Cred.Groups, []uint32{10}) {
		t.Errorf("workload dir %q setsid %v cred %+v", w.Dir, w.Setsid, w.Cred)
	}
	a, _ := r.procs.byPath("/proc/self/fd/100")
	if want := []string{"qtsm-agent", "--socket", "/run/qtsm.sock", "--listen-fd", "3", "--device", "/dev/nsm", "--group", "1000", "--ready-fd", "4"}; !slices.Equal(a.Argv, want) {
		t.Errorf("agent argv = %q, want %q", a.Argv, want)
	}
	if got := r.parent.got(); !slices.Equal(got, []string{"EXIT 3\n"}) {
		t.Errorf("parent received %q, want EXIT 3", got)
	}
	hosts, err := os.ReadFile(filepath.Join(r.dir, "rootfs/etc/hosts"))
	if err != nil || !strings.Contains(string(hosts), "127.0.0.1\tlocalhost") || !strings.Contains(string(hosts), "127.0.1.1\tenc1") {
		t.Errorf("/etc/hosts = %q, %v", hosts, err)
	}
	for _, re := range []string{
		`(?m)^init: step devtmpfs ok in \d+\.\d{3}ms$`,
		`(?m)^init: step modules ok in \d+\.\d{3}ms: /nsm.ko.xz loaded$`,
		`(?m)^init: step entropy ok in \d+\.\d{3}ms: 64 bytes from /dev/nsm, crng ready$`,
		`(?m)^init: step heartbeat ok in \d+\.\d{3}ms: 3:9000 after 1 attempt\(s\)$`,
		`(?m)^init: step config ok in \d+\.\d{3}ms: /launch.json, argv \["app" "--serve" "x y"\]$`,
		`(?m)^init: step switch-root ok in \d+\.\d{3}ms: /rootfs$`,
		`(?m)^init: step agent-start ok in \d+\.\d{3}ms: /run/qtsm.sock listening, handed over$`,
		`(?m)^init: step agent-ready ok in \d+\.\d{3}ms: pid 42 serving /run/qtsm.sock$`,
		`(?m)^init: step workload ok in \d+\.\d{3}ms: "/bin/app" as 1000:1000 in "/home/app"$`,
		`(?m)^init: ready in \d+\.\d{3}ms \(heartbeat \d+\.\d{3}ms excluded\)$`,
		`(?m)^init: own time -?\d+\.\d{3}ms \(waits excluded: heartbeat \d+\.\d{3}ms, device \d+\.\d{3}ms, crng \d+\.\d{3}ms\)$`,
		`(?m)^qtsm-agent: listening on /run/qtsm.sock \(device /dev/nsm\)$`,
		`(?m)^init: workload pid 43 exited with status 3$`,
		`(?m)^qtenclave-exit: code=3 signal=0 reason=exited$`,
		`(?m)^init: step report ok in \d+\.\d{3}ms: 3:9001 "EXIT 3"$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("console lacks %s; console:\n%s", re, out)
		}
	}
	// Every console line is init's, the agent's or the status line.
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "init: ") && !strings.HasPrefix(l, "qtsm-agent: ") && !strings.HasPrefix(l, "qtenclave-exit: ") {
			t.Errorf("unexpected console line %q", l)
		}
	}
}

func TestSequenceLegacyKilled(t *testing.T) {
	tree := baseTree()
	tree["cmd"] = entry{"/bin/app\n-c\necho \"$A\"\n", 0}
	tree["env"] = entry{"A=x y\n", 0}
	r := newRig(t, tree, "qtenclave.heartbeat=off")
	r.m.ready = true // the kernel's CRNG got its entropy elsewhere
	r.procs.workload = func(Proc, <-chan syscall.Signal) syscall.WaitStatus { return syscall.WaitStatus(syscall.SIGKILL) }
	st := r.finish(t)
	if st != status.Killed(9) {
		t.Errorf("status = %+v, want killed by 9", st)
	}
	if r.ev.index("dial 3:9000") >= 0 {
		t.Error("heartbeat ran although disabled")
	}
	if r.ev.index("start /proc/self/fd/100") >= 0 || r.ev.index("load ") >= 0 {
		t.Error("agent or module without files")
	}
	w, _ := r.procs.byPath("/bin/app")
	if !slices.Equal(w.Argv, []string{"/bin/app", "-c", `echo "$A"`}) || !slices.Contains(w.Env, "A=x y") || w.Cred.Uid != 0 {
		t.Errorf("legacy workload %+v", w)
	}
	if got := r.parent.got(); !slices.Equal(got, []string{"SIGNAL 9\n"}) {
		t.Errorf("parent received %q, want SIGNAL 9", got)
	}
	out := r.out.String()
	for _, want := range []string{
		"init: step heartbeat skipped in",
		"init: step config ok in",
		"init: step entropy ok in", // no module: CRNG checked anyway
		"0 bytes (no secure module)",
		"init: step agent-open skipped in",
		"qtenclave-exit: code=137 signal=9 reason=signaled\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
}

// TestBadInput: each bad input gives one failed step line naming the
// problem, the status line with its distinctive status, the same status
// to the parent, no workload, and a reboot.
func TestBadInput(t *testing.T) {
	manifest := func(s string) map[string]entry {
		tree := baseTree()
		tree["launch.json"] = entry{s, 0}
		return tree
	}
	for _, tc := range []struct {
		name     string
		tree     map[string]entry
		setup    func(*rig)
		want     status.Status
		stepLine string
	}{
		{"no configuration", baseTree(), nil, status.Failed(status.Config),
			"step config failed in .*: launch: no launch.json and no cmd in the ramdisk"},
		{"empty command", manifest(`{"version":1}`), nil, status.Failed(status.Config),
			"step config failed in .*: launch.json: launch: empty command"},
		{"empty cmd file", func() map[string]entry { t := baseTree(); t["cmd"] = entry{"", 0}; return t }(), nil,
			status.Failed(status.Config), "step config failed in .*: cmd/env: launch: empty command"},
		{"malformed manifest", manifest(`{"version":1,"cmd":["/bin/app"],`), nil, status.Failed(status.Config),
			"step config failed in .*: launch.json: launch: parse manifest: unexpected end of input"},
		{"non-existent binary", manifest(`{"version":1,"cmd":["python3","app.py"]}`), nil, status.Failed(status.NotFound),
			`step workload failed in .*: exec "python3": executable file not found in \$PATH`},
		{"not executable", manifest(`{"version":1,"cmd":["/bin/data"]}`), nil, status.Failed(status.NoExec),
			`step workload failed in .*: exec "/bin/data": permission denied`},
		{"exec refused by the kernel", manifest(`{"version":1,"cmd":["/bin/app"]}`),
			func(r *rig) { r.procs.startErr = map[string]error{"/bin/app": syscall.ENOEXEC} }, status.Failed(status.NoExec),
			`step exec failed in .*: exec "/bin/app": exec format error`},
		{"missing interpreter", manifest(`{"version":1,"cmd":["/bin/app"]}`),
			func(r *rig) { r.procs.startErr = map[string]error{"/bin/app": syscall.ENOENT} }, status.Failed(status.NotFound),
			`step exec failed in .*: exec "/bin/app": no such file or directory`},
		{"unknown user", manifest(`{"version":1,"cmd":["/bin/app"],"user":"ghost"}`), nil, status.Failed(status.User),
			`step workload failed in .*: user "ghost": unknown user "ghost"`},
		{"working dir is a file", manifest(`{"version":1,"cmd":["/bin/app"],"working_dir":"/bin/app"}`), nil, status.Failed(status.Workdir),
			`step workload failed in .*: working directory "/bin/app": not a directory`},
		// A hostile manifest (issue 14, item 3) is refused at load, its
		// strings quoted: no byte of it starts a console line.
		{"working dir forging a status line", manifest(`{"version":1,"cmd":["/bin/app"],"working_dir":"/srv\nqtenclave-exit: code=0 signal=0 reason=exited"}`),
			nil, status.Failed(status.Config), `step config failed in .*: working_dir "/srv\\nqtenclave-exit: code=0 signal=0 reason=exited" holds a control character`},
		{"hostname with a hosts line", manifest(`{"version":1,"cmd":["/bin/app"],"hostname":"h\n6.6.6.6 attacker.example"}`),
			nil, status.Failed(status.Config), `step config failed in .*: hostname "h\\n6.6.6.6 attacker.example"`},
		{"no rootfs", func() map[string]entry { return map[string]entry{"cmd": {"/bin/app\n", 0}} }(), nil, status.Failed(status.Setup),
			`step switch-root failed in .*: switch root chdir /rootfs`},
		{"required mount fails", manifest(`{"version":1,"cmd":["/bin/app"]}`),
			func(r *rig) { r.m.fail = map[string]error{"mount tmpfs /run": syscall.ENOMEM} }, status.Failed(status.Setup),
			`step mounts failed in .*: mount tmpfs on /run .*: cannot allocate memory`},
		{"heartbeat unanswered", manifest(`{"version":1,"cmd":["/bin/app"]}`),
			func(r *rig) { r.parent.refuse = true }, status.Failed(status.Heartbeat),
			`step heartbeat failed in .*: heartbeat to 3:9000 failed after 2 attempts: connection reset by peer`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.tree, "")
			if tc.setup != nil {
				tc.setup(r)
			}
			st := r.finish(t)
			out := r.out.String()
			if st != tc.want {
				t.Errorf("status = %+v, want %+v; console:\n%s", st, tc.want, out)
			}
			if !regexp.MustCompile(`(?m)^init: ` + tc.stepLine).MatchString(out) {
				t.Errorf("console lacks %q:\n%s", tc.stepLine, out)
			}
			if n := strings.Count(out, " failed in ") - strings.Count(out, "step report failed in "); n != 1 {
				t.Errorf("%d failed step lines, want exactly 1:\n%s", n, out)
			}
			if !strings.Contains(out, tc.want.Line()+"\n") {
				t.Errorf("console lacks status line %q", tc.want.Line())
			}
			if _, started := r.procs.byPath("/bin/app"); started && tc.want.Reason != status.NoExec && tc.want.Reason != status.NotFound {
				t.Error("workload started despite bad input")
			}
			if n := count(r.ev.all(), "reboot"); n != 1 {
				t.Errorf("%d reboots, want 1", n)
			}
			if !r.parent.refuse {
				if got := r.parent.got(); !slices.Equal(got, []string{tc.want.Wire()}) {
					t.Errorf("parent received %q, want %q", got, tc.want.Wire())
				}
			}
		})
	}
}

func TestUnreadableWorkdir(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to own the directory as someone else")
	}
	tree := baseTree()
	tree["launch.json"] = entry{`{"version":1,"cmd":["/bin/app"],"user":"app","working_dir":"/srv/private"}`, 0}
	r := newRig(t, tree, "qtenclave.heartbeat=off")
	st := r.finish(t)
	if st != status.Failed(status.Workdir) || !strings.Contains(r.out.String(), `working directory "/srv/private": permission denied for uid 1000`) {
		t.Errorf("status %+v; console:\n%s", st, r.out.String())
	}
}

func TestPanicEndsCleanly(t *testing.T) {
	tree := baseTree()
	tree["cmd"] = entry{"/bin/app\n", 0}
	r := newRig(t, tree, "")
	r.m.panicOn = "hostname"
	st := r.finish(t)
	out := r.out.String()
	if st != status.Failed(status.Internal) || !strings.Contains(out, "init: error: panic: fake machine: hostname") {
		t.Errorf("status %+v; console:\n%s", st, out)
	}
	if !strings.Contains(out, "qtenclave-exit: code=125 signal=0 reason=internal\n") || count(r.ev.all(), "reboot") != 1 {
		t.Errorf("panic did not end in a status line and one reboot:\n%s", out)
	}
}

func TestOptions(t *testing.T) {
	tree := baseTree()
	tree["launch.json"] = entry{`{"version":1,"cmd":["/bin/app"],"tmp_noexec":true,"agent":false}`, 0}
	tree["qtsm-agent"] = entry{"agent", 0o755}
	tree["rootfs/etc/hosts"] = entry{"10.0.0.1 mine\n", 0}
	tree["dev/nsm"] = entry{"", 0}         // built-in driver: device already there,
	tree["nsm.ko.xz"] = entry{"module", 0} // so the module is not loaded
	r := newRig(t, tree, "qtenclave.status_port=0 qtenclave.bogus=1")
	r.m.loopback = netlo.Result{}
	st := r.finish(t)
	out := r.out.String()
	if st != status.Exit(0) {
		t.Errorf("status %+v:\n%s", st, out)
	}
	if r.ev.index(strings.TrimSpace("mount tmpfs /tmp tmpfs 0xe")) < 0 {
		t.Errorf("/tmp not mounted noexec; events:\n%s", strings.Join(r.ev.all(), "\n"))
	}
	if r.ev.index("start /proc/self/fd/100") >= 0 || !strings.Contains(out, "step agent-open skipped in") {
		t.Error("agent started although the manifest says no")
	}
	if r.ev.index("dial 3:9001") >= 0 {
		t.Error("status reported although status_port=0")
	}
	if r.ev.index("write /etc/hosts") >= 0 {
		t.Error("/etc/hosts overwritten")
	}
	if r.ev.index("load ") >= 0 {
		t.Errorf("module loaded although /dev/nsm was there; events:\n%s", strings.Join(r.ev.all(), "\n"))
	}
	for _, want := range []string{
		"init: warning: ignoring kernel parameter \"qtenclave.bogus=1\": unknown parameter",
		"init: step device ok in",
		"init: step modules skipped in", "/dev/nsm present (driver built in)",
		"init: step hostname ok in", "enclave",
		"init: step loopback ok in", "no IPv4 or IPv6 in kernel",
		"init: step rlimits ok in", "nofile 65536",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
}

func TestDeviceNeverAppears(t *testing.T) {
	tree := baseTree()
	tree["cmd"] = entry{"/bin/app\n", 0}
	tree["nsm.ko"] = entry{"m", 0}
	tree["qtsm-agent"] = entry{"a", 0o755}
	r := newRig(t, tree, "")
	r.m.ready = false
	start := time.Now()
	st := r.finish(t)
	out := r.out.String()
	if st != status.Exit(0) {
		t.Errorf("status %+v", st)
	}
	if !regexp.MustCompile(`init: step device skipped in (\d+)\.\d{3}ms: no secure-module device: none of /dev/qtsm, /dev/nsm after 50ms`).MatchString(out) {
		t.Errorf("console:\n%s", out)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
	// No module: no entropy from it, CRNG waited for, agent not started.
	for _, want := range []string{"step entropy failed in", "0 bytes (no secure module), crng NOT ready: kernel CRNG not ready after 20ms", "step agent-open skipped in"} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
	if r.ev.index("crng wait") < 0 {
		t.Error("CRNG readiness not awaited")
	}
}

// agentRig is a rig whose boot starts the agent: /cmd, /qtsm-agent and a
// built-in driver's device.
func agentRig(t *testing.T, device string) *rig {
	t.Helper()
	tree := baseTree()
	tree["cmd"] = entry{"/bin/app\n", 0}
	tree["qtsm-agent"] = entry{"agent", 0o755}
	tree[strings.TrimPrefix(device, "/")] = entry{"", 0}
	return newRig(t, tree, "")
}

func TestAgentRestartedAndStopped(t *testing.T) {
	r := agentRig(t, "/dev/qtsm")
	var starts int
	r.procs.agent = func(p Proc, kill <-chan syscall.Signal) syscall.WaitStatus {
		starts++
		if starts == 1 {
			// Crashes before it is ready.
			return exitCode(1)
		}
		return agentObedient(p, kill)
	}
	release := make(chan struct{})
	r.procs.workload = func(p Proc, kill <-chan syscall.Signal) syscall.WaitStatus {
		<-release
		return exitCode(0)
	}
	go func() {
		// Let the supervisor restart the agent, then end the workload.
		waitFor(t, "agent restart", func() bool { return count(r.ev.all(), "start /proc/self/fd/100") >= 2 })
		close(release)
	}()
	st := r.finish(t)
	out := r.out.String()
	if st != status.Exit(0) {
		t.Errorf("status %+v", st)
	}
	for _, want := range []string{
		"init: step agent-ready failed in",
		"qtsm-agent exited before it was ready",
		"init: warning: qtsm-agent pid 42 exited with status 1; restarting in 100ms",
		"qtsm-agent: listening on",
		"--device /dev/qtsm",
	} {
		if want == "--device /dev/qtsm" {
			a, _ := r.procs.byPath("/proc/self/fd/100")
			if !slices.Contains(a.Argv, "/dev/qtsm") {
				t.Errorf("agent argv %q lacks /dev/qtsm", a.Argv)
			}
			continue
		}
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
	r.before(t, "exit 43", "kill 44 15", "reboot")
}

func TestCRNGReadyWithoutModule(t *testing.T) {
	tree := baseTree()
	tree["cmd"] = entry{"/bin/app\n", 0}
	r := newRig(t, tree, "")
	r.finish(t)
	if !strings.Contains(r.out.String(), "step entropy ok in") || r.ev.index("crng wait") >= 0 {
		t.Errorf("console:\n%s", r.out.String())
	}
}

func TestMs(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0.000ms", 1234567: "1.235ms", 12300 * time.Microsecond: "12.300ms", 2 * time.Second: "2000.000ms"} {
		if got := Ms(d); got != want {
			t.Errorf("Ms(%v) = %q, want %q", d, got, want)
		}
	}
}

var _ = unix.MS_NOEXEC

func TestQuoteList(t *testing.T) {
	for _, ss := range [][]string{nil, {}, {"/app"}, {"a b", `q"t`, "tab\there", "é", "\x00"}} {
		if got, want := quoteList(ss), fmt.Sprintf("%q", ss); got != want {
			t.Errorf("quoteList(%#v) = %s, want %s", ss, got, want)
		}
	}
}

// TestAgentSocketActivation: the workload starts without waiting for the
// agent and connects at once; its connection waits in the socket init
// created until the agent, slow to get ready, accepts it.
func TestAgentSocketActivation(t *testing.T) {
	r := agentRig(t, "/dev/nsm")
	r.procs.agent = func(p Proc, kill <-chan syscall.Signal) syscall.WaitStatus {
		time.Sleep(300 * time.Millisecond) // a slow start
		l, err := net.FileListener(p.Extra[0])
		if err != nil {
			return exitCode(1)
		}
		defer l.Close()
		p.Extra[1].Write([]byte("ready\n"))
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			b := make([]byte, 4)
			if _, err := io.ReadFull(c, b); err == nil && string(b) == "ping" {
				c.Write([]byte("pong"))
			}
		}()
		for s := range kill {
			if s == syscall.SIGTERM || s == syscall.SIGKILL {
				return syscall.WaitStatus(s)
			}
		}
		return 0
	}
	sock := filepath.Join(r.dir, "rootfs/run/qtsm.sock")
	r.procs.workload = func(Proc, <-chan syscall.Signal) syscall.WaitStatus {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err != nil {
			t.Errorf("workload: dial %s: %v", sock, err)
			return exitCode(1)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 4)
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Errorf("workload: write: %v", err)
			return exitCode(1)
		}
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "pong" {
			t.Errorf("workload: agent answered %q, %v; want pong", b, err)
			return exitCode(1)
		}
		return exitCode(0)
	}
	st := r.finish(t)
	out := r.out.String()
	if st != status.Exit(0) {
		t.Errorf("status = %+v, want exit 0; console:\n%s", st, out)
	}
	exec, ready := strings.Index(out, "init: step exec ok"), strings.Index(out, "init: step agent-ready ok")
	if exec < 0 || ready < 0 || exec > ready {
		t.Errorf("the workload was not started before the agent was ready (exec line at %d, agent-ready at %d):\n%s", exec, ready, out)
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("agent socket %s = %v, %v; want a 0660 socket", sock, fi, err)
	}
}

// TestAgentNeverReadyQuickExit: a workload that ends while the agent is not
// ready yet does not wait out the readiness bound.
func TestAgentNeverReadyQuickExit(t *testing.T) {
	r := agentRig(t, "/dev/nsm")
	r.b.Opts.AgentWait = 10 * time.Second
	r.procs.agent = func(p Proc, kill <-chan syscall.Signal) syscall.WaitStatus {
		for s := range kill { // never ready
			if s == syscall.SIGTERM || s == syscall.SIGKILL {
				return syscall.WaitStatus(s)
			}
		}
		return 0
	}
	start := time.Now()
	st := r.finish(t)
	out := r.out.String()
	if st != status.Exit(0) {
		t.Errorf("status = %+v, want exit 0; console:\n%s", st, out)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("boot with a never-ready agent took %v, want well under the 10s readiness bound", el)
	}
	if !strings.Contains(out, "init: step agent-ready failed in") || !strings.Contains(out, "exited before it was ready") {
		t.Errorf("console lacks the agent-ready failure line:\n%s", out)
	}
}

// TestSequenceEgress: a manifest that opens egress gets the proxy's
// listener on 127.0.0.1 before the agent and the workload start, the
// agent serves it (descriptor 4, the rules as flags, the ready pipe
// after), and the workload gets the proxy variables, except one the image
// sets itself.
func TestSequenceEgress(t *testing.T) {
	tree := baseTree()
	tree["launch.json"] = entry{`{"version":1,"cmd":["app"],"env":["NO_PROXY=internal.example"],` +
		`"publish":[8080,9443],"egress":{"allow":["api.example.com:443","**.amazonaws.com"],"deny":["10.0.0.0/8"],"proxy_port":8888,` +
		`"forwards":["kms.eu-west-1.amazonaws.com:443","s3.amazonaws.com:443"]}}`, 0}
	tree["qtsm-agent"] = entry{"agent", 0o755}
	tree["nsm.ko.xz"] = entry{"module", 0}
	r := newRig(t, tree, "console=ttyS0")
	r.m.ready = false // the module's bytes make it ready
	r.m.modDev = "/dev/nsm"
	r.procs.workload = func(p Proc, kill <-chan syscall.Signal) syscall.WaitStatus { return exitCode(0) }
	if st := r.finish(t); st != status.Exit(0) {
		t.Fatalf("status = %+v, want exit 0; console:\n%s", st, r.out.String())
	}
	r.before(t, "loopback", "listen-tcp 127.0.0.1:8888", "listen-tcp 127.0.0.2:443", "listen-tcp 127.0.0.3:443", "start /proc/self/fd/100", "start /bin/app")
	a, _ := r.procs.byPath("/proc/self/fd/100")
	want := []string{"qtsm-agent", "--socket", "/run/qtsm.sock", "--listen-fd", "3", "--device", "/dev/nsm",
		"--egress-fd", "4", "--egress-forward", "5=kms.eu-west-1.amazonaws.com:443", "--egress-forward", "6=s3.amazonaws.com:443",
		"--egress-allow", "api.example.com:443", "--egress-allow", "**.amazonaws.com", "--egress-deny", "10.0.0.0/8",
		"--publish", "8080", "--publish", "9443", "--ready-fd", "7"}
	if !slices.Equal(a.Argv, want) || len(a.Extra) != 5 {
		t.Errorf("agent argv = %q with %d extra descriptors, want %q and 5", a.Argv, len(a.Extra), want)
	}
	hosts, err := os.ReadFile(filepath.Join(r.dir, "rootfs/etc/hosts"))
	if err != nil || !strings.HasSuffix(string(hosts), "\n127.0.0.2\tkms.eu-west-1.amazonaws.com\n127.0.0.3\ts3.amazonaws.com\n") {
		t.Errorf("/etc/hosts = %q, %v; want the forwards' names on 127.0.0.2 and .3", hosts, err)
	}
	w, _ := r.procs.byPath("/bin/app")
	for _, kv := range []string{"HTTP_PROXY=http://127.0.0.1:8888", "https_proxy=http://127.0.0.1:8888", "NO_PROXY=internal.example", "no_proxy=localhost,127.0.0.1,::1"} {
		if !slices.Contains(w.Env, kv) {
			t.Errorf("workload env %q lacks %q", w.Env, kv)
		}
	}
	if slices.Contains(w.Env, "NO_PROXY=localhost,127.0.0.1,::1") {
		t.Errorf("init replaced the image's NO_PROXY: %q", w.Env)
	}
	if !regexp.MustCompile(`(?m)^init: step egress ok in \d+\.\d{3}ms: proxy on 127.0.0.1:8888, 2 allow and 1 deny rules, 2 forwards$`).MatchString(r.out.String()) {
		t.Errorf("no egress step line:\n%s", r.out.String())
	}
}

// TestSequenceEgressWithoutAgent: egress needs the companion; without it
// the boot ends with the setup status, before the workload.
func TestSequenceEgressWithoutAgent(t *testing.T) {
	tree := baseTree()
	tree["launch.json"] = entry{`{"version":1,"cmd":["app"],"agent":false,"egress":{"allow":["a.example"]}}`, 0}
	r := newRig(t, tree, "console=ttyS0")
	r.m.modDev = "/dev/nsm"
	st := r.finish(t)
	if st != status.Failed(status.Setup) {
		t.Errorf("status = %+v, want the setup failure", st)
	}
	if _, ok := r.procs.byPath("/bin/app"); ok {
		t.Errorf("the workload started")
	}
	if !strings.Contains(r.out.String(), "step egress failed") {
		t.Errorf("no failed egress step:\n%s", r.out.String())
	}
}
