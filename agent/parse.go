package agent

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/pcr"
)

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
	if err := checkKeys(b, v); err != nil {
		return err
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

// attestationQuery parses GET /v1/attestation?nonce=HEX&user_data=HEX&public_key=HEX
// (checkQuery has refused anything else).
func attestationQuery(r *http.Request) (qtsm.AttestationRequest, error) {
	var req qtsm.AttestationRequest
	for k, vs := range r.URL.Query() {
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
		}
	}
	return req, nil
}

// checkQuery parses the query strictly: a malformed one (a bad escape, a
// ";" separator), a parameter the route does not take, or one given twice
// that may not be, is 400. (url.URL.Query drops what it cannot parse, so a
// client that thinks it asked for freshness would silently get none.)
// Handlers may then read r.URL.Query().
func checkQuery(r *http.Request, allowed params) error {
	if r.URL.RawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return badRequest("malformed query: %v", err)
	}
	for k, vs := range q {
		repeatable, ok := allowed[k]
		if !ok {
			return badRequest("unknown query parameter %q", k)
		}
		if len(vs) > 1 && !repeatable {
			return badRequest("query parameter %q given %d times", k, len(vs))
		}
	}
	return nil
}

// checkKeys refuses a JSON object body whose keys encoding/json would
// forgive: a key given twice (json keeps the last) or in another case than
// the field's name (json matches case-insensitively). v is the struct the
// body decodes into.
func checkKeys(b []byte, v any) error {
	names := map[string]bool{}
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" {
			name = t.Field(i).Name
		}
		names[name] = true
	}
	d := json.NewDecoder(bytes.NewReader(b))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return nil // not an object: the decoder says what is wrong
	}
	seen := map[string]bool{}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil
		}
		k, _ := tok.(string)
		if !names[k] {
			return badRequest("JSON body: unknown field %q", k)
		}
		if seen[k] {
			return badRequest("JSON body: field %q given twice", k)
		}
		seen[k] = true
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}
