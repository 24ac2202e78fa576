// Package client is a Go client of qtsm-agent. *Client implements
// qtsm.Module, so code written against a *qtsm.Session works unchanged over
// the agent's socket; Open picks the agent when its socket exists and the
// device otherwise.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/pcr"
)

// maxAnswer bounds how much of an answer the client reads (documents are at
// most 24 KiB, 32 KiB in base64).
const maxAnswer = 1 << 20

// Client talks to qtsm-agent over its Unix socket. It is safe for
// concurrent use and keeps connections open between calls.
type Client struct {
	socket string
	p      *pool
}

// New returns a client of the agent listening on socket (api.DefaultSocket
// if empty). It does not connect until the first call.
func New(socket string) *Client {
	if socket == "" {
		socket = api.DefaultSocket
	}
	return &Client{socket: socket, p: &pool{socket: socket}}
}

// Open returns a client of the agent when an agent listens on socket
// (api.DefaultSocket if empty), and otherwise a session over the
// secure-module device itself (opts configure that session). A socket
// nobody listens on (left by a dead agent) counts as no agent.
func Open(socket string, opts ...qtsm.Option) (qtsm.Module, error) {
	if socket == "" {
		socket = api.DefaultSocket
	}
	why := "no agent at " + socket
	if fi, err := os.Stat(socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
		c, err := net.DialTimeout("unix", socket, 2*time.Second)
		if err == nil {
			c.Close()
			return New(socket), nil
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			// Someone is there but we may not talk to it (EACCES...):
			// say so rather than trying the device behind its back.
			return nil, fmt.Errorf("qtsm-agent at %s: %w", socket, err)
		}
		why = "agent at " + socket + " not listening"
	}
	s, err := qtsm.Open(opts...)
	if err != nil {
		return nil, fmt.Errorf("%s and %w", why, err)
	}
	return s, nil
}

// Socket returns the socket path.
func (c *Client) Socket() string { return c.socket }

// Close implements qtsm.Module: it closes idle connections. The agent and
// its device stay up.
func (c *Client) Close() error {
	c.p.closeIdle()
	return nil
}

// Error is an error answer decided by the agent itself (not by the secure
// module, whose errors come back as *qtsm.Error). Compare with errors.Is
// against the Err* values.
type Error struct {
	Status int    // HTTP status
	Name   string // api.Err* name
	Op     string
	Detail string
}

func (e *Error) Error() string {
	s := "qtsm-agent: "
	if e.Op != "" {
		s += e.Op + ": "
	}
	s += e.Name
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Is reports whether target is an *Error with the same name.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Name == e.Name
}

// Sentinels for errors.Is.
var (
	ErrPermissionDenied = &Error{Name: api.ErrPermission}
	ErrBusy             = &Error{Name: api.ErrBusy}
	ErrTimeout          = &Error{Name: api.ErrTimeout}
	ErrShuttingDown     = &Error{Name: api.ErrShuttingDown}
	ErrBadRequest       = &Error{Name: api.ErrBadRequest}
	ErrDevice           = &Error{Name: api.ErrDevice}
)

// DecodeError turns a non-2xx answer into an error: *qtsm.Error for the
// secure module's errors, *Error for the agent's.
func DecodeError(status int, body []byte) error {
	var e api.Error
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		snippet := strings.TrimSpace(string(body))
		if len(snippet) > 200 {
			snippet = snippet[:200] + "..."
		}
		return &Error{Status: status, Name: "HTTP " + strconv.Itoa(status), Detail: snippet}
	}
	if api.AgentErrors[e.Error] {
		return &Error{Status: status, Name: e.Error, Op: e.Op, Detail: e.Detail}
	}
	return &qtsm.Error{Code: qtsm.CodeFromName(e.Error), Name: e.Error, Op: e.Op, Detail: e.Detail}
}

// call sends one request and returns the answer's body, or its error.
func (c *Client) call(ctx context.Context, method, path string, body []byte, contentType, accept string) ([]byte, error) {
	a, err := c.p.exchange(ctx, method, path, contentType, accept, body)
	if err != nil {
		return nil, fmt.Errorf("qtsm-agent %s %s: %w", method, path, err)
	}
	if a.status/100 != 2 {
		return nil, DecodeError(a.status, a.body)
	}
	if mt, _, _ := mime.ParseMediaType(a.media); mt != accept {
		return nil, fmt.Errorf("qtsm-agent %s %s: answer is %q, want %q", method, path, a.media, accept)
	}
	return a.body, nil
}

