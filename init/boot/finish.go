package boot

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"time"

	"github.com/qtenclave/enclave/init/report"
	"github.com/qtenclave/enclave/proto/status"
)

func (b *Boot) writeHosts(hostname string) (string, error) {
	forwards := b.hostsLines()
	if b.exists("/etc/hosts") {
		if forwards != "" {
			if err := b.M.AppendFile("/etc/hosts", []byte(forwards)); err != nil {
				return "", err
			}
			return "the image's /etc/hosts, the egress forwards appended", nil
		}
		return "", skipf("/etc/hosts exists in the image")
	}
	if err := b.M.MkdirAll("/etc", 0o755); err != nil {
		return "", err
	}
	data := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + hostname + "\n" + forwards
	if err := b.M.WriteFileExcl("/etc/hosts", []byte(data), 0o644); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", skipf("/etc/hosts exists in the image")
		}
		return "", err
	}
	return "/etc/hosts written", nil
}

// Finish reports st and reboots: sync, the console status line, the
// status to the parent when a port is configured, then reboot(RB_AUTOBOOT).
// It returns only if the reboot fails.
func (b *Boot) Finish(st status.Status) {
	defer func() {
		if v := recover(); v != nil {
			b.Con.Errorf("panic while finishing: %v", v)
			b.M.Sync()
			b.M.Reboot()
		}
	}()
	b.M.Sync()
	b.Con.Line(st.Line())
	b.closeLogs()
	if port := b.knobs.StatusPort; port != 0 && b.Dialer != nil {
		t0 := time.Now()
		err := report.Report(context.Background(), b.Dialer, b.knobs.HeartbeatCID, port, st, b.Opts.ReportWait)
		if err != nil {
			b.Con.Logf("step report failed in %s: %v", Ms(time.Since(t0)), err)
		} else {
			b.Con.Logf("step report ok in %s: %d:%d %q", Ms(time.Since(t0)), b.knobs.HeartbeatCID, port, strings.TrimSpace(st.Wire()))
		}
	}
	b.Con.Logf("rebooting (RB_AUTOBOOT)")
	b.M.Sync()
	if err := b.M.Reboot(); err != nil {
		b.Con.Errorf("reboot: %v", err)
	}
}
