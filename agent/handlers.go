package agent

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/pcr"
)

// maxDeviceRequest is the largest encoded request both devices accept.
const maxDeviceRequest = 0x1000

// routes returns the API's handler. Paths must be clean: ServeMux would
// answer others with a redirect, which is no use over a socket.
func (s *Server) routes() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &reqError{http.StatusNotFound, api.ErrNotFound, "", "no such endpoint " + strconv.Quote(r.URL.Path)})
	})
	m.Handle(api.PathHealth, s.method(http.MethodGet, false, s.health))
	m.Handle(api.PathDescribe, s.method(http.MethodGet, false, s.describe))
	m.Handle(api.PathPCRs, s.method(http.MethodGet, false, s.readPCRs))
	m.Handle(api.PathPCR, s.method(http.MethodGet, false, s.readPCR))
	m.Handle(api.PathExtend, s.method(http.MethodPost, true, s.extend))
	m.Handle(api.PathLock, s.method(http.MethodPost, true, s.lock))
	m.Handle(api.PathLockRange, s.method(http.MethodPost, true, s.lockRange))
	m.Handle(api.PathAttestation, s.methods([]string{http.MethodGet, http.MethodPost}, false, s.attestation))
	m.Handle(api.PathRandom, s.method(http.MethodGet, false, s.random))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "" || p[0] != '/' || path.Clean(p) != p || r.Method == http.MethodConnect {
			writeError(w, &reqError{http.StatusNotFound, api.ErrNotFound, "", "no such endpoint " + strconv.Quote(p)})
			return
		}
		m.ServeHTTP(w, r)
	})
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) method(m string, modify bool, h handlerFunc) http.Handler {
	return s.methods([]string{m}, modify, h)
}

// methods wraps h: method check, policy check, body limit, error answers.
func (s *Server) methods(ms []string, modify bool, h handlerFunc) http.Handler {
	allow := strings.Join(ms, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok := false
		for _, m := range ms {
			ok = ok || r.Method == m
		}
		if !ok {
			w.Header().Set("Allow", allow)
			writeError(w, &reqError{http.StatusMethodNotAllowed, api.ErrMethodNotAllowed, "", r.Method + " not allowed, use " + allow})
			return
		}
		if modify {
			if p := PeerFrom(r.Context()); !s.cfg.Policy.MayModify(p) {
				s.denied.Add(1)
				writeError(w, &reqError{http.StatusForbidden, api.ErrPermission, "",
					fmt.Sprintf("%s may not extend or lock PCRs (needs uid 0 or a configured group)", p)})
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, api.MaxBody)
		if err := h(w, r); err != nil {
			writeError(w, err)
		}
	})
}

// reqError is an error answer decided by the agent itself.
type reqError struct {
	status int
	name   string
	op     string
	detail string
}

func (e *reqError) Error() string { return fmt.Sprintf("%s: %s", e.name, e.detail) }

func badRequest(format string, args ...any) error {
	return &reqError{http.StatusBadRequest, api.ErrBadRequest, "", fmt.Sprintf(format, args...)}
}

// deviceStatus maps the secure module's error codes to HTTP statuses.
func deviceStatus(c qtsm.Code) int {
	switch c {
	case qtsm.CodeInvalidIndex, qtsm.CodeInvalidArgument, qtsm.CodeInputTooLarge:
		return http.StatusBadRequest
	case qtsm.CodeReadOnlyIndex, qtsm.CodeInvalidOperation:
		return http.StatusConflict
	}
	return http.StatusBadGateway
}