func (c *Client) callJSON(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	ct := ""
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
		ct = api.MediaJSON
	}
	b, err := c.call(ctx, method, path, body, ct, api.MediaJSON)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("qtsm-agent %s %s: decoding answer: %w", method, path, err)
	}
	return nil
}

func checkIndex(op string, i int) error {
	if i < 0 || i >= pcr.Count {
		return &qtsm.Error{Code: qtsm.CodeInvalidIndex, Name: qtsm.CodeInvalidIndex.String(), Op: op,
			Detail: fmt.Sprintf("PCR index %d out of range [0,%d)", i, pcr.Count)}
	}
	return nil
}

// Call sends any request, like qtsm.Session.Call: an error answer is
// returned as *qtsm.Error.
func (c *Client) Call(ctx context.Context, req qtsm.Request) (qtsm.Response, error) {
	switch r := req.(type) {
	case qtsm.DescribeRequest:
		d, err := c.Describe(ctx)
		if err != nil {
			return nil, err
		}
		return qtsm.DescribeResponse{Description: *d}, nil
	case qtsm.DescribePCRRequest:
		p, err := c.DescribePCR(ctx, int(r.Index))
		if err != nil {
			return nil, err
		}
		return qtsm.DescribePCRResponse{Lock: p.Locked, Data: p.Value}, nil
	case qtsm.ExtendPCRRequest:
		v, err := c.ExtendPCR(ctx, int(r.Index), r.Data)
		if err != nil {
			return nil, err
		}
		return qtsm.ExtendPCRResponse{Data: v}, nil
	case qtsm.LockPCRRequest:
		if err := c.LockPCR(ctx, int(r.Index)); err != nil {
			return nil, err
		}
		return qtsm.LockPCRResponse{}, nil
	case qtsm.LockPCRsRequest:
		if err := c.LockPCRs(ctx, int(r.Range)); err != nil {
			return nil, err
		}
		return qtsm.LockPCRsResponse{}, nil
	case qtsm.AttestationRequest:
		doc, err := c.Attestation(ctx, r)
		if err != nil {
			return nil, err
		}
		return qtsm.AttestationResponse{Document: doc}, nil
	case qtsm.GetRandomRequest:
		b, err := c.GetRandom(ctx)
		if err != nil {
			return nil, err
		}
		return qtsm.GetRandomResponse{Random: b}, nil
	}
	return nil, fmt.Errorf("qtsm-agent: unknown request type %T", req)
}

