package agent_test

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/agent/internal/fakemod"
)

// TestStrictInput: what encoding/json and url.URL.Query would silently
// forgive is 400 (issue 14, item 2): a client that thinks it asked for a
// nonce must not get a document without one.
func TestStrictInput(t *testing.T) {
	a := startAgent(t, fakeSession(fakemod.New()), "", nil)
	jsonCT := map[string]string{"Content-Type": api.MediaJSON}
	for _, tc := range []struct {
		method, path string
		header       map[string]string
		body         string
		status       int
	}{
		{"GET", api.PathAttestation + "?nonce=%zz", nil, "", 400},
		{"GET", api.PathAttestation + "?nonce=aa;user_data=bb", nil, "", 400},
		{"GET", api.PathAttestation + "?nonce=aa&nonce=bb", nil, "", 400},
		{"GET", api.PathAttestation + "?Nonce=aa", nil, "", 400},
		{"GET", api.PathDescribe + "?x=1", nil, "", 400},
		{"GET", api.PathRandom + "?bytes=8;x=1", nil, "", 400},
		{"GET", api.PathPCRs + "?index=1&index=2", nil, "", 200},
		{"GET", api.PathAttestation + "?nonce=aa&user_data=bb", nil, "", 200},
		{"POST", api.PathAttestation, jsonCT, `{"nonce":"AA==","nonce":"AQ=="}`, 400},
		{"POST", api.PathAttestation, jsonCT, `{"Nonce":"AA=="}`, 400},
		{"POST", api.PathAttestation, jsonCT, `{"nonce":"AA==","user_data":null}`, 200},
		{"POST", api.PathLockRange, jsonCT, `{"range":16,"range":32}`, 400},
	} {
		var body []byte
		if tc.body != "" {
			body = []byte(tc.body)
		}
		status, name, b := rawDo(t, a.socket, tc.method, tc.path, tc.header, body)
		if status != tc.status {
			t.Errorf("%s %s %s = %d %s %s, want %d", tc.method, tc.path, tc.body, status, name, b, tc.status)
		}
	}
}

// TestExpectContinueTooLarge: a body announced over the limit is refused
// at once (413), without asking the client to send it.
func TestExpectContinueTooLarge(t *testing.T) {
	a := startAgent(t, fakeSession(fakemod.New()), "", nil)
	c, err := net.Dial("unix", a.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetDeadline(start.Add(5 * time.Second))
	req := "POST " + api.PathAttestation + " HTTP/1.1\r\nHost: qtsm\r\nContent-Type: application/json\r\n" +
		"Content-Length: 100000000\r\nExpect: 100-continue\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || time.Since(start) > 2*time.Second {
		t.Errorf("Expect: 100-continue with a 100 MB body = %d after %v, want 413 at once", resp.StatusCode, time.Since(start))
	}
	if strings.HasPrefix(resp.Status, "100") {
		t.Errorf("agent asked for the body (%s)", resp.Status)
	}
}