// errorAnswer returns the status and body for err.
func errorAnswer(err error) (int, api.Error) {
	var (
		re *reqError
		qe *qtsm.Error
		me *http.MaxBytesError
	)
	switch {
	case errors.As(err, &re):
		return re.status, api.Error{Error: re.name, Op: re.op, Detail: re.detail}
	case errors.As(err, &me):
		return http.StatusRequestEntityTooLarge, api.Error{Error: api.ErrTooLarge, Detail: fmt.Sprintf("request body over %d bytes", me.Limit)}
	case errors.As(err, &qe):
		name := qe.Name
		if name == "" {
			name = qe.Code.String()
		}
		return deviceStatus(qe.Code), api.Error{Error: name, Op: qe.Op, Detail: qe.Detail}
	case errors.Is(err, errBusy):
		return http.StatusServiceUnavailable, api.Error{Error: api.ErrBusy, Detail: err.Error()}
	case errors.Is(err, errClosed):
		return http.StatusServiceUnavailable, api.Error{Error: api.ErrShuttingDown, Detail: err.Error()}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusGatewayTimeout, api.Error{Error: api.ErrTimeout, Detail: err.Error()}
	}
	return http.StatusBadGateway, api.Error{Error: api.ErrDevice, Detail: err.Error()}
}

