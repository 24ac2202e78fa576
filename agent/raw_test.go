package agent_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/qtenclave/enclave/agent"
	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/attestation"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRaw sends the device's own encodings (the known-answer requests of
// docs/protocol.md) to POST /v1/raw on a real socket and decodes the
// answers as the C libraries do, with the module's codec.
func TestRaw(t *testing.T) {
	for _, vendor := range []qtsm.Vendor{qtsm.VendorNitro, qtsm.VendorQingtian} {
		t.Run(vendor.String(), func(t *testing.T) {
			a := startAgent(t, qtsm.NewSession(newSim(t, vendor)), "", nil)
			send := func(req []byte) qtsm.Response {
				t.Helper()
				status, name, body := rawDo(t, a.socket, http.MethodPost, api.PathRaw,
					map[string]string{"Content-Type": api.MediaCBOR, "Accept": api.MediaCBOR}, req)
				if status != http.StatusOK {
					t.Fatalf("POST /v1/raw %x = %d %s %s, want 200", req, status, name, body)
				}
				resp, err := qtsm.DecodeResponse(body)
				if err != nil {
					t.Fatalf("POST /v1/raw %x: answer %x: %v", req, body, err)
				}
				return resp
			}
			errName := func(r qtsm.Response) string {
				if e, ok := r.(qtsm.ErrorResponse); ok {
					return e.Code.String()
				}
				return ""
			}
			kat := unhex(t, "cb178fcd3f328244c05c6248723fd068b3a1dda878e1ab8be911098f199958add55d0c27f04826d27b44d949a650694e")
			for _, c := range []struct {
				name, req string
				check     func(qtsm.Response) bool
			}{
				{"DescribeNSM", "6b44657363726962654e534d", func(r qtsm.Response) bool {
					d, ok := r.(qtsm.DescribeResponse)
					return ok && d.MaxPCRs == 32 && d.Digest == "SHA384"
				}},
				{"GetRandom", "6947657452616e646f6d", func(r qtsm.Response) bool {
					g, ok := r.(qtsm.GetRandomResponse)
					return ok && len(g.Random) > 0
				}},
				{"DescribePCR 0", "a16b4465736372696265504352a165696e64657800", func(r qtsm.Response) bool {
					p, ok := r.(qtsm.DescribePCRResponse)
					return ok && p.Lock && len(p.Data) == 48
				}},
				{"ExtendPCR 16 010203", "a169457874656e64504352a265696e64657810646461746143010203", func(r qtsm.Response) bool {
					e, ok := r.(qtsm.ExtendPCRResponse)
					return ok && bytes.Equal(e.Data, kat)
				}},
				{"LockPCR 16", "a1674c6f636b504352a165696e64657810", func(r qtsm.Response) bool {
					_, ok := r.(qtsm.LockPCRResponse)
					return ok
				}},
				{"ExtendPCR 16 after lock", "a169457874656e64504352a265696e64657810646461746143010203", func(r qtsm.Response) bool {
					return errName(r) == "ReadOnlyIndex"
				}},
				{"LockPCR 16 again", "a1674c6f636b504352a165696e64657810", func(r qtsm.Response) bool {
					return errName(r) == "ReadOnlyIndex"
				}},
				{"LockPCRs 32", "a1684c6f636b50435273a16572616e67651820", func(r qtsm.Response) bool {
					_, ok := r.(qtsm.LockPCRsResponse)
					return ok
				}},
				{"LockPCRs 33", "a1684c6f636b50435273a16572616e67651821", func(r qtsm.Response) bool {
					return errName(r) == "InvalidIndex"
				}},
				{"ExtendPCR 0 (a system PCR)", "a169457874656e64504352a265696e64657800646461746143010203", func(r qtsm.Response) bool {
					return errName(r) == "InvalidIndex"
				}},
				{"DescribePCR 32", "a16b4465736372696265504352a165696e64657818" + "20", func(r qtsm.Response) bool {
					return errName(r) == "InvalidIndex"
				}},
				{"Attestation, nothing given", "a16b4174746573746174696f6ea369757365725f64617461f6656e6f6e6365f66a7075626c69635f6b6579f6", func(r qtsm.Response) bool {
					d, ok := r.(qtsm.AttestationResponse)
					return ok && len(d.Document) > 0
				}},
			} {
				if resp := send(unhex(t, c.req)); !c.check(resp) {
					t.Errorf("%s: POST /v1/raw answered %#v", c.name, resp)
				}
			}

			// An attestation with a nonce: the document is the simulator's,
			// signed, and carries the nonce.
			nonce := []byte("raw endpoint nonce")
			req, err := qtsm.EncodeRequest(qtsm.AttestationRequest{Nonce: nonce})
			if err != nil {
				t.Fatal(err)
			}
			att, ok := send(req).(qtsm.AttestationResponse)
			if !ok {
				t.Fatal("attestation: not an Attestation answer")
			}
			doc, err := attestation.Parse(att.Document)
			if err != nil {
				t.Fatalf("attestation.Parse(raw answer) = %v", err)
			}
			if !bytes.Equal(doc.Nonce, nonce) {
				t.Errorf("raw attestation nonce = %q, want %q", doc.Nonce, nonce)
			}
			// Inputs over the module's limits: the module's own error names.
			big, _ := qtsm.EncodeRequest(qtsm.AttestationRequest{UserData: make([]byte, qtsm.MaxUserData+1)})
			if got := errName(send(big)); got != "InputTooLarge" {
				t.Errorf("raw attestation with %d bytes of user data = %q, want InputTooLarge", qtsm.MaxUserData+1, got)
			}
			huge, _ := qtsm.EncodeRequest(qtsm.ExtendPCRRequest{Index: 17, Data: make([]byte, 5000)})
			if got := errName(send(huge)); got != "InputTooLarge" {
				t.Errorf("raw request of %d bytes = %q, want InputTooLarge", len(huge), got)
			}
		})
	}
}

