package agent_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qtenclave/enclave/agent"
	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/agent/client"
	"github.com/qtenclave/enclave/agent/internal/fakemod"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/pcr"
)

func fakeSession(f *fakemod.Module) *qtsm.Session {
	return qtsm.NewSession(f, qtsm.WithRetry(qtsm.RetryPolicy{Attempts: 1}))
}

// TestEndpointsFake exercises every endpoint's success path through the
// real socket, against the fake module, with raw HTTP (what curl does).
func TestEndpointsFake(t *testing.T) {
	f := fakemod.New()
	a := startAgent(t, fakeSession(f), "", nil)
	js := map[string]string{"Content-Type": "application/json"}

	status, _, b := rawDo(t, a.socket, "GET", "/v1/health", nil, nil)
	var h api.Health
	if status != 200 || json.Unmarshal(b, &h) != nil || h.Status != "ok" || h.Device != "fake" {
		t.Errorf("GET /v1/health = %d %s, want 200 status ok device fake", status, b)
	}
	status, _, b = rawDo(t, a.socket, "GET", "/v1/describe", nil, nil)
	var d qtsm.Description
	if status != 200 || json.Unmarshal(b, &d) != nil || d.ModuleID != "fake-module" || d.MaxPCRs != 32 {
		t.Errorf("GET /v1/describe = %d %s, want 200 module fake-module", status, b)
	}
	status, _, b = rawDo(t, a.socket, "GET", "/v1/pcrs/3", nil, nil)
	var p api.PCR
	if status != 200 || json.Unmarshal(b, &p) != nil || p.Index != 3 || !p.Locked || !bytes.Equal(p.Value, pcr.Zero()) {
		t.Errorf("GET /v1/pcrs/3 = %d %s, want 200 index 3 locked zero", status, b)
	}
	if !strings.Contains(string(b), `"value":"`+strings.Repeat("00", 48)+`"`) {
		t.Errorf("GET /v1/pcrs/3 = %s, want value in hex", b)
	}
	status, _, b = rawDo(t, a.socket, "GET", "/v1/pcrs", nil, nil)
	var l api.PCRList
	if status != 200 || json.Unmarshal(b, &l) != nil || len(l.PCRs) != 32 || l.PCRs[31].Index != 31 || l.PCRs[31].Locked {
		t.Errorf("GET /v1/pcrs = %d, %d PCRs, want 200 and 32 PCRs", status, len(l.PCRs))
	}
	status, _, b = rawDo(t, a.socket, "GET", "/v1/pcrs?index=2,16&index=2", nil, nil)
	if status != 200 || json.Unmarshal(b, &l) != nil || len(l.PCRs) != 2 || l.PCRs[0].Index != 2 || l.PCRs[1].Index != 16 {
		t.Errorf("GET /v1/pcrs?index=2,16&index=2 = %d %s, want PCRs 2 and 16", status, b)
	}

	// Extend with JSON (base64) and with a raw body.
	want := pcr.Extend(pcr.Zero(), []byte{1, 2, 3})
	status, _, b = rawDo(t, a.socket, "POST", "/v1/pcrs/16/extend", js, []byte(`{"data":"AQID"}`))
	var e api.ExtendResponse
	if status != 200 || json.Unmarshal(b, &e) != nil || e.Index != 16 || !bytes.Equal(e.Value, want) {
		t.Errorf("POST /v1/pcrs/16/extend = %d %s, want 200 value %x", status, b, want)
	}
	if got := hex.EncodeToString(want); got != "cb178fcd3f328244c05c6248723fd068b3a1dda878e1ab8be911098f199958add55d0c27f04826d27b44d949a650694e" {
		t.Fatalf("KAT extend(zero, 010203) = %s", got)
	}
	want = pcr.Extend(pcr.Zero(), []byte("raw"))
	status, _, b = rawDo(t, a.socket, "POST", "/v1/pcrs/17/extend", map[string]string{"Content-Type": "application/octet-stream"}, []byte("raw"))
	if status != 200 || json.Unmarshal(b, &e) != nil || !bytes.Equal(e.Value, want) {
		t.Errorf("POST /v1/pcrs/17/extend (octet-stream) = %d %s, want value %x", status, b, want)
	}
	status, _, b = rawDo(t, a.socket, "POST", "/v1/pcrs/16/lock", nil, nil)
	if status != 200 || string(b) != `{"index":16,"locked":true}`+"\n" {
		t.Errorf("POST /v1/pcrs/16/lock = %d %s, want 200 {index:16,locked:true}", status, b)
	}
	status, _, b = rawDo(t, a.socket, "POST", "/v1/pcrs/lock", js, []byte(`{"range":18}`))
	if status != 200 || string(b) != `{"range":18,"locked":true}`+"\n" {
		t.Errorf("POST /v1/pcrs/lock = %d %s, want 200 {range:18,locked:true}", status, b)
	}
	status, _, b = rawDo(t, a.socket, "GET", "/v1/pcrs/17", nil, nil)
	if status != 200 || json.Unmarshal(b, &p) != nil || !p.Locked {
		t.Errorf("GET /v1/pcrs/17 after lock range 18 = %d %s, want locked", status, b)
	}

	// Attestation: JSON (base64 document), raw CBOR, GET with hex query.
	nonce := []byte("nonce-123")
	body, _ := json.Marshal(api.AttestationRequest{Nonce: nonce, UserData: []byte("ud"), PublicKey: []byte("pk")})
	status, _, b = rawDo(t, a.socket, "POST", "/v1/attestation", js, body)
	var ar api.AttestationResponse
	if status != 200 || json.Unmarshal(b, &ar) != nil {
		t.Fatalf("POST /v1/attestation = %d %s, want 200", status, b)
	}
	doc, err := fakemod.ParseDoc(ar.Document)
	if err != nil || !bytes.Equal(doc.Nonce, nonce) || string(doc.UserData) != "ud" || string(doc.PublicKey) != "pk" {
		t.Errorf("attestation document = %+v, %v, want nonce %q user_data ud public_key pk", doc, err, nonce)
	}
	status, _, b = rawDo(t, a.socket, "POST", "/v1/attestation", map[string]string{"Accept": "application/cbor"}, nil)
	if status != 200 || len(b) == 0 || b[0] != 0x84 {
		t.Errorf("POST /v1/attestation Accept cbor = %d, first byte %x, want 200 and a COSE array", status, b[:min(1, len(b))])
	}
	if doc, err := fakemod.ParseDoc(b); err != nil || doc.Nonce != nil {
		t.Errorf("attestation without nonce = %+v, %v, want nonce null", doc, err)
	}
	status, _, b = rawDo(t, a.socket, "GET", "/v1/attestation?nonce=0102&user_data=", map[string]string{"Accept": "application/json, application/cbor;q=0.5"}, nil)
	if status != 200 {
		t.Errorf("GET /v1/attestation?nonce=0102 = %d %s", status, b)
	}
	if doc, err := fakemod.ParseDoc(b); err != nil || !bytes.Equal(doc.Nonce, []byte{1, 2}) || doc.UserData == nil || len(doc.UserData) != 0 {
		t.Errorf("GET attestation with Accept listing cbor: document %+v, %v, want nonce 0102 and empty user_data", doc, err)
	}

	// Random: JSON, raw, N bytes.
	status, _, b = rawDo(t, a.socket, "GET", "/v1/random", nil, nil)
	var rr api.RandomResponse
	if status != 200 || json.Unmarshal(b, &rr) != nil || len(rr.Random) != 256 {
		t.Errorf("GET /v1/random = %d %s, want 256 bytes", status, b)
	}
	status, _, b = rawDo(t, a.socket, "GET", "/v1/random?bytes=1000", map[string]string{"Accept": "application/octet-stream"}, nil)
	if status != 200 || len(b) != 1000 {
		t.Errorf("GET /v1/random?bytes=1000 = %d, %d bytes, want 1000 raw bytes", status, len(b))
	}
	if o := f.Overlaps.Load(); o != 0 {
		t.Errorf("device saw %d overlapping calls, want 0", o)
	}
}

