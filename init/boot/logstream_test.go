package boot

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/qtenclave/enclave/init/logs"
)

// streamRig is a rig whose console is mirrored into a log stream, as Main
// wires it.
func streamRig(t *testing.T, cmdline string) (*rig, *syncBuffer) {
	t.Helper()
	tree := baseTree()
	tree["launch.json"] = entry{`{"version":1,"entrypoint":["/bin/app"]}`, 0}
	r := newRig(t, tree, cmdline)
	raw := &syncBuffer{} // the console the workload would write to
	r.b.Logs = logs.New(raw)
	r.b.Logs.Warnf = r.b.Con.Warnf
	r.b.Con.SetMirror(r.b.Logs.Line)
	return r, raw
}

func TestLogStream(t *testing.T) {
	r, raw := streamRig(t, "qtenclave.log_port=9002")
	long := strings.Repeat("x", 40000)
	r.procs.workload = func(p Proc, _ <-chan syscall.Signal) syscall.WaitStatus {
		if p.Stdout == nil || p.Stderr == nil {
			return exitCode(99)
		}
		fmt.Fprint(p.Stdout, "hello\n")
		fmt.Fprint(p.Stderr, "oops\r\n")
		fmt.Fprint(p.Stdout, long+"\n")
		fmt.Fprint(p.Stdout, "tail without newline")
		return exitCode(0)
	}
	if st := r.finish(t); st.Code != 0 {
		t.Fatalf("status = %+v, want exit 0; console:\n%s", st, r.out.String())
	}
	got := r.parent.logged()
	pos := func(prefix string) int {
		return slices.IndexFunc(got, func(s string) bool { return strings.HasPrefix(s, prefix) })
	}
	// init's lines from before the connection come first, in order.
	if len(got) == 0 || !strings.HasPrefix(got[0], "init|init: start pid=") {
		t.Fatalf("first record = %q, want init's start line; records:\n%s", first(got), strings.Join(got, "\n"))
	}
	// (The exec step's line races with the workload's first lines: it is
	// written once Start returns.)
	if pos("init|init: step exec ok") < 0 {
		t.Errorf("no exec step record")
	}
	order := []string{
		"init|init: step heartbeat ok", "init|init: step log-stream ok",
		"stdout|hello", "stdout+|" + long[:16384], "stdout+|" + long[16384:32768], "stdout|" + long[32768:],
		"stdout|tail without newline", "init|init: workload pid 42 exited with status 0",
		"init|qtenclave-exit: code=0 signal=0 reason=exited",
	}
	last := -1
	for _, p := range order {
		i := pos(p)
		if i < 0 || i < last {
			t.Errorf("record %.60q at %d (after %d); records:\n%.3000s", p, i, last, strings.Join(got, "\n"))
		}
		last = i
	}
	if i := pos("stderr|oops\r"); i < 0 {
		t.Errorf("no stderr record; records:\n%.3000s", strings.Join(got, "\n"))
	}
	if l := got[len(got)-1]; l != "init|qtenclave-exit: code=0 signal=0 reason=exited" {
		t.Errorf("last record = %q, want the status line", l)
	}
	// The workload's output is not on the console; the stream's end is.
	if strings.Contains(raw.String(), "hello") || strings.Contains(r.out.String(), "hello") {
		t.Errorf("workload output reached the console:\n%s%s", raw.String(), r.out.String())
	}
	for _, re := range []string{"init: step log-stream ok in ", ": 3:9002", "init: step exec ok in ", ", output to the log stream", "init: step log-close ok in "} {
		if !strings.Contains(r.out.String(), re) {
			t.Errorf("console lacks %q:\n%s", re, r.out.String())
		}
	}
	r.before(t, "dial 3:9000", "dial 3:9002", "start /bin/app", "dial 3:9001", "reboot")
}

func first(ss []string) string {
	if len(ss) == 0 {
		return ""
	}
	return ss[0]
}

// TestLogStreamRefused: a parent that does not take the stream leaves the
// workload on the console.
func TestLogStreamRefused(t *testing.T) {
	r, _ := streamRig(t, "qtenclave.log_port=9002")
	r.parent.refused = map[uint32]bool{9002: true}
	var gotStdout *os.File
	r.procs.workload = func(p Proc, _ <-chan syscall.Signal) syscall.WaitStatus {
		gotStdout = p.Stdout
		return exitCode(0)
	}
	if st := r.finish(t); st.Code != 0 {
		t.Fatalf("status = %+v, want 0", st)
	}
	if gotStdout != nil {
		t.Errorf("workload got a pipe, want the console")
	}
	for _, s := range []string{"init: step log-stream failed in ", "the workload writes to the console", ", output to the console"} {
		if !strings.Contains(r.out.String(), s) {
			t.Errorf("console lacks %q:\n%s", s, r.out.String())
		}
	}
}

// TestLogStreamOff: without qtenclave.log_port nothing is dialled and the
// workload keeps the console.
func TestLogStreamOff(t *testing.T) {
	r, _ := streamRig(t, "")
	var gotStdout *os.File
	r.procs.workload = func(p Proc, _ <-chan syscall.Signal) syscall.WaitStatus {
		gotStdout = p.Stdout
		return exitCode(0)
	}
	r.finish(t)
	if gotStdout != nil {
		t.Errorf("workload got a pipe, want the console")
	}
	if r.ev.index("dial 3:9002") >= 0 {
		t.Errorf("dialled the log port without qtenclave.log_port")
	}
	if !strings.Contains(r.out.String(), "init: step log-stream skipped in ") {
		t.Errorf("console lacks the skipped log-stream step:\n%s", r.out.String())
	}
	if got := r.parent.logged(); len(got) != 0 {
		t.Errorf("records = %q, want none", got)
	}
}
