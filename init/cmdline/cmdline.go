// Package cmdline reads init's knobs from the kernel command line.
//
// The kernel keeps parameters containing a dot for itself (they are module
// parameters), so init reads them from /proc/cmdline:
//
//	qtenclave.heartbeat=CID:PORT   heartbeat target (default 3:9000); "off" disables it
//	qtenclave.status_port=N        vsock port for the exit status (default 9001, 0 = off)
//	qtenclave.log_port=N           vsock port of the parent's log stream (default 0 = off;
//	                               qtenclave run sets 9002, see proto/logstream)
//	qtenclave.control_port=N       vsock port init listens on for the parent's stop request
//	                               (default 0 = none; qtenclave run sets 9003, see proto/control)
//	qtenclave.debug=1              verbose console ("0" or "" turns it off)
//
// Unknown qtenclave.* parameters and malformed values produce a warning and
// leave the default in place; init never fails on its command line.
package cmdline

import (
	"fmt"
	"github.com/qtenclave/enclave/proto/vsockports"
	"strconv"
	"strings"
)

// Defaults: proto/vsockports (docs/protocol.md §5).
const (
	DefaultCID        = vsockports.ParentCID
	DefaultPort       = vsockports.Heartbeat
	DefaultStatusPort = vsockports.Status
)

// Knobs are the settings init takes from the kernel command line.
type Knobs struct {
	Heartbeat     bool   // run the heartbeat
	HeartbeatCID  uint32 // parent CID; the status report goes there too
	HeartbeatPort uint32
	StatusPort    uint32 // 0 = do not report
	LogPort       uint32 // 0 = no log stream; the workload writes to the console
	ControlPort   uint32 // 0 = no stop requests
	Debug         bool
}

// Defaults returns the knobs for an empty command line.
func Defaults() Knobs {
	return Knobs{Heartbeat: true, HeartbeatCID: DefaultCID, HeartbeatPort: DefaultPort, StatusPort: DefaultStatusPort}
}

const prefix = "qtenclave."

// Parse reads the knobs from a kernel command line. Warnings describe
// parameters that were ignored.
func Parse(cmdline string) (k Knobs, warnings []string) {
	k = Defaults()
	for _, p := range Split(cmdline) {
		name, val, _ := strings.Cut(p, "=")
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		var err error
		switch name[len(prefix):] {
		case "heartbeat":
			err = k.setHeartbeat(val)
		case "status_port":
			var n uint32
			if n, err = port(val); err == nil {
				k.StatusPort = n
			}
		case "log_port":
			var n uint32
			if n, err = port(val); err == nil {
				k.LogPort = n
			}
		case "control_port":
			var n uint32
			if n, err = port(val); err == nil {
				k.ControlPort = n
			}
		case "debug":
			switch val {
			case "1", "on", "true", "yes":
				k.Debug = true
			case "0", "off", "false", "no", "":
				k.Debug = false
			default:
				err = fmt.Errorf("want 1 or 0")
			}
		default:
			err = fmt.Errorf("unknown parameter")
		}
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("ignoring kernel parameter %q: %v", p, err))
		}
	}
	return k, warnings
}

func (k *Knobs) setHeartbeat(val string) error {
	if val == "off" || val == "0" {
		k.Heartbeat = false
		return nil
	}
	c, p, ok := strings.Cut(val, ":")
	if !ok {
		return fmt.Errorf("want CID:PORT or off")
	}
	cid, err := strconv.ParseUint(c, 10, 32)
	if err != nil {
		return fmt.Errorf("bad CID %q", c)
	}
	n, err := port(p)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("port 0")
	}
	k.Heartbeat, k.HeartbeatCID, k.HeartbeatPort = true, uint32(cid), n
	return nil
}

func port(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return uint32(n), nil
}

// Split splits a kernel command line into parameters the way the kernel
// does: on spaces, with double quotes grouping (and being removed).
func Split(s string) []string {
	var out []string
	var cur strings.Builder
	in, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			quoted = !quoted
			in = true
		case !quoted && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}