// TestErrorAnswers covers every error path: status code and error name.
func TestErrorAnswers(t *testing.T) {
	a := startAgent(t, fakeSession(fakemod.New()), "", nil)
	js := map[string]string{"Content-Type": "application/json"}
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	for _, tc := range []struct {
		method, path string
		header       map[string]string
		body         string
		status       int
		name         string
	}{
		{"GET", "/", nil, "", 404, "NotFound"},
		{"GET", "/v2/describe", nil, "", 404, "NotFound"},
		{"GET", "/v1/pcrs/1/x", nil, "", 404, "NotFound"},
		{"GET", "/v1/../v1/describe", nil, "", 404, "NotFound"},
		{"GET", "/v1/describe/", nil, "", 404, "NotFound"},
		{"POST", "/v1/describe", nil, "", 405, "MethodNotAllowed"},
		{"DELETE", "/v1/attestation", nil, "", 405, "MethodNotAllowed"},
		{"GET", "/v1/pcrs/16/extend", nil, "", 405, "MethodNotAllowed"},
		{"GET", "/v1/describe", nil, "x", 400, "BadRequest"},
		{"GET", "/v1/pcrs/abc", nil, "", 400, "BadRequest"},
		{"GET", "/v1/pcrs/-1", nil, "", 400, "BadRequest"},
		{"GET", "/v1/pcrs/+1", nil, "", 400, "BadRequest"},
		{"GET", "/v1/pcrs/32", nil, "", 400, "InvalidIndex"},
		{"GET", "/v1/pcrs/99999", nil, "", 400, "InvalidIndex"},
		{"GET", "/v1/pcrs/999999", nil, "", 400, "BadRequest"},
		{"GET", "/v1/pcrs?index=1,x", nil, "", 400, "BadRequest"},
		{"GET", "/v1/pcrs?index=40", nil, "", 400, "InvalidIndex"},
		{"GET", "/v1/pcrs?foo=1", nil, "", 400, "BadRequest"},
		{"POST", "/v1/pcrs/3/extend", js, `{"data":"AQ=="}`, 400, "InvalidIndex"},
		{"POST", "/v1/pcrs/15/lock", nil, "", 400, "InvalidIndex"},
		{"POST", "/v1/pcrs/32/lock", nil, "", 400, "InvalidIndex"},
		{"POST", "/v1/pcrs/16/extend", js, `{"data":`, 400, "BadRequest"},
		{"POST", "/v1/pcrs/16/extend", js, `{"data":"!!"}`, 400, "BadRequest"},
		{"POST", "/v1/pcrs/16/extend", js, `{"dat":"AQ=="}`, 400, "BadRequest"},
		{"POST", "/v1/pcrs/16/extend", js, `{}`, 400, "BadRequest"},
		{"POST", "/v1/pcrs/16/extend", js, ``, 400, "BadRequest"},
		{"POST", "/v1/pcrs/16/extend", js, `{"data":"AQ=="} {}`, 400, "BadRequest"},
		{"POST", "/v1/pcrs/16/extend", js, `[1]`, 400, "BadRequest"},
		{"POST", "/v1/pcrs/16/extend", map[string]string{"Content-Type": "text/plain"}, `{"data":"AQ=="}`, 415, "UnsupportedMediaType"},
		{"POST", "/v1/pcrs/16/extend", js, `{"data":"` + b64(5000) + `"}`, 400, "InputTooLarge"},
		{"POST", "/v1/pcrs/16/extend", js, `{"data":"` + b64(70000) + `"}`, 413, "RequestTooLarge"},
		{"POST", "/v1/pcrs/16/lock", nil, "body", 400, "BadRequest"},
		{"POST", "/v1/pcrs/lock", js, `{}`, 400, "BadRequest"},
		{"POST", "/v1/pcrs/lock", js, `{"range":33}`, 400, "InvalidIndex"},
		{"POST", "/v1/pcrs/lock", js, `{"range":-1}`, 400, "InvalidIndex"},
		{"POST", "/v1/pcrs/lock", js, `{"range":"3"}`, 400, "BadRequest"},
		{"POST", "/v1/attestation", js, `{"nonce":"` + b64(513) + `"}`, 400, "InputTooLarge"},
		{"POST", "/v1/attestation", js, `{"user_data":"` + b64(513) + `"}`, 400, "InputTooLarge"},
		{"POST", "/v1/attestation", js, `{"public_key":"` + b64(1025) + `"}`, 400, "InputTooLarge"},
		{"POST", "/v1/attestation", js, `{"pubkey":"AA=="}`, 400, "BadRequest"},
		{"POST", "/v1/attestation?nonce=00", js, `{}`, 400, "BadRequest"},
		{"GET", "/v1/attestation?nonce=zz", nil, "", 400, "BadRequest"},
		{"GET", "/v1/attestation?nonce=00&nonce=01", nil, "", 400, "BadRequest"},
		{"GET", "/v1/attestation?other=00", nil, "", 400, "BadRequest"},
		{"GET", "/v1/attestation?nonce=" + strings.Repeat("ab", 513), nil, "", 400, "InputTooLarge"},
		{"GET", "/v1/random?bytes=0", nil, "", 400, "BadRequest"},
		{"GET", "/v1/random?bytes=4097", nil, "", 400, "BadRequest"},
		{"GET", "/v1/random?bytes=x", nil, "", 400, "BadRequest"},
		{"GET", "/v1/random?size=1", nil, "", 400, "BadRequest"},
	} {
		var body []byte
		if tc.body != "" || tc.method == "POST" {
			body = []byte(tc.body)
		}
		status, name, b := rawDo(t, a.socket, tc.method, tc.path, tc.header, body)
		if status != tc.status || name != tc.name {
			t.Errorf("%s %s %.40q = %d %s (%.200s), want %d %s", tc.method, tc.path, tc.body, status, name, b, tc.status, tc.name)
		}
	}

	// Device errors, in order: extend then lock then extend again.
	steps := []struct {
		method, path, body string
		status             int
		name               string
	}{
		{"POST", "/v1/pcrs/20/lock", "", 200, ""},
		{"POST", "/v1/pcrs/20/lock", "", 409, "ReadOnlyIndex"},
		{"POST", "/v1/pcrs/20/extend", `{"data":""}`, 409, "ReadOnlyIndex"},
	}
	for _, s := range steps {
		var body []byte
		if s.body != "" {
			body = []byte(s.body)
		}
		status, name, b := rawDo(t, a.socket, s.method, s.path, js, body)
		if status != s.status || name != s.name {
			t.Errorf("%s %s = %d %s (%s), want %d %s", s.method, s.path, status, name, b, s.status, s.name)
		}
		if s.name == "ReadOnlyIndex" && !strings.Contains(string(b), `"op":"`) {
			t.Errorf("%s %s = %s, want the operation named", s.method, s.path, b)
		}
	}
}

