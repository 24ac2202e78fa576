// Package tunnel is the handshake that opens an egress tunnel: the
// enclave's companion connects to the parent (vsock port
// vsockports.Egress), names the destination, and the parent answers
// whether it dialled it. After a yes, the connection carries the
// destination's bytes both ways, untouched (TLS stays end to end).
//
//	enclave → parent   "qtenclave-tunnel 1 " DESTINATION "\n"
//	parent → enclave   "OK\n"
//	                or "ERR " CODE " " TEXT "\n"
//
// DESTINATION is host:port as egress.ParseDestination reads it; CODE is one
// of the Code values; TEXT is printable ASCII (the rule that refused, or
// the dial error). Each line is at most MaxLine bytes, its newline
// included; both sides read byte by byte up to the newline, so nothing of
// the stream after it is consumed. Stdlib and proto only: the companion
// and the parent import it.
package tunnel

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/qtenclave/enclave/proto/egress"
)

// Magic starts every request: the protocol and its version.
const Magic = "qtenclave-tunnel 1 "

// MaxLine is the longest handshake line, newline included.
const MaxLine = 512

// Code says why the parent refused a tunnel.
type Code string

// Refusal codes.
const (
	Denied     Code = "denied"      // a policy refused the destination
	NoAddress  Code = "no-address"  // the name did not resolve
	Unreached  Code = "unreachable" // every address refused or timed out
	BadRequest Code = "bad-request" // the request line was malformed
)

var codes = map[Code]bool{Denied: true, NoAddress: true, Unreached: true, BadRequest: true}

// ErrMalformed wraps every handshake syntax error.
var ErrMalformed = errors.New("tunnel handshake")

// Refusal is the parent's no.
type Refusal struct {
	Code Code
	Text string
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("parent refused the tunnel: %s: %s", r.Code, r.Text)
}

// readLine reads one line of at most MaxLine bytes, byte by byte, and
// returns it without its newline.
func readLine(r io.Reader) (string, error) {
	var b [MaxLine]byte
	for n := 0; n < MaxLine; n++ {
		if _, err := io.ReadFull(r, b[n:n+1]); err != nil {
			if n > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		if b[n] == '\n' {
			return string(b[:n]), nil
		}
	}
	return "", fmt.Errorf("%w: line longer than %d bytes", ErrMalformed, MaxLine)
}

// WriteRequest asks for a tunnel to d.
func WriteRequest(w io.Writer, d egress.Destination) error {
	_, err := io.WriteString(w, Magic+d.String()+"\n")
	return err
}

// ReadRequest reads a request and parses its destination.
func ReadRequest(r io.Reader) (egress.Destination, error) {
	line, err := readLine(r)
	if err != nil {
		return egress.Destination{}, err
	}
	rest, ok := strings.CutPrefix(line, Magic)
	if !ok {
		return egress.Destination{}, fmt.Errorf("%w: request %q does not start with %q", ErrMalformed, clip(line), Magic)
	}
	d, err := egress.ParseDestination(rest)
	if err != nil {
		return egress.Destination{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return d, nil
}

// WriteOK says yes.
func WriteOK(w io.Writer) error {
	_, err := io.WriteString(w, "OK\n")
	return err
}

// WriteRefusal says no; text is cut to fit and made printable.
func WriteRefusal(w io.Writer, code Code, text string) error {
	line := "ERR " + string(code) + " " + printable(text)
	if len(line) > MaxLine-1 {
		line = line[:MaxLine-1]
	}
	_, err := io.WriteString(w, line+"\n")
	return err
}

// ReadAnswer reads the parent's answer: nil for OK, *Refusal for a no.
func ReadAnswer(r io.Reader) error {
	line, err := readLine(r)
	if err != nil {
		return err
	}
	if line == "OK" {
		return nil
	}
	rest, ok := strings.CutPrefix(line, "ERR ")
	if !ok {
		return fmt.Errorf("%w: answer %q is neither OK nor ERR", ErrMalformed, clip(line))
	}
	code, text, _ := strings.Cut(rest, " ")
	if !codes[Code(code)] || printable(text) != text {
		return fmt.Errorf("%w: answer %q", ErrMalformed, clip(line))
	}
	return &Refusal{Code: Code(code), Text: text}
}

// printable replaces bytes outside printable ASCII with '?'.
func printable(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