// TestRawRefusals covers the agent's own refusals of a raw request: they
// are JSON errors, and the device is never called.
func TestRawRefusals(t *testing.T) {
	extend := unhex(t, "a169457874656e64504352a265696e64657810646461746143010203")
	for _, c := range []struct {
		name   string
		ct     string
		body   []byte
		uid    uint32
		status int
		err    string
	}{
		{"no content type", "", extend, 0, 415, api.ErrUnsupportedMedia},
		{"JSON", api.MediaJSON, []byte(`{"ExtendPCR":{}}`), 0, 415, api.ErrUnsupportedMedia},
		{"not CBOR", api.MediaCBOR, []byte("hello"), 0, 400, api.ErrBadRequest},
		{"unknown operation", api.MediaCBOR, unhex(t, "6548656c6c6f"), 0, 400, api.ErrBadRequest},
		{"trailing bytes", api.MediaCBOR, append(bytes.Clone(extend), 0), 0, 400, api.ErrBadRequest},
		{"extend as uid 1000", api.MediaCBOR, extend, 1000, 403, api.ErrPermission},
		{"lock as uid 1000", api.MediaCBOR, unhex(t, "a1674c6f636b504352a165696e64657810"), 1000, 403, api.ErrPermission},
	} {
		t.Run(c.name, func(t *testing.T) {
			calls := 0
			sim := newSim(t, qtsm.VendorNitro)
			srv := agent.New(agent.Config{Module: qtsm.NewSession(countingTransport{sim, &calls}), Logf: t.Logf})
			defer srv.Shutdown(context.Background())
			req := httptest.NewRequest(http.MethodPost, api.PathRaw, bytes.NewReader(c.body))
			if c.ct != "" {
				req.Header.Set("Content-Type", c.ct)
			}
			req = req.WithContext(agent.WithPeer(context.Background(), agent.Peer{Known: true, PID: 7, UID: c.uid, GID: c.uid}))
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, req)
			if rec.Code != c.status || errorName(rec.Body.Bytes()) != c.err {
				t.Errorf("POST /v1/raw (%s) = %d %s, want %d %s", c.name, rec.Code, strings.TrimSpace(rec.Body.String()), c.status, c.err)
			}
			if calls != 0 {
				t.Errorf("POST /v1/raw (%s) reached the device %d times, want 0", c.name, calls)
			}
		})
	}
}

// countingTransport is the simulator, counting its calls.
type countingTransport struct {
	qtsm.Transport
	n *int
}

func (c countingTransport) RoundTrip(ctx context.Context, req []byte) ([]byte, error) {
	*c.n++
	return c.Transport.RoundTrip(ctx, req)
}
