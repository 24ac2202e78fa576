package control

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestStopLine(t *testing.T) {
	for _, g := range []time.Duration{0, 10 * time.Second, 1500 * time.Millisecond} {
		s, err := ParseStop(Stop{Grace: g}.Line())
		if err != nil || s.Grace != g {
			t.Errorf("ParseStop(Line(%v)) = %v, %v", g, s.Grace, err)
		}
	}
	for _, bad := range []string{"", "STOP\n", "STOP 10", "STOP -1\n", "STOP 01\n", "STOP 1 2\n", "stop 1\n", "STOP 99999999999\n"} {
		if _, err := ParseStop(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseStop(%q) = %v, want ErrSyntax", bad, err)
		}
	}
	if err := ParseAnswer(OK); err != nil {
		t.Errorf("ParseAnswer(OK) = %v", err)
	}
	if err := ParseAnswer(Refused("no\nworkload")); err == nil || err.Error() != "control: stop refused: no workload" {
		t.Errorf("ParseAnswer(Refused) = %v", err)
	}
	if err := ParseAnswer("maybe\n"); !errors.Is(err, ErrSyntax) {
		t.Errorf("ParseAnswer(maybe) = %v", err)
	}
}

func FuzzParseStop(f *testing.F) {
	f.Add("STOP 10000\n")
	f.Fuzz(func(t *testing.T, line string) {
		s, err := ParseStop(line)
		if err != nil {
			return
		}
		if again, err := ParseStop(s.Line()); err != nil || again != s {
			t.Fatalf("ParseStop(Line(ParseStop(%q))) = %v, %v", line, again, err)
		}
	})
}

// TestRequest: the parent's side of the exchange, against a stand-in for
// init that reads one request and answers.
func TestRequest(t *testing.T) {
	for _, tc := range []struct {
		answer string
		ok     bool
	}{{OK, true}, {Refused("no workload running"), false}, {"", false}} {
		a, b := net.Pipe()
		got := make(chan string, 1)
		go func() {
			defer b.Close()
			line, _ := bufio.NewReader(b).ReadString('\n')
			got <- line
			io.WriteString(b, tc.answer)
		}()
		err := Request(a, 1500*time.Millisecond)
		a.Close()
		if (err == nil) != tc.ok {
			t.Errorf("Request with answer %q = %v, want ok %v", tc.answer, err, tc.ok)
		}
		if line := <-got; line != "STOP 1500\n" {
			t.Errorf("init read %q, want STOP 1500", line)
		}
	}
}