// failTransport fails every round trip like a broken ioctl.
type failTransport struct{}

func (failTransport) RoundTrip(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("ioctl /dev/nsm: input/output error")
}
func (failTransport) Close() error { return nil }

// errTransport answers every request with one error name.
type errTransport string

func (e errTransport) RoundTrip(context.Context, []byte) ([]byte, error) {
	return qtsm.EncodeResponse(qtsm.ErrorResponse{Name: string(e), Code: qtsm.CodeFromName(string(e))})
}
func (errTransport) Close() error { return nil }

func TestDeviceFailures(t *testing.T) {
	for _, tc := range []struct {
		tr     qtsm.Transport
		status int
		name   string
	}{
		{failTransport{}, 502, "DeviceError"},
		{errTransport("InternalError"), 502, "InternalError"},
		{errTransport("InvalidArgument"), 400, "InvalidArgument"},
		{errTransport("InvalidOperation"), 409, "InvalidOperation"},
		{errTransport("SomethingNew"), 502, "SomethingNew"},
	} {
		a := startAgent(t, qtsm.NewSession(tc.tr, qtsm.WithRetry(qtsm.RetryPolicy{Attempts: 1})), "", nil)
		status, name, b := rawDo(t, a.socket, "GET", "/v1/describe", nil, nil)
		if status != tc.status || name != tc.name {
			t.Errorf("describe over %v = %d %s (%s), want %d %s", tc.tr, status, name, b, tc.status, tc.name)
		}
		// The client maps module errors to *qtsm.Error, agent errors to *client.Error.
		_, err := a.client().Describe(context.Background())
		var qe *qtsm.Error
		var ce *client.Error
		if tc.name == "DeviceError" {
			if !errors.As(err, &ce) || !errors.Is(err, client.ErrDevice) {
				t.Errorf("client Describe() = %v, want *client.Error DeviceError", err)
			}
		} else if !errors.As(err, &qe) || qe.Name != tc.name || qe.Code != qtsm.CodeFromName(tc.name) {
			t.Errorf("client Describe() = %#v, want *qtsm.Error %s", err, tc.name)
		}
	}
}

