package splice

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"testing"
	"time"
)

// pair returns the two ends of a loopback TCP connection.
func pair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

// TestJoin sends 8 MiB each way through a joined pair, with half-closes,
// and checks every byte arrives.
func TestJoin(t *testing.T) {
	client, in := pair(t)
	out, server := pair(t)
	done := make(chan [2]int64, 1)
	go func() { a, b := Join(in, out, time.Minute); done <- [2]int64{a, b} }()

	up := make([]byte, 8<<20)
	down := make([]byte, 8<<20)
	rand.Read(up)
	rand.Read(down)
	errs := make(chan error, 2)
	go func() { // the server echoes nothing: it reads all, then writes its own
		got, err := io.ReadAll(server)
		if err == nil && !bytes.Equal(got, up) {
			err = io.ErrUnexpectedEOF
		}
		if err == nil {
			_, err = server.Write(down)
		}
		server.Close()
		errs <- err
	}()
	go func() {
		_, err := client.Write(up)
		client.(*net.TCPConn).CloseWrite()
		errs <- err
	}()
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if sha256.Sum256(got) != sha256.Sum256(down) {
		t.Errorf("downstream bytes differ")
	}
	n := <-done
	if n[0] != int64(len(up)) || n[1] != int64(len(down)) {
		t.Errorf("Join counted %v, want [%d %d]", n, len(up), len(down))
	}
}

// TestJoinIdle closes a joined pair on which nothing moves.
func TestJoinIdle(t *testing.T) {
	client, in := pair(t)
	out, server := pair(t)
	defer client.Close()
	defer server.Close()
	start := time.Now()
	done := make(chan struct{})
	go func() { Join(in, out, 100*time.Millisecond); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Join did not end an idle pair")
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("idle pair closed after %v, before the idle time", d)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Errorf("client still open after the idle close")
	}
}

// TestGroupWait: Wait returns once the joins in progress have finished,
// and reports those still running when its context ends first.
func TestGroupWait(t *testing.T) {
	var g Group
	if n := g.Wait(context.Background()); n != 0 {
		t.Errorf("Wait on an idle group = %d", n)
	}
	client, in := pair(t)
	out, server := pair(t)
	go g.Join(in, out, 0)
	for g.Active() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if n := g.Wait(ctx); n != 1 {
		t.Errorf("Wait with a join open = %d, want 1", n)
	}
	client.Close()
	server.Close()
	if n := g.Wait(context.Background()); n != 0 {
		t.Errorf("Wait after both ends closed = %d, want 0", n)
	}
}