// Health returns the agent's status and counters.
func (c *Client) Health(ctx context.Context) (*api.Health, error) {
	var h api.Health
	if err := c.callJSON(ctx, http.MethodGet, api.PathHealth, nil, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// Wait polls the agent until it answers Health or ctx ends; use it when the
// agent may still be starting.
func (c *Client) Wait(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		_, err := c.Health(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for qtsm-agent at %s: %w (last error: %v)", c.socket, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Describe implements qtsm.Module.
func (c *Client) Describe(ctx context.Context) (*qtsm.Description, error) {
	var d qtsm.Description
	if err := c.callJSON(ctx, http.MethodGet, api.PathDescribe, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

func pcrPath(i int, suffix string) string {
	return api.PathPCRs + "/" + strconv.Itoa(i) + suffix
}

// DescribePCR implements qtsm.Module.
func (c *Client) DescribePCR(ctx context.Context, index int) (*qtsm.PCR, error) {
	if err := checkIndex("DescribePCR", index); err != nil {
		return nil, err
	}
	var p api.PCR
	if err := c.callJSON(ctx, http.MethodGet, pcrPath(index, ""), nil, &p); err != nil {
		return nil, err
	}
	return &qtsm.PCR{Index: p.Index, Locked: p.Locked, Value: p.Value}, nil
}

// DescribePCRs reads several PCRs in one request (all of them if none is
// given).
func (c *Client) DescribePCRs(ctx context.Context, indices ...int) ([]qtsm.PCR, error) {
	path := api.PathPCRs
	if len(indices) > 0 {
		parts := make([]string, len(indices))
		for k, i := range indices {
			if err := checkIndex("DescribePCR", i); err != nil {
				return nil, err
			}
			parts[k] = strconv.Itoa(i)
		}
		path += "?index=" + strings.Join(parts, ",")
	}
	var l api.PCRList
	if err := c.callJSON(ctx, http.MethodGet, path, nil, &l); err != nil {
		return nil, err
	}
	out := make([]qtsm.PCR, len(l.PCRs))
	for k, p := range l.PCRs {
		out[k] = qtsm.PCR{Index: p.Index, Locked: p.Locked, Value: p.Value}
	}
	return out, nil
}

// ExtendPCR implements qtsm.Module. The agent allows it for PCRs 16..31
// and to peers with uid 0 or in its configured group.
func (c *Client) ExtendPCR(ctx context.Context, index int, data []byte) ([]byte, error) {
	if err := checkIndex("ExtendPCR", index); err != nil {
		return nil, err
	}
	if data == nil {
		data = []byte{}
	}
	var r api.ExtendResponse
	if err := c.callJSON(ctx, http.MethodPost, pcrPath(index, "/extend"), api.ExtendRequest{Data: data}, &r); err != nil {
		return nil, err
	}
	return r.Value, nil
}

// LockPCR implements qtsm.Module.
func (c *Client) LockPCR(ctx context.Context, index int) error {
	if err := checkIndex("LockPCR", index); err != nil {
		return err
	}
	var r api.LockResponse
	return c.callJSON(ctx, http.MethodPost, pcrPath(index, "/lock"), nil, &r)
}

// LockPCRs implements qtsm.Module.
func (c *Client) LockPCRs(ctx context.Context, n int) error {
	if n < 0 || n > pcr.Count {
		return &qtsm.Error{Code: qtsm.CodeInvalidIndex, Name: qtsm.CodeInvalidIndex.String(), Op: "LockPCRs",
			Detail: fmt.Sprintf("range %d outside [0,%d]", n, pcr.Count)}
	}
	var r api.LockResponse
	return c.callJSON(ctx, http.MethodPost, api.PathLockRange, api.LockRangeRequest{Range: &n}, &r)
}

// Attestation implements qtsm.Module; the document travels as raw CBOR.
func (c *Client) Attestation(ctx context.Context, req qtsm.AttestationRequest) ([]byte, error) {
	body, err := json.Marshal(api.AttestationRequest{Nonce: req.Nonce, UserData: req.UserData, PublicKey: req.PublicKey})
	if err != nil {
		return nil, err
	}
	return c.call(ctx, http.MethodPost, api.PathAttestation, body, api.MediaJSON, api.MediaCBOR)
}

// GetRandom implements qtsm.Module: the bytes of one GetRandom answer.
func (c *Client) GetRandom(ctx context.Context) ([]byte, error) {
	return c.call(ctx, http.MethodGet, api.PathRandom, nil, "", api.MediaBinary)
}

// Random returns n random bytes (1..api.MaxRandom) in one request.
func (c *Client) Random(ctx context.Context, n int) ([]byte, error) {
	if n < 1 || n > api.MaxRandom {
		return nil, fmt.Errorf("qtsm-agent: random: %d bytes outside [1,%d]", n, api.MaxRandom)
	}
	b, err := c.call(ctx, http.MethodGet, api.PathRandom+"?bytes="+strconv.Itoa(n), nil, "", api.MediaBinary)
	if err == nil && len(b) != n {
		err = fmt.Errorf("qtsm-agent: random: got %d bytes, want %d", len(b), n)
	}
	return b, err
}

// Read fills p with random bytes; Client is an io.Reader like qtsm.Session.
func (c *Client) Read(p []byte) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := 0
	for n < len(p) {
		b, err := c.Random(ctx, min(len(p)-n, api.MaxRandom))
		if err != nil {
			return n, err
		}
		n += copy(p[n:], b)
	}
	return n, nil
}

var _ qtsm.Module = (*Client)(nil)