// TestClientModule runs the whole qtsm.Module method set through the client
// and compares with an in-process session on an identical fake.
func TestClientModule(t *testing.T) {
	ctx := context.Background()
	a := startAgent(t, fakeSession(fakemod.New()), "", nil)
	c := a.client()
	defer c.Close()
	var m qtsm.Module = c
	ref := fakeSession(fakemod.New())

	d, err := m.Describe(ctx)
	rd, _ := ref.Describe(ctx)
	if err != nil || fmt.Sprint(*d) != fmt.Sprint(*rd) {
		t.Errorf("Describe() = %+v, %v, want %+v", d, err, rd)
	}
	for _, i := range []int{0, 15, 16, 31} {
		p, err := m.DescribePCR(ctx, i)
		rp, _ := ref.DescribePCR(ctx, i)
		if err != nil || p.Index != rp.Index || p.Locked != rp.Locked || !bytes.Equal(p.Value, rp.Value) {
			t.Errorf("DescribePCR(%d) = %+v, %v, want %+v", i, p, err, rp)
		}
	}
	for _, i := range []int{-1, 32} {
		if _, err := m.DescribePCR(ctx, i); !errors.Is(err, qtsm.ErrInvalidIndex) {
			t.Errorf("DescribePCR(%d) = %v, want InvalidIndex", i, err)
		}
	}
	v, err := m.ExtendPCR(ctx, 16, []byte{1, 2, 3})
	rv, _ := ref.ExtendPCR(ctx, 16, []byte{1, 2, 3})
	if err != nil || !bytes.Equal(v, rv) {
		t.Errorf("ExtendPCR(16, 010203) = %x, %v, want %x", v, err, rv)
	}
	if v, err := m.ExtendPCR(ctx, 18, nil); err != nil || !bytes.Equal(v, pcr.Extend(pcr.Zero(), nil)) {
		t.Errorf("ExtendPCR(18, nil) = %x, %v, want extend by nothing", v, err)
	}
	if err := m.LockPCR(ctx, 16); err != nil {
		t.Errorf("LockPCR(16) = %v, want nil", err)
	}
	if _, err := m.ExtendPCR(ctx, 16, []byte{4}); !errors.Is(err, qtsm.ErrReadOnlyIndex) {
		t.Errorf("ExtendPCR(16) after lock = %v, want ReadOnlyIndex", err)
	}
	if err := m.LockPCR(ctx, 16); !errors.Is(err, qtsm.ErrReadOnlyIndex) {
		t.Errorf("LockPCR(16) twice = %v, want ReadOnlyIndex", err)
	}
	if err := m.LockPCRs(ctx, 18); err != nil {
		t.Errorf("LockPCRs(18) = %v, want nil", err)
	}
	if err := m.LockPCRs(ctx, 33); !errors.Is(err, qtsm.ErrInvalidIndex) {
		t.Errorf("LockPCRs(33) = %v, want InvalidIndex", err)
	}
	if p, _ := m.DescribePCR(ctx, 17); p == nil || !p.Locked {
		t.Errorf("DescribePCR(17) after LockPCRs(18) = %+v, want locked", p)
	}
	doc, err := m.Attestation(ctx, qtsm.AttestationRequest{Nonce: []byte("n"), UserData: []byte{}})
	if err != nil {
		t.Fatalf("Attestation() = %v", err)
	}
	if pd, err := fakemod.ParseDoc(doc); err != nil || string(pd.Nonce) != "n" || pd.UserData == nil || pd.PublicKey != nil {
		t.Errorf("Attestation document = %+v, %v, want nonce n, empty user_data, null public_key", pd, err)
	}
	if _, err := m.Attestation(ctx, qtsm.AttestationRequest{UserData: make([]byte, 513)}); !errors.Is(err, qtsm.ErrInputTooLarge) {
		t.Errorf("Attestation(user_data 513) = %v, want InputTooLarge", err)
	}
	r, err := m.GetRandom(ctx)
	if err != nil || len(r) != 256 {
		t.Errorf("GetRandom() = %d bytes, %v, want 256", len(r), err)
	}
	buf := make([]byte, 5000)
	if n, err := c.Read(buf); n != 5000 || err != nil || bytes.Equal(buf[4000:], make([]byte, 1000)) {
		t.Errorf("Read(5000) = %d, %v, want 5000 random bytes", n, err)
	}
	l, err := c.DescribePCRs(ctx, 16, 17)
	if err != nil || len(l) != 2 || !l[0].Locked || l[1].Index != 17 {
		t.Errorf("DescribePCRs(16, 17) = %+v, %v", l, err)
	}
	h, err := c.Health(ctx)
	if err != nil || h.Executed == 0 || h.Queued != 0 {
		t.Errorf("Health() = %+v, %v, want executed > 0, nothing queued", h, err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
}

func TestClientNoAgent(t *testing.T) {
	c := client.New(t.TempDir() + "/none.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Describe(ctx); err == nil {
		t.Errorf("Describe() without agent = nil error, want a dial error")
	}
	if err := c.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait() without agent = %v, want deadline exceeded", err)
	}
}

// TestDisconnectedClientNotSent: a request whose client hangs up while it
// waits in the queue never reaches the device, and the queue keeps going.
func TestDisconnectedClientNotSent(t *testing.T) {
	f := fakemod.New()
	f.Gate = make(chan struct{})
	a := startAgent(t, fakeSession(f), "", nil)
	ctx := context.Background()

	// 1: holds the device.
	first := make(chan error, 1)
	go func() { _, err := a.client().ExtendPCR(ctx, 16, []byte("first")); first <- err }()
	waitFor(t, "first request at the device", func() bool { return f.Calls.Load() == 1 })

	// 2: queued behind it, then its client goes away.
	c2, cancel2 := context.WithCancel(ctx)
	second := make(chan error, 1)
	go func() { _, err := a.client().ExtendPCR(c2, 17, []byte("second")); second <- err }()
	waitFor(t, "second request queued", func() bool { return a.srv.Stats().Queued == 1 })
	cancel2()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ExtendPCR = %v, want context.Canceled", err)
	}
	// Let the server notice the hang-up before the device frees up.
	time.Sleep(50 * time.Millisecond)
	close(f.Gate) // device answers from now on
	if err := <-first; err != nil {
		t.Errorf("first ExtendPCR = %v, want nil", err)
	}
	// 3: the queue is not wedged.
	if _, err := a.client().Describe(ctx); err != nil {
		t.Errorf("Describe() after a disconnect = %v, want nil", err)
	}
	for _, r := range f.Requests() {
		if e, ok := r.(qtsm.ExtendPCRRequest); ok && e.Index == 17 {
			t.Errorf("device received the disconnected client's ExtendPCR(17)")
		}
	}
	if p, _ := a.client().DescribePCR(ctx, 17); p == nil || !bytes.Equal(p.Value, pcr.Zero()) {
		t.Errorf("PCR17 = %+v, want untouched", p)
	}
	if s := a.srv.Stats(); s.Dropped != 1 {
		t.Errorf("Stats() = %+v, want 1 dropped", s)
	}
}

