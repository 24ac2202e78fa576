package agent

import (
	"context"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/pcr"
)

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
	d, err := exchange[qtsm.DescribeResponse](s, r, qtsm.DescribeRequest{})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d.Description)
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
	p, err := exchange[qtsm.DescribePCRResponse](s, r, qtsm.DescribePCRRequest{Index: uint16(i)})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.PCR{Index: i, Locked: p.Lock, Value: p.Data})
	return nil
}

func (s *Server) readPCRs(w http.ResponseWriter, r *http.Request) error {
	idx, err := parseIndexList(r.URL.Query()["index"]) // checkQuery allows index only
	if err != nil {
		return err
	}
	if err := noBody(r); err != nil {
		return err
	}
	out, err := call(s, r, func(ctx context.Context) (api.PCRList, error) {
		out := api.PCRList{PCRs: make([]api.PCR, 0, len(idx))}
		for _, i := range idx {
			p, err := s.cfg.Module.DescribePCR(ctx, i)
			if err != nil {
				return out, err
			}
			out.PCRs = append(out.PCRs, api.PCR{Index: p.Index, Locked: p.Locked, Value: p.Value})
		}
		return out, nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
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
	if data == nil {
		data = []byte{}
	}
	v, err := exchange[qtsm.ExtendPCRResponse](s, r, qtsm.ExtendPCRRequest{Index: uint16(i), Data: data})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.ExtendResponse{Index: i, Value: v.Data})
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
	if _, err := exchange[qtsm.LockPCRResponse](s, r, qtsm.LockPCRRequest{Index: uint16(i)}); err != nil {
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
	if _, err := exchange[qtsm.LockPCRsResponse](s, r, qtsm.LockPCRsRequest{Range: uint16(n)}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.LockResponse{Range: &n, Locked: true})
	return nil
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
	v, err := exchange[qtsm.AttestationResponse](s, r, req)
	if err != nil {
		return err
	}
	doc := v.Document
	if accepts(r, api.MediaCBOR) {
		writeBytes(w, api.MediaCBOR, doc)
		return nil
	}
	writeJSON(w, http.StatusOK, api.AttestationResponse{Document: doc})
	return nil
}

func (s *Server) random(w http.ResponseWriter, r *http.Request) error {
	n := 0
	if vs, ok := r.URL.Query()["bytes"]; ok { // checkQuery allows bytes, once
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
	b, err := call(s, r, func(ctx context.Context) ([]byte, error) {
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
	if accepts(r, api.MediaBinary) {
		writeBytes(w, api.MediaBinary, b)
		return nil
	}
	writeJSON(w, http.StatusOK, api.RandomResponse{Random: b})
	return nil
}
