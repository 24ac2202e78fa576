// Package control is the parent's request to stop the enclave gracefully,
// docker stop's semantics: init forwards SIGTERM to the workload (its
// whole process group), waits a grace period, then sends SIGKILL; the
// workload's real exit status is reported as usual (proto/status) and the
// enclave powers off. Only if the enclave does not answer does the parent
// end it the hard way.
//
// Wire format: init listens on the control port (vsockports.Control unless
// the kernel command line says otherwise: qtenclave.control_port=N; off
// unless set). The parent connects and sends one line,
//
//	STOP <grace-ms>\n      grace-ms: decimal, 0 = init's own (the manifest's stop_timeout)
//
// and init answers one line, "OK\n", once SIGTERM is on its way, or
// "ERR <reason>\n", then closes. It depends on the standard library only.
package control

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// DefaultGrace is the grace period when neither the request nor the
// manifest gives one (docker stop's).
const DefaultGrace = 10 * time.Second

// MaxLine bounds a request or answer line.
const MaxLine = 64

// ErrSyntax is a line that is not a request or answer.
var ErrSyntax = errors.New("control: malformed line")

// Stop is the stop request; Grace 0 means init's own.
type Stop struct{ Grace time.Duration }

// Line is the request on the wire.
func (s Stop) Line() string { return fmt.Sprintf("STOP %d\n", s.Grace.Milliseconds()) }

// ParseStop parses a request line (with its newline).
func ParseStop(line string) (Stop, error) {
	rest, ok := strings.CutPrefix(line, "STOP ")
	if !ok || !strings.HasSuffix(rest, "\n") {
		return Stop{}, fmt.Errorf("%w: %.20q", ErrSyntax, line)
	}
	rest = strings.TrimSuffix(rest, "\n")
	ms, err := strconv.ParseUint(rest, 10, 31)
	if err != nil || strconv.FormatUint(ms, 10) != rest {
		return Stop{}, fmt.Errorf("%w: grace %.20q", ErrSyntax, rest)
	}
	return Stop{Grace: time.Duration(ms) * time.Millisecond}, nil
}

// OK is the answer to an accepted request.
const OK = "OK\n"

// Refused is the answer to a refused one.
func Refused(reason string) string {
	return "ERR " + strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, reason) + "\n"
}

// ParseAnswer returns nil for OK, the reason for ERR.
func ParseAnswer(line string) error {
	switch {
	case line == OK:
		return nil
	case strings.HasPrefix(line, "ERR ") && strings.HasSuffix(line, "\n"):
		return fmt.Errorf("control: stop refused: %s", strings.TrimSuffix(line[4:], "\n"))
	}
	return fmt.Errorf("%w: answer %.20q", ErrSyntax, line)
}

// Request sends a stop request on c (a connection to the enclave's control
// port) and reads init's answer: nil once SIGTERM is on its way.
func Request(c io.ReadWriter, grace time.Duration) error {
	if _, err := io.WriteString(c, Stop{Grace: grace}.Line()); err != nil {
		return fmt.Errorf("control: send stop: %w", err)
	}
	line, err := bufio.NewReaderSize(io.LimitReader(c, MaxLine), MaxLine).ReadString('\n')
	if err != nil {
		return fmt.Errorf("control: no answer: %w", err)
	}
	return ParseAnswer(line)
}