// TestTimeoutAndBusy: a request stuck behind a slow device times out with
// 504; beyond MaxQueue requests are refused with 503 at once.
func TestTimeoutAndBusy(t *testing.T) {
	f := fakemod.New()
	f.Gate = make(chan struct{})
	a := startAgent(t, fakeSession(f), "", func(c *agent.Config) {
		c.Timeout = 300 * time.Millisecond
		c.MaxQueue = 2
	})
	defer close(f.Gate)
	ctx := context.Background()
	errs := make(chan error, 3)
	for range 3 { // 1 at the device, 2 queued
		go func() { _, err := a.client().Describe(ctx); errs <- err }()
	}
	waitFor(t, "device busy and queue full", func() bool { return f.Calls.Load() == 1 && a.srv.Stats().Queued == 2 })
	status, name, _ := rawDo(t, a.socket, "GET", "/v1/random", nil, nil)
	if status != 503 || name != "Busy" {
		t.Errorf("request over MaxQueue = %d %s, want 503 Busy", status, name)
	}
	_, err := a.client().GetRandom(ctx)
	if !errors.Is(err, client.ErrBusy) {
		t.Errorf("client GetRandom over MaxQueue = %v, want ErrBusy", err)
	}
	for range 3 {
		if err := <-errs; !errors.Is(err, client.ErrTimeout) {
			t.Errorf("request behind a stuck device = %v, want ErrTimeout", err)
		}
	}
}

