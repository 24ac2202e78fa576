package ingress

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestPublisher: a connection made before the workload listens waits for
// it; bytes go both ways; with nobody ever listening the connection is
// closed after Wait.
func TestPublisher(t *testing.T) {
	// A free port, not listened on yet.
	tmp := listen(t)
	port := tmp.Addr().(*net.TCPAddr).Port
	tmp.Close()

	front := listen(t) // stands for the vsock listener
	p := &Publisher{Port: port, Wait: 5 * time.Second}
	go p.Serve(front)

	c, err := net.Dial("tcp", front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(200 * time.Millisecond) // the workload starts late
	srv, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		s, err := srv.Accept()
		if err != nil {
			return
		}
		io.Copy(s, s)
		s.Close()
	}()
	data := make([]byte, 1<<20)
	rand.Read(data)
	go func() { c.Write(data); c.(*net.TCPConn).CloseWrite() }()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("echo through the publisher: %d bytes, %v", len(got), err)
	}

	// Nobody ever listens: the connection is closed after Wait.
	front2 := listen(t)
	p2 := &Publisher{Port: port, Wait: 300 * time.Millisecond, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return nil, errors.New("connection refused")
	}}
	go p2.Serve(front2)
	c2, err := net.Dial("tcp", front2.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if n, err := c2.Read(make([]byte, 1)); err != io.EOF || time.Since(start) < 250*time.Millisecond {
		t.Errorf("with no server: read %d, %v after %v; want EOF after the 300ms wait", n, err, time.Since(start))
	}
}
