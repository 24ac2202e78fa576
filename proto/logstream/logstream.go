package logstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Header starts the stream.
const Header = "qtenclave-log 1\n"

// MaxText is the most text one record carries.
const MaxText = 16 << 10

// maxRecord is the longest record line: the longest source, the mark, the
// text and the newline.
const maxRecord = len("stdout") + 1 + MaxText + 1

// Source says whose line a record carries.
type Source uint8

// Sources.
const (
	Init   Source = iota + 1 // init's own lines (as on the console)
	Agent                    // qtsm-agent's lines (as on the console)
	Stdout                   // the workload's standard output
	Stderr                   // the workload's standard error
)

var names = [...]string{Init: "init", Agent: "agent", Stdout: "stdout", Stderr: "stderr"}

// String is the source's name on the wire.
func (s Source) String() string {
	if s >= Init && int(s) < len(names) {
		return names[s]
	}
	return fmt.Sprintf("Source(%d)", uint8(s))
}

// Valid reports whether s is one of the sources above.
func (s Source) Valid() bool { return s >= Init && int(s) < len(names) }

func parseSource(b []byte) (Source, bool) {
	for s := Init; int(s) < len(names); s++ {
		if string(b) == names[s] {
			return s, true
		}
	}
	return 0, false
}

// Record is one record: a whole line of text, or a piece of one (More).
type Record struct {
	Source Source
	Text   []byte
	// More says the line goes on in the next record of the same source.
	More bool
}

// ErrText is a record text that cannot be sent as it is (a newline, or
// longer than MaxText).
var ErrText = errors.New("logstream: record text holds a newline or exceeds MaxText")

// AppendRecord appends r's wire form to dst.
func AppendRecord(dst []byte, r Record) ([]byte, error) {
	if !r.Source.Valid() {
		return dst, fmt.Errorf("logstream: invalid source %d", r.Source)
	}
	if len(r.Text) > MaxText || bytes.IndexByte(r.Text, '\n') >= 0 {
		return dst, ErrText
	}
	dst = append(dst, names[r.Source]...)
	if r.More {
		dst = append(dst, '+')
	} else {
		dst = append(dst, ' ')
	}
	dst = append(dst, r.Text...)
	return append(dst, '\n'), nil
}

// AppendLine appends the records for one line of src's output (without
// its newline; a line holding newlines is sent as several lines): pieces
// of at most MaxText bytes, every one but the last of a line marked More.
func AppendLine(dst []byte, src Source, line []byte) ([]byte, error) {
	for {
		var part []byte
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			part, line = line[:i], line[i+1:]
		} else {
			part, line = line, nil
		}
		for {
			n := min(len(part), MaxText)
			var err error
			dst, err = AppendRecord(dst, Record{Source: src, Text: part[:n], More: n < len(part)})
			if err != nil {
				return dst, err
			}
			part = part[n:]
			if len(part) == 0 {
				break
			}
		}
		if line == nil {
			return dst, nil
		}
	}
}

// ErrSyntax is a stream that does not follow the wire format.
var ErrSyntax = errors.New("logstream: malformed stream")

// Reader reads a stream: the header, then records.
type Reader struct {
	r      *bufio.Reader
	header bool
}

// NewReader reads a stream from r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, maxRecord)} }

// Next returns the next record. Its Text is valid until the next call. At
// the end of a well-formed stream it returns io.EOF; a stream cut in the
// middle of a record is io.ErrUnexpectedEOF; anything else malformed is
// ErrSyntax.
func (r *Reader) Next() (Record, error) {
	if !r.header {
		line, err := r.line()
		if err != nil {
			switch {
			case errors.Is(err, io.EOF) && len(line) == 0:
				return Record{}, fmt.Errorf("%w: no header", ErrSyntax)
			case errors.Is(err, io.EOF):
				return Record{}, io.ErrUnexpectedEOF
			}
			return Record{}, err
		}
		if string(line) != Header[:len(Header)-1] {
			return Record{}, fmt.Errorf("%w: header %q, want %q", ErrSyntax, line, Header[:len(Header)-1])
		}
		r.header = true
	}
	line, err := r.line()
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return Record{}, io.ErrUnexpectedEOF
		}
		return Record{}, err
	}
	i := bytes.IndexAny(line, " +")
	if i < 0 {
		return Record{}, fmt.Errorf("%w: record %.40q has no mark", ErrSyntax, line)
	}
	src, ok := parseSource(line[:i])
	if !ok {
		return Record{}, fmt.Errorf("%w: unknown source %.20q", ErrSyntax, line[:i])
	}
	return Record{Source: src, Text: line[i+1:], More: line[i] == '+'}, nil
}

// line reads one line without its newline; a line over maxRecord is
// ErrSyntax.
func (r *Reader) line() ([]byte, error) {
	line, err := r.r.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, fmt.Errorf("%w: record longer than %d bytes", ErrSyntax, maxRecord)
	case err != nil && len(line) > 0 && errors.Is(err, io.EOF):
		return line, io.EOF
	case err != nil:
		return nil, err
	}
	return line[:len(line)-1], nil
}
