package boot

import (
	"context"
	"fmt"
	"time"

	"github.com/qtenclave/enclave/proto/logstream"
)

// connectLogs connects the log stream when the kernel command line names
// its port; otherwise the stream is off and the workload writes to the
// console.
func (b *Boot) connectLogs(ctx context.Context) (string, error) {
	if b.Logs == nil {
		return "", skipf("no log stream in this init")
	}
	port := b.knobs.LogPort
	if port == 0 {
		b.Logs.Disable()
		return "", skipf("off (no qtenclave.log_port): the workload writes to the console")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := b.Logs.Connect(ctx, b.Dialer, b.knobs.HeartbeatCID, port); err != nil {
		return "the workload writes to the console", err
	}
	return fmt.Sprintf("%d:%d", b.knobs.HeartbeatCID, port), nil
}

// workloadOutput gives p pipes into the log stream when it is connected,
// and says where the workload's output goes.
func (b *Boot) workloadOutput(p *Proc) string {
	if b.Logs == nil || !b.Logs.Connected() {
		return "to the console"
	}
	out, err := b.Logs.Pipe(logstream.Stdout)
	if err != nil {
		b.Con.Warnf("%v: the workload writes to the console", err)
		return "to the console"
	}
	errw, err := b.Logs.Pipe(logstream.Stderr)
	if err != nil {
		out.Close()
		b.Con.Warnf("%v: the workload writes to the console", err)
		return "to the console"
	}
	p.Stdout, p.Stderr = out, errw
	return "to the log stream"
}

// closeLogs ends the log stream: everything logged so far is at the parent
// once it returns (or its bound has passed).
func (b *Boot) closeLogs() {
	if b.Logs == nil || !b.Logs.Connected() {
		if b.Logs != nil {
			b.Logs.Disable()
		}
		return
	}
	t0 := time.Now()
	if err := b.Logs.Close(b.Opts.LogClose); err != nil {
		b.Con.Logf("step log-close failed in %s: %v", Ms(time.Since(t0)), err)
		return
	}
	b.Con.Logf("step log-close ok in %s", Ms(time.Since(t0)))
}