func writeError(w http.ResponseWriter, err error) {
	status, body := errorAnswer(err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"InternalError"}`)
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", api.MediaJSON)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b)
}

func writeBytes(w http.ResponseWriter, media string, b []byte) {
	h := w.Header()
	h.Set("Content-Type", media)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// accepts reports whether the Accept header asks for media (exactly, not
// through a wildcard: JSON stays the default).
func accepts(r *http.Request, media string) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err == nil && mt == media && params["q"] != "0" {
				return true
			}
		}
	}
	return false
}

// parseIndex parses a decimal PCR index: digits only, within [lo, hi].
func parseIndex(op, s string, lo, hi int) (int, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, badRequest("PCR index %q is not a decimal number", s)
	}
	i, _ := strconv.Atoi(s)
	if i < lo || i > hi {
		return 0, &qtsm.Error{Code: qtsm.CodeInvalidIndex, Name: qtsm.CodeInvalidIndex.String(), Op: op,
			Detail: fmt.Sprintf("PCR index %d outside [%d,%d]", i, lo, hi)}
	}
	return i, nil
}

// checkRequest refuses, before it reaches the device, a request the device
// would refuse for its arguments or size.
func checkRequest(req qtsm.Request) error {
	if err := qtsm.Validate(req); err != nil {
		return err
	}
	b, err := qtsm.EncodeRequest(req)
	if err != nil {
		return err
	}
	if len(b) > maxDeviceRequest {
		return &qtsm.Error{Code: qtsm.CodeInputTooLarge, Name: qtsm.CodeInputTooLarge.String(), Op: req.Op(),
			Detail: fmt.Sprintf("encoded request is %d bytes, device limit %d", len(b), maxDeviceRequest)}
	}
	return nil
}

// decodeJSON decodes a JSON body strictly into v: known fields only, one
// value, nothing after it. An empty body leaves v as it is when empty is
// true and is an error otherwise.
func decodeJSON(r *http.Request, v any, empty bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != api.MediaJSON && mt != "application/x-www-form-urlencoded") {
			// curl -d sends x-www-form-urlencoded; the body is JSON anyway.
			return &reqError{http.StatusUnsupportedMediaType, api.ErrUnsupportedMedia, "", fmt.Sprintf("content type %q, want %s", ct, api.MediaJSON)}
		}
	}
	b, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if empty {
			return nil
		}
		return badRequest("empty body, want a JSON object")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return badRequest("JSON body: %v", err)
	}
	if d.More() {
		return badRequest("JSON body: data after the object")
	}
	var rest json.RawMessage
	if err := d.Decode(&rest); err != io.EOF {
		return badRequest("JSON body: data after the object")
	}
	return nil
}

// readBody reads the whole body; a body cut short or malformed is the
// client's error (400), one over api.MaxBody is 413.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var me *http.MaxBytesError
		if errors.As(err, &me) {
			return nil, err
		}
		return nil, badRequest("reading body: %v", err)
	}
	return b, nil
}

// noBody refuses a request body where none is expected.
func noBody(r *http.Request) error {
	n, err := io.Copy(io.Discard, io.LimitReader(r.Body, 1))
	if err != nil {
		return badRequest("reading body: %v", err)
	}
	if n != 0 {
		return badRequest("%s %s takes no body", r.Method, r.URL.Path)
	}
	return nil
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	if err := noBody(r); err != nil {
		return err
	}
	h := api.Health{Status: "ok", Device: s.cfg.Device, Vendor: s.cfg.Vendor.String(), Stats: s.Stats()}
	if s.shutting.Load() {
		h.Status = "shutting-down"
	}
	writeJSON(w, http.StatusOK, h)
	return nil
}

func (s *Server) describe(w http.ResponseWriter, r *http.Request) error {
	if err := noBody(r); err != nil {
		return err
	}
	v, err := s.do(r, func(ctx context.Context) (any, error) { return s.cfg.Module.Describe(ctx) })
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v.(*qtsm.Description))
	return nil
}

func (s *Server) readPCR(w http.ResponseWriter, r *http.Request) error {
	i, err := parseIndex("DescribePCR", r.PathValue("index"), 0, pcr.Count-1)
	if err != nil {
		return err
	}
	if err := noBody(r); err != nil {
		return err
	}
	v, err := s.do(r, func(ctx context.Context) (any, error) { return s.cfg.Module.DescribePCR(ctx, i) })
	if err != nil {
		return err
	}
	p := v.(*qtsm.PCR)
	writeJSON(w, http.StatusOK, api.PCR{Index: p.Index, Locked: p.Locked, Value: p.Value})
	return nil
}

// parseIndexList parses ?index=0,1,2 (repeatable); none means all PCRs.
func parseIndexList(q []string) ([]int, error) {
	var out []int
	seen := make(map[int]bool)
	for _, v := range q {
		for part := range strings.SplitSeq(v, ",") {
			i, err := parseIndex("DescribePCR", strings.TrimSpace(part), 0, pcr.Count-1)
			if err != nil {
				return nil, err
			}
			if !seen[i] {
				seen[i] = true
				out = append(out, i)
			}
		}
	}
	if out == nil {
		for i := range pcr.Count {
			out = append(out, i)
		}
	}
	return out, nil
}

func (s *Server) readPCRs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k := range q {
		if k != "index" {
			return badRequest("unknown query parameter %q", k)
		}
	}
	idx, err := parseIndexList(q["index"])
	if err != nil {
		return err
	}
	if err := noBody(r); err != nil {
		return err
	}
	v, err := s.do(r, func(ctx context.Context) (any, error) {
		out := api.PCRList{PCRs: make([]api.PCR, 0, len(idx))}
		for _, i := range idx {
			p, err := s.cfg.Module.DescribePCR(ctx, i)
			if err != nil {
				return nil, err
			}
			out.PCRs = append(out.PCRs, api.PCR{Index: p.Index, Locked: p.Locked, Value: p.Value})
		}
		return out, nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v.(api.PCRList))
	return nil
}

func (s *Server) extend(w http.ResponseWriter, r *http.Request) error {
	i, err := parseIndex("ExtendPCR", r.PathValue("index"), pcr.FirstApp, pcr.Count-1)
	if err != nil {
		return err
	}
	var data []byte
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == api.MediaBinary {
		if data, err = readBody(r); err != nil {
			return err
		}
	} else {
		var req api.ExtendRequest
		if err := decodeJSON(r, &req, false); err != nil {
			return err
		}
		if req.Data == nil {
			return badRequest(`JSON body: "data" missing`)
		}
		data = req.Data
	}
	if err := checkRequest(qtsm.ExtendPCRRequest{Index: uint16(i), Data: data}); err != nil {
		return err
	}
	v, err := s.do(r, func(ctx context.Context) (any, error) { return s.cfg.Module.ExtendPCR(ctx, i, data) })
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.ExtendResponse{Index: i, Value: v.([]byte)})
	return nil
}

func (s *Server) lock(w http.ResponseWriter, r *http.Request) error {
	i, err := parseIndex("LockPCR", r.PathValue("index"), pcr.FirstApp, pcr.Count-1)
	if err != nil {
		return err
	}
	if err := noBody(r); err != nil {
		return err
	}
	if _, err := s.do(r, func(ctx context.Context) (any, error) { return nil, s.cfg.Module.LockPCR(ctx, i) }); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.LockResponse{Index: &i, Locked: true})
	return nil
}

func (s *Server) lockRange(w http.ResponseWriter, r *http.Request) error {
	var req api.LockRangeRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	if req.Range == nil {
		return badRequest(`JSON body: "range" missing`)
	}
	n := *req.Range
	if n < 0 || n > pcr.Count {
		return &qtsm.Error{Code: qtsm.CodeInvalidIndex, Name: qtsm.CodeInvalidIndex.String(), Op: "LockPCRs",
			Detail: fmt.Sprintf("range %d outside [0,%d]", n, pcr.Count)}
	}
	if _, err := s.do(r, func(ctx context.Context) (any, error) { return nil, s.cfg.Module.LockPCRs(ctx, n) }); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.LockResponse{Range: &n, Locked: true})
	return nil
}

// attestationQuery parses GET /v1/attestation?nonce=HEX&user_data=HEX&public_key=HEX.
func attestationQuery(r *http.Request) (qtsm.AttestationRequest, error) {
	var req qtsm.AttestationRequest
	for k, vs := range r.URL.Query() {
		if len(vs) != 1 {
			return req, badRequest("query parameter %q given %d times", k, len(vs))
		}
		b, err := hex.DecodeString(vs[0])
		if err != nil {
			return req, badRequest("query parameter %q: %v", k, err)
		}
		switch k {
		case "nonce":
			req.Nonce = b
		case "user_data":
			req.UserData = b
		case "public_key":
			req.PublicKey = b
		default:
			return req, badRequest("unknown query parameter %q", k)
		}
	}
	return req, nil
}

func (s *Server) attestation(w http.ResponseWriter, r *http.Request) error {
	var req qtsm.AttestationRequest
	if r.Method == http.MethodGet {
		var err error
		if req, err = attestationQuery(r); err != nil {
			return err
		}
		if err := noBody(r); err != nil {
			return err
		}
	} else {
		if r.URL.RawQuery != "" {
			return badRequest("POST %s takes its parameters in the JSON body", api.PathAttestation)
		}
		var body api.AttestationRequest
		if err := decodeJSON(r, &body, true); err != nil {
			return err
		}
		req = qtsm.AttestationRequest{UserData: body.UserData, Nonce: body.Nonce, PublicKey: body.PublicKey}
	}
	if err := checkRequest(req); err != nil {
		return err
	}
	v, err := s.do(r, func(ctx context.Context) (any, error) { return s.cfg.Module.Attestation(ctx, req) })
	if err != nil {
		return err
	}
	doc := v.([]byte)
	if accepts(r, api.MediaCBOR) {
		writeBytes(w, api.MediaCBOR, doc)
		return nil
	}
	writeJSON(w, http.StatusOK, api.AttestationResponse{Document: doc})
	return nil
}

func (s *Server) random(w http.ResponseWriter, r *http.Request) error {
	n := 0
	for k, vs := range r.URL.Query() {
		if k != "bytes" || len(vs) != 1 {
			return badRequest("unknown or repeated query parameter %q", k)
		}
		v := vs[0]
		if v == "" || len(v) > 5 || strings.TrimLeft(v, "0123456789") != "" {
			return badRequest("bytes=%q is not a decimal number", v)
		}
		n, _ = strconv.Atoi(v)
		if n < 1 || n > api.MaxRandom {
			return badRequest("bytes=%d outside [1,%d]", n, api.MaxRandom)
		}
	}
	if err := noBody(r); err != nil {
		return err
	}
	v, err := s.do(r, func(ctx context.Context) (any, error) {
		if n == 0 {
			return s.cfg.Module.GetRandom(ctx)
		}
		b := make([]byte, n)
		_, err := qtsm.ReadRandom(ctx, s.cfg.Module, b)
		return b, err
	})
	if err != nil {
		return err
	}
	b := v.([]byte)
	if accepts(r, api.MediaBinary) {
		writeBytes(w, api.MediaBinary, b)
		return nil
	}
	writeJSON(w, http.StatusOK, api.RandomResponse{Random: b})
	return nil
}
