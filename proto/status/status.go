// Package status is how the enclave's end is told: the exit status codes,
// the console status line and the one-line message init sends the parent
// over vsock. init writes them (init/report sends the message); the parent
// parses the message. It depends on the standard library only.
//
// Console line (always exactly these three fields, in this order):
//
//	qtenclave-exit: code=<0..255> signal=<0|n> reason=<word>
//
// Wire line to the parent (vsock CID 3, port 9001 by default):
//
//	EXIT <code>\n     the workload exited, or init failed (code >= 125)
//	SIGNAL <n>\n      the workload was killed by signal n (code 128+n)
package status

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Exit codes init reports when the workload did not run to its own end.
// They follow Docker's convention (docker run: 125 the runtime failed, 126
// the command cannot be invoked, 127 the command was not found).
const (
	CodeInitFailed = 125 // launch configuration, user, working dir, mounts, heartbeat, init panic
	CodeCannotExec = 126 // the command exists but cannot be executed
	CodeNotFound   = 127 // the command was not found
)

// Reason says why the enclave ends; it is one word on the status line.
type Reason string

// Reasons.
const (
	Exited    Reason = "exited"    // the workload exited by itself (code is its status)
	Signaled  Reason = "signaled"  // the workload was killed by a signal (code 128+n)
	Config    Reason = "config"    // launch configuration missing or malformed, or empty command
	User      Reason = "user"      // unknown user or group
	Workdir   Reason = "workdir"   // working directory unusable
	NotFound  Reason = "notfound"  // command not found (127)
	NoExec    Reason = "noexec"    // command not executable (126)
	Setup     Reason = "setup"     // switch root or a required mount failed
	Heartbeat Reason = "heartbeat" // the parent never answered the heartbeat
	Internal  Reason = "internal"  // init itself failed (panic, unexpected error)
)

var reasons = map[Reason]int{
	Exited: -1, Signaled: -1,
	Config: CodeInitFailed, User: CodeInitFailed, Workdir: CodeInitFailed, Setup: CodeInitFailed,
	Heartbeat: CodeInitFailed, Internal: CodeInitFailed,
	NotFound: CodeNotFound, NoExec: CodeCannotExec,
}

// Status is how the enclave ends.
type Status struct {
	Code   int    // 0..255
	Signal int    // the signal that killed the workload, 0 if none
	Reason Reason // why
}

// Exit is the status of a workload that exited with code.
func Exit(code int) Status { return Status{Code: code & 0xff, Reason: Exited} }

// Killed is the status of a workload killed by signal sig.
func Killed(sig int) Status { return Status{Code: (128 + sig) & 0xff, Signal: sig, Reason: Signaled} }

// Failed is the status for init failure reason r (r's fixed code).
func Failed(r Reason) Status {
	c, ok := reasons[r]
	if !ok || c < 0 {
		c = CodeInitFailed
	}
	return Status{Code: c, Reason: r}
}

// Line is the console status line, without newline.
func (s Status) Line() string {
	return fmt.Sprintf("qtenclave-exit: code=%d signal=%d reason=%s", s.Code, s.Signal, s.Reason)
}

// Wire is the message for the parent, with its newline.
func (s Status) Wire() string {
	if s.Signal > 0 {
		return fmt.Sprintf("SIGNAL %d\n", s.Signal)
	}
	return fmt.Sprintf("EXIT %d\n", s.Code)
}

// LinePrefix starts the console status line.
const LinePrefix = "qtenclave-exit: "

// ErrSyntax is returned for a line that is not a status line.
var ErrSyntax = errors.New("status: not a status line")

// ParseLine parses a console status line (as written by Line, with or
// without a trailing newline or carriage return).
func ParseLine(line string) (Status, error) {
	line = strings.TrimRight(line, "\r\n")
	rest, ok := strings.CutPrefix(line, LinePrefix)
	if !ok {
		return Status{}, ErrSyntax
	}
	f := strings.Split(rest, " ")
	if len(f) != 3 {
		return Status{}, fmt.Errorf("%w: %d fields, want 3", ErrSyntax, len(f))
	}
	var s Status
	var err error
	if s.Code, err = field(f[0], "code", 255); err != nil {
		return Status{}, err
	}
	if s.Signal, err = field(f[1], "signal", 127); err != nil {
		return Status{}, err
	}
	r, ok := strings.CutPrefix(f[2], "reason=")
	if !ok {
		return Status{}, fmt.Errorf("%w: field %q, want reason=", ErrSyntax, f[2])
	}
	if _, known := reasons[Reason(r)]; !known {
		return Status{}, fmt.Errorf("%w: unknown reason %q", ErrSyntax, r)
	}
	s.Reason = Reason(r)
	return s, nil
}

func field(f, name string, max int) (int, error) {
	v, ok := strings.CutPrefix(f, name+"=")
	if !ok {
		return 0, fmt.Errorf("%w: field %q, want %s=", ErrSyntax, f, name)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > max || strconv.Itoa(n) != v {
		return 0, fmt.Errorf("%w: %s=%q", ErrSyntax, name, v)
	}
	return n, nil
}

// ParseWire parses the parent message ("EXIT n\n" or "SIGNAL n\n") and
// returns the status the parent should act on (reason Exited or Signaled).
func ParseWire(msg string) (Status, error) {
	msg, ok := strings.CutSuffix(msg, "\n")
	if !ok {
		return Status{}, fmt.Errorf("%w: no newline", ErrSyntax)
	}
	kind, num, ok := strings.Cut(msg, " ")
	if !ok {
		return Status{}, fmt.Errorf("%w: %q", ErrSyntax, msg)
	}
	switch kind {
	case "EXIT":
		n, err := field("n="+num, "n", 255)
		if err != nil {
			return Status{}, err
		}
		return Exit(n), nil
	case "SIGNAL":
		n, err := field("n="+num, "n", 127)
		if err != nil || n == 0 {
			return Status{}, fmt.Errorf("%w: signal %q", ErrSyntax, num)
		}
		return Killed(n), nil
	}
	return Status{}, fmt.Errorf("%w: %q", ErrSyntax, msg)
}

// MaxWire bounds the parent message: ReadWire reads no more.
const MaxWire = 64

// ReadWire reads one parent message from r (at most MaxWire bytes, up to
// its newline) and parses it.
func ReadWire(r io.Reader) (Status, error) {
	var b [MaxWire]byte
	for n := 0; n < MaxWire; n++ {
		if _, err := io.ReadFull(r, b[n:n+1]); err != nil {
			return Status{}, fmt.Errorf("exit status after %q: %w", b[:n], err)
		}
		if b[n] == '\n' {
			return ParseWire(string(b[:n+1]))
		}
	}
	return Status{}, fmt.Errorf("%w: no newline in %d bytes", ErrSyntax, MaxWire)
}