// TestFairness: a process with many queued requests does not hold back
// another process's single request behind all of them.
func TestFairness(t *testing.T) {
	f := fakemod.New()
	f.Gate = make(chan struct{})
	srv := agent.New(agent.Config{Module: fakeSession(f), Logf: t.Logf})
	defer srv.Shutdown(context.Background())
	h := srv.Handler()
	var order []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	send := func(pid int32, tag string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := agent.WithPeer(context.Background(), agent.Peer{Known: true, PID: pid, UID: 0})
			rec := httptest.NewRecorder()
			req := httptest.NewRequestWithContext(ctx, "POST", "/v1/pcrs/"+tag+"/extend", strings.NewReader(`{"data":""}`))
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				t.Errorf("extend %s = %d %s", tag, rec.Code, rec.Body.String())
			}
			mu.Lock()
			order = append(order, tag)
			mu.Unlock()
		}()
	}
	send(1, "16") // at the device
	waitFor(t, "first at the device", func() bool { return f.Calls.Load() == 1 })
	for i := range 5 {
		send(1, fmt.Sprint(17+i))
		waitFor(t, "queued", func() bool { return srv.Stats().Queued == i+1 })
	}
	send(2, "30")
	waitFor(t, "other peer queued", func() bool { return srv.Stats().Queued == 6 })
	for range 7 {
		f.Gate <- struct{}{}
	}
	wg.Wait()
	var dev []uint16
	for _, r := range f.Requests() {
		dev = append(dev, r.(qtsm.ExtendPCRRequest).Index)
	}
	// Peer 2's request goes right after peer 1's first queued one.
	want := []uint16{16, 17, 30, 18, 19, 20, 21}
	if fmt.Sprint(dev) != fmt.Sprint(want) {
		t.Errorf("device order = %v, want %v (round-robin across peers)", dev, want)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestSlowloris: clients that dribble their headers or body are cut off
// by the read timeouts, and meanwhile others are served normally.
func TestSlowloris(t *testing.T) {
	a := startAgent(t, fakeSession(fakemod.New()), "", func(c *agent.Config) {
		c.ReadHeaderTimeout = time.Second
		c.ReadTimeout = 1500 * time.Millisecond
	})
	const slow = 40
	closed := make(chan time.Duration, slow)
	for i := range slow {
		c, err := net.Dial("unix", a.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			start := time.Now()
			var msg string
			if i%2 == 0 { // slow headers
				msg = "GET /v1/describe HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000)
			} else { // fast headers, slow body
				msg = "POST /v1/attestation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"nonce\":\"" + strings.Repeat("A", 900)
			}
			for k := 0; k < len(msg); k++ {
				if _, err := c.Write([]byte{msg[k]}); err != nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
				if time.Since(start) > 8*time.Second {
					break
				}
			}
			closed <- time.Since(start)
		}()
	}
	// Meanwhile others send oversized and malformed bodies as fast as
	// they can.
	stopAbuse := make(chan struct{})
	abused := make(chan [2]int, 1)
	go func() {
		var tooLarge, bad int
		defer func() { abused <- [2]int{tooLarge, bad} }()
		// Over the 64 KiB limit, under what the server drains after
		// answering (so the write completes and the answer can be read).
		big := bytes.Repeat([]byte("A"), 200<<10)
		for {
			select {
			case <-stopAbuse:
				return
			default:
			}
			if st, name, _ := rawDo(t, a.socket, "POST", "/v1/attestation", map[string]string{"Content-Type": "application/json"}, big); st == 413 && name == "RequestTooLarge" {
				tooLarge++
			}
			if st, name, _ := rawDo(t, a.socket, "POST", "/v1/attestation", nil, []byte(`{"nonce":`)); st == 400 && name == "BadRequest" {
				bad++
			}
		}
	}()
	c := a.client()
	var lat []time.Duration
	for range 50 {
		start := time.Now()
		if _, err := c.Describe(context.Background()); err != nil {
			t.Fatalf("Describe() during slowloris = %v", err)
		}
		lat = append(lat, time.Since(start))
		time.Sleep(10 * time.Millisecond)
	}
	close(stopAbuse)
	if n := <-abused; n[0] == 0 || n[1] == 0 {
		t.Errorf("abusive clients got %d RequestTooLarge and %d BadRequest answers, want some of each", n[0], n[1])
	}
	// Were the slow clients in the way, a call would wait for their
	// timeouts (1 s and more).
	slices.Sort(lat)
	if p90 := lat[len(lat)*9/10]; p90 > 500*time.Millisecond {
		t.Errorf("Describe() during slowloris and abuse: 90th percentile %v, want well under the read timeouts", p90)
	}
	for range slow {
		if d := <-closed; d > 5*time.Second {
			t.Errorf("slow client kept its connection %v, want cut after the read timeouts", d)
		}
	}
}

// TestShutdownFinishesInFlight: Shutdown lets a request at the device
// finish and answer, refuses new connections, and closes the module.
func TestShutdownFinishesInFlight(t *testing.T) {
	f := fakemod.New()
	f.Gate = make(chan struct{})
	dir := t.TempDir()
	a := startAgent(t, fakeSession(f), dir, nil)
	c := a.client()
	res := make(chan error, 1)
	go func() { _, err := c.ExtendPCR(context.Background(), 16, []byte("x")); res <- err }()
	waitFor(t, "request at the device", func() bool { return f.Calls.Load() == 1 })
	shut := make(chan error, 1)
	go func() { shut <- a.srv.Shutdown(context.Background()) }()
	waitFor(t, "shutting down", func() bool {
		c, err := net.Dial("unix", a.socket)
		if err == nil {
			c.Close() // else Shutdown waits 5 s for this new connection
		}
		return err != nil
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown() = %v before the in-flight request finished", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(f.Gate)
	if err := <-res; err != nil {
		t.Errorf("in-flight ExtendPCR during shutdown = %v, want nil", err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown() = %v", err)
	}
	// The module is closed: the simulator refuses every later exchange.
	if _, err := f.RoundTrip(context.Background(), []byte{0x69, 'G', 'e', 't', 'R', 'a', 'n', 'd', 'o', 'm'}); !errors.Is(err, qtsm.ErrClosed) {
		t.Fatalf("RoundTrip after Shutdown = %v, want qtsm.ErrClosed", err)
	}
	if p := f.Requests(); len(p) != 2 {
		t.Errorf("device saw %d requests, want 2", len(p))
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()
	sock := dir + "/a.sock"
	l, err := agent.Listen(sock, 0o640, -1)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("socket mode = %v, %v, want 0640", fi.Mode(), err)
	}
	if _, err := agent.Listen(sock, 0o640, -1); err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Errorf("Listen() on a live socket = %v, want 'another agent is listening'", err)
	}
	l.Close() // leaves a stale socket file
	l2, err := agent.Listen(sock, 0o600, -1)
	if err != nil {
		t.Fatalf("Listen() over a stale socket = %v, want it replaced", err)
	}
	l2.Close()
	if err := os.WriteFile(dir+"/file", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.Listen(dir+"/file", 0o600, -1); err == nil {
		t.Errorf("Listen() over a regular file = nil error, want refusal")
	}
}

// TestTimeoutAtDevice: a request whose deadline passes while the device
// works on it is answered 504 at the deadline (JSON body, connection
// closed); the device's late answer is dropped and the agent goes on.
func TestTimeoutAtDevice(t *testing.T) {
	f := fakemod.New()
	f.Gate = make(chan struct{})
	a := startAgent(t, fakeSession(f), "", func(c *agent.Config) { c.Timeout = 200 * time.Millisecond })
	start := time.Now()
	status, name, b := rawDo(t, a.socket, "POST", "/v1/pcrs/16/extend", map[string]string{"Content-Type": "application/json"}, []byte(`{"data":"AQID"}`))
	if took := time.Since(start); status != 504 || name != "Timeout" || took > 2*time.Second {
		t.Errorf("extend at a stuck device = %d %s %s after %v, want 504 Timeout at the 200ms deadline", status, name, b, took)
	}
	close(f.Gate) // the device finishes: the extension is applied
	p, err := a.client().DescribePCR(context.Background(), 16)
	if err != nil || !bytes.Equal(p.Value, pcr.Extend(pcr.Zero(), []byte{1, 2, 3})) {
		t.Errorf("PCR16 after the timed-out extend = %+v, %v, want it applied (documented)", p, err)
	}
	if s := a.srv.Stats(); s.Executed != 2 {
		t.Errorf("Stats() = %+v, want 2 executed", s)
	}
}
