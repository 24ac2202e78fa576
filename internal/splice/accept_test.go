package splice

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// scripted is a listener whose Accept returns errs in turn, then a conn.
type scripted struct {
	net.Listener
	errs []error
	conn net.Conn
}

func (s *scripted) Accept() (net.Conn, error) {
	if len(s.errs) > 0 {
		err := s.errs[0]
		s.errs = s.errs[1:]
		return nil, err
	}
	return s.conn, nil
}

func TestAccept(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	emfile := &net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	for _, tc := range []struct {
		name     string
		errs     []error
		wantErr  error
		wantWait []time.Duration
	}{
		{"at once", nil, nil, nil},
		{"descriptors run out twice", []error{emfile, emfile}, nil, []time.Duration{5 * time.Millisecond, 10 * time.Millisecond}},
		{"aborted", []error{syscall.ECONNABORTED}, nil, []time.Duration{5 * time.Millisecond}},
		{"closed", []error{net.ErrClosed}, net.ErrClosed, nil},
		{"other", []error{syscall.EINVAL}, syscall.EINVAL, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var waits []time.Duration
			c, err := Accept(&scripted{errs: tc.errs, conn: a}, func(_ error, d time.Duration) { waits = append(waits, d) })
			if !errors.Is(err, tc.wantErr) || (err == nil) != (c == a) {
				t.Errorf("Accept() = %v, %v; want the conn or %v", c, err, tc.wantErr)
			}
			if len(waits) != len(tc.wantWait) {
				t.Fatalf("waits %v, want %v", waits, tc.wantWait)
			}
			for i := range waits {
				if waits[i] != tc.wantWait[i] {
					t.Errorf("waits %v, want %v", waits, tc.wantWait)
				}
			}
		})
	}
}
