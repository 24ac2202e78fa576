package report

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/qtenclave/enclave/init/vsock"
	"github.com/qtenclave/enclave/proto/status"
)

// pipeDialer serves each Dial with one end of a net.Pipe and hands the other
// end to the test.
type pipeDialer struct {
	got  chan net.Conn
	addr chan [2]uint32
	err  error
}

func (p *pipeDialer) Dial(ctx context.Context, cid, port uint32) (vsock.Conn, error) {
	if p.err != nil {
		return nil, p.err
	}
	a, b := net.Pipe()
	p.addr <- [2]uint32{cid, port}
	p.got <- b
	return a, nil
}

func TestReport(t *testing.T) {
	d := &pipeDialer{got: make(chan net.Conn, 1), addr: make(chan [2]uint32, 1)}
	done := make(chan error, 1)
	go func() { done <- Report(context.Background(), d, 3, 9001, status.Killed(15), time.Second) }()
	peer := <-d.got
	if a := <-d.addr; a != [2]uint32{3, 9001} {
		t.Errorf("dialled %v, want 3:9001", a)
	}
	line, err := bufio.NewReader(peer).ReadString('\n')
	if err != nil || line != "SIGNAL 15\n" {
		t.Errorf("parent read %q, %v, want %q", line, err, "SIGNAL 15\n")
	}
	// Report waits for the parent's acknowledgement: its close.
	select {
	case err := <-done:
		t.Fatalf("Report returned (%v) before the parent closed the connection", err)
	case <-time.After(100 * time.Millisecond):
	}
	peer.Close()
	if err := <-done; err != nil {
		t.Errorf("Report = %v", err)
	}
}

func TestReportNotAcknowledged(t *testing.T) {
	// A parent that reads the line but never closes: Report gives up in
	// time and says the line was sent but not acknowledged.
	d := &pipeDialer{got: make(chan net.Conn, 1), addr: make(chan [2]uint32, 1)}
	go func() {
		peer := <-d.got
		bufio.NewReader(peer).ReadString('\n')
	}()
	start := time.Now()
	err := Report(context.Background(), d, 3, 9001, status.Exit(0), 200*time.Millisecond)
	if !errors.Is(err, ErrNotAcknowledged) {
		t.Errorf("Report to a parent that never closes = %v, want ErrNotAcknowledged", err)
	}
	if el := time.Since(start); el < 150*time.Millisecond || el > 2*time.Second {
		t.Errorf("Report took %v, want about 200ms", el)
	}
}

func TestReportBounded(t *testing.T) {
	// A parent that accepts but never reads: Report must give up in time.
	d := &pipeDialer{got: make(chan net.Conn, 1), addr: make(chan [2]uint32, 1)}
	start := time.Now()
	err := Report(context.Background(), d, 3, 9001, status.Exit(1), 100*time.Millisecond)
	if err == nil {
		t.Fatal("Report to a stuck parent = nil, want timeout error")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Report took %v, want about 100ms", el)
	}
	d2 := &pipeDialer{err: errors.New("connection reset")}
	if err := Report(context.Background(), d2, 3, 9001, status.Exit(1), 0); err == nil || !strings.Contains(err.Error(), "3:9001") {
		t.Errorf("Report with failing dial = %v, want error naming 3:9001", err)
	}
}
