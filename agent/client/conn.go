package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The client speaks HTTP/1.1 itself over a small pool of persistent
// connections, one request at a time per connection, on the caller's
// goroutine: no connection goroutines and no hand-offs, which keeps the
// per-call overhead of the agent small next to the device's own time.

const maxIdle = 8

type pconn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

type pool struct {
	socket string
	dialer net.Dialer

	mu   sync.Mutex
	idle []*pconn
}

func (p *pool) get(ctx context.Context) (pc *pconn, reused bool, err error) {
	for {
		p.mu.Lock()
		if n := len(p.idle); n > 0 {
			pc = p.idle[n-1]
			p.idle = p.idle[:n-1]
		}
		p.mu.Unlock()
		if pc == nil {
			break
		}
		if alive(pc.c) {
			return pc, true, nil
		}
		pc.c.Close()
		pc = nil
	}
	c, err := p.dialer.DialContext(ctx, "unix", p.socket)
	if err != nil {
		return nil, false, err
	}
	return &pconn{c: c, br: bufio.NewReaderSize(c, 8<<10), bw: bufio.NewWriterSize(c, 4<<10)}, false, nil
}

func (p *pool) put(pc *pconn) {
	p.mu.Lock()
	if len(p.idle) < maxIdle {
		p.idle = append(p.idle, pc)
		pc = nil
	}
	p.mu.Unlock()
	if pc != nil {
		pc.c.Close()
	}
}

func (p *pool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, pc := range idle {
		pc.c.Close()
	}
}

// alive reports whether an idle connection is still open with nothing
// unread: a peek that would block means the agent has not closed it.
func alive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var buf [1]byte
	raw.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		_ = n
		ok = errors.Is(err, unix.EAGAIN) // EOF (n == 0) or unread data: not reusable
		return true                      // never wait
	})
	return ok
}

// answer is one HTTP response, read whole.
type answer struct {
	status int
	media  string
	body   []byte
}

var aLongTimeAgo = time.Unix(1, 0)

// exchange sends one request and reads its answer. A request that failed
// on a reused connection before any answer arrived is retried once on a
// new connection when it is safe: GET, or nothing was written.
func (p *pool) exchange(ctx context.Context, method, path, contentType, accept string, body []byte) (*answer, error) {
	for attempt := 0; ; attempt++ {
		pc, reused, err := p.get(ctx)
		if err != nil {
			return nil, err
		}
		a, keep, written, err := pc.exchange(ctx, method, path, contentType, accept, body)
		if err == nil {
			if keep {
				p.put(pc)
			} else {
				pc.c.Close()
			}
			return a, nil
		}
		pc.c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		retry := reused && attempt == 0 && (!written || method == http.MethodGet) && isClosedConn(err)
		if !retry {
			return nil, err
		}
	}
}

func isClosedConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// exchange does one request on pc; keep says whether pc may be reused.
func (pc *pconn) exchange(ctx context.Context, method, path, contentType, accept string, body []byte) (a *answer, keep, written bool, err error) {
	// The context alone bounds the exchange: when it ends, the deadline
	// is moved to the past, which unblocks any read or write.
	stop := context.AfterFunc(ctx, func() { pc.c.SetDeadline(aLongTimeAgo) })
	defer stop()

	w := pc.bw
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(path)
	w.WriteString(" HTTP/1.1\r\nHost: qtsm-agent\r\nUser-Agent: qtsm-client\r\nAccept: ")
	w.WriteString(accept)
	w.WriteString("\r\n")
	if body != nil {
		w.WriteString("Content-Type: ")
		w.WriteString(contentType)
		w.WriteString("\r\nContent-Length: ")
		w.WriteString(strconv.Itoa(len(body)))
		w.WriteString("\r\n\r\n")
		w.Write(body)
	} else {
		w.WriteString("\r\n")
	}
	if err := w.Flush(); err != nil {
		return nil, false, false, err
	}
	resp, err := http.ReadResponse(pc.br, nil)
	if err != nil {
		return nil, false, true, err
	}
	var b []byte
	if n := resp.ContentLength; n >= 0 && n <= maxAnswer {
		// The usual case: the agent always sends the length.
		b = make([]byte, n)
		_, err = io.ReadFull(resp.Body, b)
	} else {
		b, err = io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	}
	resp.Body.Close()
	if err != nil {
		return nil, false, true, err
	}
	if len(b) > maxAnswer {
		return nil, false, true, fmt.Errorf("answer over %d bytes", maxAnswer)
	}
	if !stop() { // ctx ended: the deadline was poisoned, drop the conn
		return nil, false, true, ctx.Err()
	}
	a = &answer{status: resp.StatusCode, media: resp.Header.Get("Content-Type"), body: b}
	keep = !resp.Close && pc.br.Buffered() == 0
	return a, keep, true, nil
}
