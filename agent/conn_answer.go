package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// What the connection loop writes: the handler's answer, buffered and
// sent with its length in one write, and the loop's own refusals.

// writeStatus answers a request the loop refuses itself, and the
// connection then closes.
func writeStatus(c net.Conn, code int, text string) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c, "HTTP/1.1 %03d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		code, http.StatusText(code), len(text), text)
}

// continueReader sends "100 Continue" before the first read of a body
// whose client waits to be asked for it.
type continueReader struct {
	body  io.Reader
	bw    *bufio.Writer
	asked bool
	err   error
}

func (r *continueReader) Read(p []byte) (int, error) {
	if !r.asked {
		r.asked = true
		r.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		r.err = r.bw.Flush()
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.body.Read(p)
}

func (r *continueReader) Close() error { return nil }

// quietBody is a request body whose Close does nothing.
type quietBody struct{ io.Reader }

func (quietBody) Close() error { return nil }

// responseWriter buffers a handler's answer (the agent's answers are
// small) so that it goes out with its length, in one write.
type responseWriter struct {
	header http.Header
	req    *http.Request
	status int
	body   []byte
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.body = append(w.body, p...)
	return len(p), nil
}

func bodyAllowed(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

// head returns the status line and the header.
func (w *responseWriter) head(keep, http11 bool) []byte {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	h := w.header
	h.Del("Transfer-Encoding")
	if bodyAllowed(w.status) {
		if len(w.body) > 0 && h.Get("Content-Type") == "" {
			h.Set("Content-Type", http.DetectContentType(w.body))
		}
		h.Set("Content-Length", strconv.Itoa(len(w.body)))
	} else {
		h.Del("Content-Length")
	}
	switch {
	case !keep:
		h.Set("Connection", "close")
	case !http11:
		h.Set("Connection", "keep-alive")
	}
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	var b bytes.Buffer
	b.Grow(256)
	b.WriteString("HTTP/1.1 ")
	b.WriteString(strconv.Itoa(w.status))
	b.WriteByte(' ')
	b.WriteString(http.StatusText(w.status))
	b.WriteString("\r\n")
	h.Write(&b)
	b.WriteString("\r\n")
	return b.Bytes()
}
