package status

import (
	"errors"
	"strings"
	"testing"
)

func TestLineAndWire(t *testing.T) {
	for _, tc := range []struct {
		s          Status
		line, wire string
	}{
		{Exit(0), "qtenclave-exit: code=0 signal=0 reason=exited", "EXIT 0\n"},
		{Exit(3), "qtenclave-exit: code=3 signal=0 reason=exited", "EXIT 3\n"},
		{Exit(256 + 7), "qtenclave-exit: code=7 signal=0 reason=exited", "EXIT 7\n"},
		{Killed(9), "qtenclave-exit: code=137 signal=9 reason=signaled", "SIGNAL 9\n"},
		{Killed(15), "qtenclave-exit: code=143 signal=15 reason=signaled", "SIGNAL 15\n"},
		{Failed(Config), "qtenclave-exit: code=125 signal=0 reason=config", "EXIT 125\n"},
		{Failed(User), "qtenclave-exit: code=125 signal=0 reason=user", "EXIT 125\n"},
		{Failed(Workdir), "qtenclave-exit: code=125 signal=0 reason=workdir", "EXIT 125\n"},
		{Failed(NotFound), "qtenclave-exit: code=127 signal=0 reason=notfound", "EXIT 127\n"},
		{Failed(NoExec), "qtenclave-exit: code=126 signal=0 reason=noexec", "EXIT 126\n"},
		{Failed(Internal), "qtenclave-exit: code=125 signal=0 reason=internal", "EXIT 125\n"},
		{Failed(Exited), "qtenclave-exit: code=125 signal=0 reason=exited", "EXIT 125\n"},
	} {
		if got := tc.s.Line(); got != tc.line {
			t.Errorf("%+v.Line() = %q, want %q", tc.s, got, tc.line)
		}
		if got := tc.s.Wire(); got != tc.wire {
			t.Errorf("%+v.Wire() = %q, want %q", tc.s, got, tc.wire)
		}
		back, err := ParseLine(tc.line + "\r\n")
		if err != nil || back != tc.s {
			t.Errorf("ParseLine(%q) = %+v, %v, want %+v", tc.line, back, err, tc.s)
		}
		w, err := ParseWire(tc.wire)
		if err != nil || w.Code != tc.s.Code || w.Signal != tc.s.Signal {
			t.Errorf("ParseWire(%q) = %+v, %v, want code %d signal %d", tc.wire, w, err, tc.s.Code, tc.s.Signal)
		}
	}
}

func TestParseLineErrors(t *testing.T) {
	for _, in := range []string{
		"",
		"init: ready",
		"qtenclave-exit: code=0 signal=0",
		"qtenclave-exit: code=0 signal=0 reason=exited extra",
		"qtenclave-exit: code=256 signal=0 reason=exited",
		"qtenclave-exit: code=-1 signal=0 reason=exited",
		"qtenclave-exit: code=01 signal=0 reason=exited",
		"qtenclave-exit: code=1 signal=x reason=exited",
		"qtenclave-exit: code=1 signal=0 reason=bogus",
		"qtenclave-exit: signal=0 code=1 reason=exited",
		"qtenclave-exit:  code=1 signal=0 reason=exited",
	} {
		if s, err := ParseLine(in); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseLine(%q) = %+v, %v, want ErrSyntax", in, s, err)
		}
	}
}

func TestParseWireErrors(t *testing.T) {
	for _, in := range []string{"", "EXIT 3", "EXIT 3\n\n", "EXIT\n", "EXIT 256\n", "EXIT -1\n", "SIGNAL 0\n", "SIGNAL x\n", "exit 3\n", "EXIT  3\n"} {
		if s, err := ParseWire(in); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseWire(%q) = %+v, %v, want ErrSyntax", in, s, err)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add("qtenclave-exit: code=3 signal=0 reason=exited")
	f.Add("qtenclave-exit: code=143 signal=15 reason=signaled\n")
	f.Add("qtenclave-exit: code=125 signal=0 reason=config")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseLine(in)
		if err != nil {
			return
		}
		// A parsed line round-trips exactly.
		if got := s.Line(); got != strings.TrimRight(in, "\r\n") {
			t.Errorf("ParseLine(%q).Line() = %q", in, got)
		}
	})
}

func FuzzParseWire(f *testing.F) {
	f.Add("EXIT 0\n")
	f.Add("SIGNAL 9\n")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseWire(in)
		if err != nil {
			return
		}
		if got := s.Wire(); got != in {
			t.Errorf("ParseWire(%q).Wire() = %q", in, got)
		}
	})
}

func TestReadWire(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Status
		ok   bool
	}{
		{"EXIT 3\nmore", Exit(3), true},
		{"SIGNAL 9\n", Killed(9), true},
		{"EXIT 3", Status{}, false},
		{"EXIT 300\n", Status{}, false},
		{strings.Repeat("E", MaxWire+10) + "\n", Status{}, false},
		{"", Status{}, false},
	} {
		got, err := ReadWire(strings.NewReader(c.in))
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("ReadWire(%q) = %+v, %v; want %+v, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}
