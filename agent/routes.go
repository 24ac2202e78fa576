package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/device"
)

// maxDeviceRequest is the largest encoded request both devices accept.
var maxDeviceRequest = min(device.Nitro.MaxRequest, device.Qingtian.MaxRequest)

// routes returns the API's handler. Paths must be clean: ServeMux would
// answer others with a redirect, which is no use over a socket.
func (s *Server) routes() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &reqError{http.StatusNotFound, api.ErrNotFound, "", "no such endpoint " + strconv.Quote(r.URL.Path)})
	})
	get, post := []string{http.MethodGet}, []string{http.MethodPost}
	m.Handle(api.PathHealth, s.route(get, false, nil, s.health))
	m.Handle(api.PathDescribe, s.route(get, false, nil, s.describe))
	m.Handle(api.PathPCRs, s.route(get, false, params{"index": true}, s.readPCRs))
	m.Handle(api.PathPCR, s.route(get, false, nil, s.readPCR))
	m.Handle(api.PathExtend, s.route(post, true, nil, s.extend))
	m.Handle(api.PathLock, s.route(post, true, nil, s.lock))
	m.Handle(api.PathLockRange, s.route(post, true, nil, s.lockRange))
	m.Handle(api.PathAttestation, s.route([]string{http.MethodGet, http.MethodPost}, false,
		params{"nonce": false, "user_data": false, "public_key": false}, s.attestation))
	m.Handle(api.PathRandom, s.route(get, false, params{"bytes": false}, s.random))
	m.Handle(api.PathRaw, s.route(post, false, nil, s.raw)) // raw checks permission once decoded
	m.Handle(api.PathKMS, s.route(post, false, nil, s.kms))
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

// params are the query parameters a route takes, each true when it may be
// repeated.
type params map[string]bool

// route wraps h: method check, policy check, strict query, body limit,
// error answers.
func (s *Server) route(ms []string, modify bool, query params, h handlerFunc) http.Handler {
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
		if err := checkQuery(r, query); err != nil {
			writeError(w, err)
			return
		}
		if r.ContentLength > api.MaxBody {
			// At once: a client that sent "Expect: 100-continue" is not
			// asked for a body that will be refused anyway.
			writeError(w, &http.MaxBytesError{Limit: api.MaxBody})
			return
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
