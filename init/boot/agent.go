package boot

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/qtenclave/enclave/init/reaper"
	"github.com/qtenclave/enclave/init/supervise"
	"github.com/qtenclave/enclave/proto/launch"
	"github.com/qtenclave/enclave/proto/logstream"
)

// openAgent keeps the agent binary runnable across the switch root when it
// is wanted and present.
func (b *Boot) openAgent(m *launch.Manifest) string {
	var p string
	b.step("agent-open", func() (string, error) {
		switch {
		case m.Agent != nil && !*m.Agent:
			return "", skipf("disabled by the launch manifest")
		case !b.exists(b.Opts.AgentPath):
			return "", skipf("no %s in the bootstrap ramdisk", b.Opts.AgentPath)
		case b.device == "":
			return "", skipf("no secure-module device")
		}
		execPath, release, err := b.M.OpenExec(b.Opts.AgentPath)
		if err != nil {
			return "", err
		}
		b.release = append(b.release, release)
		p = execPath
		return b.Opts.AgentPath + " as " + execPath, nil
	})
	return p
}

// agentStart is step "agent-start": the agent starts on a socket init has
// created (socket activation), so the workload may connect at once and
// nobody waits for the agent; its readiness is logged when it comes.
func (b *Boot) agentStart(execPath string, gid uint32) (string, error) {
	ready, err := b.startAgent(execPath, gid)
	if err != nil {
		return "", err
	}
	b.agentReady = make(chan struct{})
	go func() {
		defer close(b.agentReady)
		b.log(b.do("agent-ready", recovered(ready)))
	}()
	return fmt.Sprintf("%s listening, handed over", b.Opts.AgentSocket), nil
}

// startAgent creates the agent's socket and starts the supervised agent on
// it; the returned function waits for its readiness.
func (b *Boot) startAgent(execPath string, gid uint32) (func() (string, error), error) {
	if execPath == "" {
		return nil, skipf("not started")
	}
	// Mode 0660 and the workload's group: it may connect (and extend and
	// lock PCRs 16-31, by the agent's --group policy); root may anyway.
	sock, err := b.M.ListenUnix(b.Opts.AgentSocket, 0o660, int(gid))
	if err != nil {
		return nil, err
	}
	b.release = append(b.release, func() { sock.Close() })
	out, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	b.agentOut, b.agentDone = outW, make(chan struct{})
	go func() {
		defer close(b.agentDone)
		defer out.Close()
		defer func() { recover() }() // never let logging take PID 1 down
		w := b.Con.PrefixWriter("qtsm-agent: ", logstream.Agent)
		io.Copy(w, out)
		w.Close()
	}()
	var readyR *os.File
	first := true
	start := func() (int, <-chan reaper.Status, error) {
		// Every instance gets the same socket as descriptor 3 (and the
		// egress proxy's listener as 4).
		argv := []string{"qtsm-agent", "--socket", b.Opts.AgentSocket, "--listen-fd", "3", "--device", b.device}
		if gid != 0 {
			argv = append(argv, "--group", strconv.FormatUint(uint64(gid), 10))
		}
		p := Proc{Path: execPath, Env: []string{"PATH=" + launch.DefaultPath}, Dir: "/", Setsid: true, Stdout: outW, Stderr: outW,
			Extra: []*os.File{sock}}
		if b.egressFile != nil {
			p.Extra = append(p.Extra, b.egressFile)
			argv = append(argv, egressArgs(b.egress, 3+len(p.Extra)-1)...)
			p.Extra = append(p.Extra, b.forwardFiles...)
		}
		for _, port := range b.publish {
			argv = append(argv, "--publish", strconv.Itoa(int(port)))
		}
		var readyW *os.File
		if first {
			first = false
			var err error
			if readyR, readyW, err = os.Pipe(); err != nil {
				return 0, nil, err
			}
			p.Extra = append(p.Extra, readyW)
			argv = append(argv, "--ready-fd", strconv.Itoa(3+len(p.Extra)-1))
		}
		p.Argv = argv
		pid, done, err := b.Procs.Start(p)
		if readyW != nil {
			readyW.Close()
		}
		return pid, done, err
	}
	b.agent = &supervise.Supervisor{
		Name: "qtsm-agent", Start: start, Kill: b.Procs.Kill,
		Logf: func(f string, a ...any) { b.Con.Warnf(f, a...) },
	}
	if err := b.agent.Go(); err != nil {
		b.agent = nil
		if readyR != nil {
			readyR.Close()
		}
		b.drainAgent()
		return nil, err
	}
	pid := b.agent.Pid()
	wait := func() (string, error) {
		defer readyR.Close()
		readyR.SetReadDeadline(time.Now().Add(b.Opts.AgentWait))
		line, err := bufio.NewReader(readyR).ReadString('\n')
		if line == "ready\n" {
			return fmt.Sprintf("pid %d serving %s", pid, b.Opts.AgentSocket), nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return "", fmt.Errorf("qtsm-agent not ready after %v (it stays supervised; connections wait)", b.Opts.AgentWait)
		}
		return "", fmt.Errorf("qtsm-agent exited before it was ready (it stays supervised; connections wait)")
	}
	return wait, nil
}

func (b *Boot) stopAgent() {
	if b.agent == nil {
		return
	}
	a := b.agent
	b.agent = nil
	t0 := time.Now()
	a.Stop(b.Opts.AgentStop)
	if b.agentReady != nil {
		// Its line is written by now: a stopped agent closed the pipe.
		<-b.agentReady
	}
	b.drainAgent()
	b.Con.Logf("step agent-stop ok in %s", Ms(time.Since(t0)))
	for _, r := range b.release {
		r()
	}
	b.release = nil
}

// drainAgent closes init's end of the agent's output pipe and waits, briefly,
// until everything the agent wrote is on the console.
func (b *Boot) drainAgent() {
	if b.agentOut == nil {
		return
	}
	b.agentOut.Close()
	b.agentOut = nil
	select {
	case <-b.agentDone:
	case <-time.After(time.Second):
	}
}
