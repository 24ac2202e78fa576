package kms

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Proxy lets unmodified AWS SDK programs in the enclave use the recipient
// flow: they point AWS_ENDPOINT_URL_KMS at it (on 127.0.0.1) and call
// Decrypt, GenerateDataKey, GenerateDataKeyPair or GenerateRandom as
// usual; the proxy checks their SigV4 signature against the credentials it
// holds (a request signed with anything else is refused, so that another
// local process cannot borrow the enclave's KMS rights), sends the request
// with the enclave's attestation through KMS (which answers sealed to the
// enclave), opens the envelope and answers in the ordinary Plaintext
// fields.
type Proxy struct {
	KMS         *AWS
	Credentials aws.Credentials
	// MaxSkew bounds how far a request's X-Amz-Date may be from now
	// (default 5 minutes, as AWS).
	MaxSkew time.Duration
	Now     func() time.Time
	Logf    func(format string, args ...any)
}

// proxyRequest is the part of the JSON 1.1 requests the proxy reads.
type proxyRequest struct {
	KeyId               string
	CiphertextBlob      []byte
	EncryptionContext   map[string]string
	KeySpec             string
	KeyPairSpec         string
	NumberOfBytes       int
	Recipient           json.RawMessage
	EncryptionAlgorithm string
	GrantTokens         []string
}

type awsError struct {
	Type    string `json:"__type"`
	Message string `json:"message"`
	status  int
}

func (p *Proxy) fail(w http.ResponseWriter, e awsError) {
	if p.Logf != nil {
		p.Logf("kms proxy: %s: %s", e.Type, e.Message)
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", e.Type)
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(e)
}

// ServeHTTP serves one JSON 1.1 request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		p.fail(w, awsError{"ValidationException", "reading the request: " + err.Error(), http.StatusBadRequest})
		return
	}
	if err := p.verify(r, body); err != nil {
		p.fail(w, awsError{"InvalidSignatureException", err.Error(), http.StatusForbidden})
		return
	}
	op, _ := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "TrentService.")
	var req proxyRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		p.fail(w, awsError{"ValidationException", "request body: " + err.Error(), http.StatusBadRequest})
		return
	}
	if len(req.Recipient) > 0 {
		p.fail(w, awsError{"ValidationException", "the enclave's KMS proxy adds the Recipient itself", http.StatusBadRequest})
		return
	}
	ctx := r.Context()
	var resp map[string]any
	switch op {
	case "Decrypt":
		var pt []byte
		if pt, err = p.KMS.Decrypt(ctx, req.CiphertextBlob, req.KeyId, req.EncryptionContext); err == nil {
			resp = map[string]any{"Plaintext": pt, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}
			if req.KeyId != "" {
				resp["KeyId"] = req.KeyId
			}
		}
	case "GenerateDataKey":
		n := req.NumberOfBytes
		if req.KeySpec == "AES_128" {
			n = 16
		}
		var pt, blob []byte
		if pt, blob, err = p.KMS.GenerateDataKey(ctx, req.KeyId, n, req.EncryptionContext); err == nil {
			resp = map[string]any{"KeyId": req.KeyId, "Plaintext": pt, "CiphertextBlob": blob}
		}
	case "GenerateDataKeyPair":
		var priv, pub, blob []byte
		if priv, pub, blob, err = p.KMS.GenerateDataKeyPair(ctx, req.KeyId, req.KeyPairSpec, req.EncryptionContext); err == nil {
			resp = map[string]any{"KeyId": req.KeyId, "KeyPairSpec": req.KeyPairSpec, "PrivateKeyPlaintext": priv,
				"PublicKey": pub, "PrivateKeyCiphertextBlob": blob}
		}
	case "GenerateRandom":
		var b []byte
		if b, err = p.KMS.GenerateRandom(ctx, req.NumberOfBytes); err == nil {
			resp = map[string]any{"Plaintext": b}
		}
	default:
		p.fail(w, awsError{"UnsupportedOperationException",
			fmt.Sprintf("the enclave's KMS proxy serves Decrypt, GenerateDataKey, GenerateDataKeyPair and GenerateRandom, not %q", op), http.StatusBadRequest})
		return
	}
	if err != nil {
		var se *StepError
		if errors.As(err, &se) && se.Code != "" {
			p.fail(w, awsError{se.Code, se.Message, http.StatusBadRequest})
		} else {
			p.fail(w, awsError{"KMSInternalException", err.Error(), http.StatusInternalServerError})
		}
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(resp)
}

// verify recomputes the request's SigV4 signature with the proxy's
// credentials over the headers the client signed.
func (p *Proxy) verify(r *http.Request, body []byte) error {
	f, ok := authFields(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256")
	if !ok {
		return errors.New("the request is not signed with AWS4-HMAC-SHA256")
	}
	cred, signed, sig := f["Credential"], f["SignedHeaders"], f["Signature"]
	parts := strings.Split(cred, "/")
	if len(parts) != 5 || parts[3] != "kms" || parts[4] != "aws4_request" || signed == "" || sig == "" {
		return errors.New("malformed Authorization header")
	}
	if parts[0] != p.Credentials.AccessKeyID {
		return fmt.Errorf("signed by access key %q, not the enclave's", parts[0])
	}
	t, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return errors.New("no valid X-Amz-Date")
	}
	now, skew := time.Now(), p.MaxSkew
	if p.Now != nil {
		now = p.Now()
	}
	if skew <= 0 {
		skew = 5 * time.Minute
	}
	if d := now.Sub(t); d > skew || d < -skew {
		return fmt.Errorf("X-Amz-Date %s is %v from now", t.Format(time.RFC3339), d.Round(time.Second))
	}
	// The same request, with only the headers the client signed.
	check, err := http.NewRequestWithContext(context.Background(), r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	if err != nil {
		return err
	}
	for _, h := range strings.Split(signed, ";") {
		switch h {
		case "host":
			continue
		case "content-length": // kept apart from the headers by net/http
			check.ContentLength = int64(len(body))
			continue
		}
		for _, v := range r.Header.Values(h) {
			check.Header.Add(h, v)
		}
	}
	check.Header.Del("Authorization")
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), p.Credentials, check, hex.EncodeToString(sum[:]), "kms", parts[2], t); err != nil {
		return err
	}
	want := check.Header.Get("Authorization")
	i := strings.LastIndex(want, "Signature=")
	if i < 0 || !hmac.Equal([]byte(want[i+len("Signature="):]), []byte(sig)) {
		return errors.New("the signature does not match the enclave's credentials")
	}
	return nil
}
