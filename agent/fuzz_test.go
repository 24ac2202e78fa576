package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/qtenclave/enclave/agent"
	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/agent/internal/fakemod"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/pcr"
)

// checkingTransport fails the fuzz target if a request that the agent
// should have refused reaches the device.
type checkingTransport struct {
	t *testing.T
	*fakemod.Module
}

func (c checkingTransport) RoundTrip(ctx context.Context, b []byte) ([]byte, error) {
	if len(b) > 0x1000 {
		c.t.Errorf("device got a %d-byte request", len(b))
	}
	req, err := qtsm.DecodeRequest(b)
	if err != nil {
		c.t.Errorf("device got an undecodable request %x: %v", b, err)
	}
	switch r := req.(type) {
	case qtsm.ExtendPCRRequest:
		if r.Index < pcr.FirstApp || r.Index >= pcr.Count {
			c.t.Errorf("device got ExtendPCR(%d)", r.Index)
		}
	case qtsm.LockPCRRequest:
		if r.Index < pcr.FirstApp || r.Index >= pcr.Count {
			c.t.Errorf("device got LockPCR(%d)", r.Index)
		}
	case qtsm.LockPCRsRequest:
		if r.Range > pcr.Count {
			c.t.Errorf("device got LockPCRs(%d)", r.Range)
		}
	case qtsm.AttestationRequest:
		if len(r.Nonce) > 512 || len(r.UserData) > 512 || len(r.PublicKey) > 1024 {
			c.t.Errorf("device got oversized attestation inputs %d/%d/%d", len(r.Nonce), len(r.UserData), len(r.PublicKey))
		}
	}
	return c.Module.RoundTrip(ctx, b)
}

var fuzzStatuses = map[int]bool{200: true, 400: true, 403: true, 404: true, 405: true, 409: true, 413: true, 415: true}

// FuzzHandler feeds raw HTTP requests to the agent's handler (as root, and
// as an unprivileged peer): it must never panic, answer only with the
// documented statuses and JSON error bodies, and never pass the device a
// request it should have refused.
func FuzzHandler(f *testing.F) {
	for _, s := range []string{
		"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/describe HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/pcrs?index=0,1,16 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/pcrs/31 HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /v1/pcrs/16/extend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"data\":\"AQID\"}",
		"POST /v1/pcrs/17/extend HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\nabc",
		"POST /v1/pcrs/16/lock HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /v1/pcrs/lock HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{\"range\":20}",
		"POST /v1/attestation HTTP/1.1\r\nHost: x\r\nAccept: application/cbor\r\nContent-Length: 37\r\n\r\n{\"nonce\":\"AQI=\",\"user_data\":null}   ",
		"GET /v1/attestation?nonce=0102&public_key=ff HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/random?bytes=100 HTTP/1.1\r\nHost: x\r\nAccept: application/octet-stream\r\n\r\n",
		"POST /v1/pcrs/16/extend HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"dat\r\n0\r\n\r\n",
		"GET /v1/attestation?nonce=%zz HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/attestation?nonce=aa;user_data=bb HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /v1/attestation HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n{\"nonce\":\"AA==\",\"Nonce\":null}",
		"POST /v1/attestation HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n",
		"POST /v1/raw HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\nContent-Length: 17\r\n\r\n\xa1\x67LockPCR\xa1\x65index\x10",
		"POST /v1/raw HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\nContent-Length: 28\r\n\r\n\xa1\x69ExtendPCR\xa2\x65index\x10\x64data\x43\x01\x02\x03",
		"POST /v1/raw HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\nContent-Length: 10\r\n\r\n\x69GetRandom",
	} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, raw []byte, root bool) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		f := fakemod.New()
		srv := agent.New(agent.Config{Module: qtsm.NewSession(checkingTransport{t, f}, qtsm.WithRetry(qtsm.RetryPolicy{Attempts: 1})), Logf: t.Logf})
		defer srv.Shutdown(context.Background())
		peer := agent.Peer{Known: true, PID: 1, UID: 1000, GID: 1000}
		if root {
			peer.UID = 0
		}
		req = req.WithContext(agent.WithPeer(context.Background(), peer))
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		if !fuzzStatuses[rec.Code] {
			t.Fatalf("%s %s answered %d %s", req.Method, req.URL, rec.Code, rec.Body.Bytes())
		}
		if rec.Code != 200 {
			var e api.Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%s %s: error answer %d %q is not a JSON error", req.Method, req.URL, rec.Code, rec.Body.Bytes())
			}
		}
		if !root && f.Calls.Load() > 0 {
			for _, r := range f.Requests() {
				switch r.(type) {
				case qtsm.ExtendPCRRequest, qtsm.LockPCRRequest, qtsm.LockPCRsRequest:
					t.Fatalf("unprivileged peer got %T to the device", r)
				}
			}
		}
	})
}

// FuzzHex checks the JSON hex codec round-trips.
func FuzzHex(f *testing.F) {
	f.Add([]byte(`"00ff"`))
	f.Add([]byte(`null`))
	f.Add([]byte(`"0g"`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h api.Hex
		if err := json.Unmarshal(b, &h); err != nil {
			return
		}
		out, err := json.Marshal(h)
		if err != nil {
			t.Fatalf("Marshal(%x) = %v", []byte(h), err)
		}
		var h2 api.Hex
		if err := json.Unmarshal(out, &h2); err != nil || !bytes.Equal(h, h2) || (h == nil) != (h2 == nil) {
			t.Fatalf("round trip %q -> %x -> %s -> %x, %v", b, []byte(h), out, []byte(h2), err)
		}
	})
}
