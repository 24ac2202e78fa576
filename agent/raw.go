package agent

import (
	"errors"
	"fmt"
	"mime"
	"net/http"

	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/pcr"
)

// raw serves POST /v1/raw: a request in the secure module's own CBOR
// encoding in, the module's CBOR answer out, for the C libraries (libqtsm,
// libnsm) that speak the device's messages. The request takes the same path
// as the typed endpoints: decoded and validated once, the same permission
// check for extend and lock, the same 16..31 rule, the same queue. A refusal
// that the module would give (or that the agent's validation gives on its
// behalf) is answered 200 with the module's Error variant, as the device
// would answer it; the agent's own refusals (malformed CBOR, permission,
// busy, timeout) keep their JSON error answers.
func (s *Server) raw(w http.ResponseWriter, r *http.Request) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != api.MediaCBOR {
		return &reqError{http.StatusUnsupportedMediaType, api.ErrUnsupportedMedia, "",
			fmt.Sprintf("content type %q, want %s", r.Header.Get("Content-Type"), api.MediaCBOR)}
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var resp qtsm.Response
	if len(body) > maxDeviceRequest {
		err = &qtsm.Error{Code: qtsm.CodeInputTooLarge, Name: qtsm.CodeInputTooLarge.String(),
			Detail: fmt.Sprintf("encoded request is %d bytes, device limit %d", len(body), maxDeviceRequest)}
	} else {
		req, derr := qtsm.DecodeRequest(body)
		if derr != nil {
			return badRequest("CBOR body: %v", derr)
		}
		if modifies(req) {
			if p := PeerFrom(r.Context()); !s.cfg.Policy.MayModify(p) {
				s.denied.Add(1)
				return &reqError{http.StatusForbidden, api.ErrPermission, req.Op(),
					fmt.Sprintf("%s may not extend or lock PCRs (needs uid 0 or a configured group)", p)}
			}
		}
		if err = appOnly(req); err == nil {
			resp, err = exchange[qtsm.Response](s, r, req)
		}
	}
	var qe *qtsm.Error
	if errors.As(err, &qe) {
		resp, err = qtsm.ErrorResponse{Code: qe.Code, Name: qe.Name}, nil
	}
	if err != nil {
		return err
	}
	b, err := qtsm.EncodeResponse(resp)
	if err != nil {
		return fmt.Errorf("encode %s answer: %w", resp.Op(), err)
	}
	writeBytes(w, api.MediaCBOR, b)
	return nil
}

// modifies reports whether req changes PCR state (the operations the
// access policy guards).
func modifies(req qtsm.Request) bool {
	switch req.(type) {
	case qtsm.ExtendPCRRequest, qtsm.LockPCRRequest, qtsm.LockPCRsRequest:
		return true
	}
	return false
}

// appOnly applies the typed endpoints' index rules to a raw request: extend
// and lock only the application PCRs, a lock range up to the PCR count.
func appOnly(req qtsm.Request) error {
	what, i, lo, hi := "PCR index", 0, pcr.FirstApp, pcr.Count-1
	switch r := req.(type) {
	case qtsm.ExtendPCRRequest:
		i = int(r.Index)
	case qtsm.LockPCRRequest:
		i = int(r.Index)
	case qtsm.LockPCRsRequest:
		what, i, lo, hi = "range", int(r.Range), 0, pcr.Count
	default:
		return nil
	}
	if i < lo || i > hi {
		return &qtsm.Error{Code: qtsm.CodeInvalidIndex, Name: qtsm.CodeInvalidIndex.String(), Op: req.Op(),
			Detail: fmt.Sprintf("%s %d outside [%d,%d]", what, i, lo, hi)}
	}
	return nil
}
