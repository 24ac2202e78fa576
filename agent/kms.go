package agent

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/kms"
	"github.com/qtenclave/enclave/qtsm"
)

// KMS serves POST /v1/kms/{op}: the recipient flow of package kms for
// programs that would rather not link anything. The agent makes an
// ephemeral RSA-2048 key for the request (from a small pool made ahead),
// gets the attestation document through its own queue, asks KMS through
// the enclave's egress proxy, opens the envelope and forgets the key.

// attester gets attestation documents through the agent's queue, with
// the validation and fairness of every request.
type attester struct {
	s *Server
	r *http.Request
}

func (a attester) Attestation(ctx context.Context, req qtsm.AttestationRequest) ([]byte, error) {
	v, err := exchange[qtsm.AttestationResponse](a.s, a.r, req)
	return v.Document, err
}

// newKMSHTTP is the one HTTP client KMS requests use (its connections
// reused): through the egress proxy when the agent serves one (its own
// environment names none).
func newKMSHTTP(proxy *url.URL) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if proxy != nil {
		tr.Proxy = http.ProxyURL(proxy)
	}
	return &http.Client{Transport: tr}
}

func (s *Server) kms(w http.ResponseWriter, r *http.Request) error {
	op := r.PathValue("op")
	var req api.KMSRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	switch {
	case !kms.IsOp(op):
		return &reqError{http.StatusNotFound, api.ErrNotFound, "", fmt.Sprintf("no KMS operation %q (decrypt, generate-data-key, generate-data-key-pair, generate-random)", op)}
	case req.Credentials.AccessKeyID == "" || req.Credentials.SecretAccessKey == "":
		return badRequest(`JSON body: "credentials" needs access_key_id and secret_access_key`)
	case req.Vendor != "" && req.Vendor != "aws" && req.Vendor != "huawei":
		return badRequest("vendor %q: want aws or huawei", req.Vendor)
	case req.Vendor == "huawei" && op == kms.OpGenerateDataKeyPair:
		return badRequest("vendor huawei: %s is AWS's (Huawei's recipient flow covers %s)", op, kms.HuaweiOps)
	case req.Region == "" && req.Endpoint == "":
		return badRequest(`JSON body: "region" or "endpoint" is needed`)
	case (op == kms.OpGenerateDataKey || op == kms.OpGenerateDataKeyPair) && req.KeyID == "":
		return badRequest(`JSON body: "key_id" is needed for %s`, op)
	case op == kms.OpDecrypt && len(req.Ciphertext) == 0:
		return badRequest(`JSON body: "ciphertext" is needed for decrypt`)
	case req.Bytes < 0 || req.Bytes > 1024:
		return badRequest("bytes %d outside 0..1024", req.Bytes)
	}
	ctx, cancel := s.bounded(r.Context())
	defer cancel()
	key, err := s.keys.take(ctx)
	if err != nil {
		return err
	}
	rec := &kms.Recipient{Key: key, Module: attester{s, r.WithContext(ctx)}}
	var c kms.Client
	if req.Vendor == "huawei" {
		h := &kms.Huawei{Endpoint: req.Endpoint, ProjectID: req.ProjectID, AK: req.Credentials.AccessKeyID, SK: req.Credentials.SecretAccessKey,
			SecurityToken: req.Credentials.SessionToken, HTTP: s.kmsHTTP, Recipient: rec}
		if h.Endpoint == "" {
			h.Endpoint = kms.HuaweiEndpoint(req.Region)
		}
		c = h
	} else {
		c = &kms.AWS{Client: kms.NewAWSClientHTTP(req.Region, req.Endpoint,
			credentials.NewStaticCredentialsProvider(req.Credentials.AccessKeyID, req.Credentials.SecretAccessKey, req.Credentials.SessionToken), s.kmsHTTP),
			Recipient: rec}
	}
	res, err := c.Do(ctx, kms.Request{Op: op, KeyID: req.KeyID, Ciphertext: req.Ciphertext, EncryptionContext: req.EncryptionContext,
		Bytes: req.Bytes, KeyPairSpec: req.KeyPairSpec})
	if err != nil {
		return kmsAnswer(op, err)
	}
	writeJSON(w, http.StatusOK, api.KMSResponse{Plaintext: res.Plaintext, CiphertextBlob: res.CiphertextBlob, PublicKey: res.PublicKey})
	return nil
}

// kmsAnswer turns a failed step into the agent's error answer: KMS's own
// refusals keep their names (403 for access denied), the rest are 502.
func kmsAnswer(op string, err error) error {
	var se *kms.StepError
	if errors.As(err, &se) {
		var qe *qtsm.Error
		if errors.As(err, &qe) { // the secure module refused the attestation
			return err
		}
		status, name, detail := http.StatusBadGateway, "KMSError", se.Error()
		if se.Code != "" {
			name, detail = se.Code, se.Message
			if strings.Contains(se.Code, "AccessDenied") {
				status = http.StatusForbidden
			}
		}
		return &reqError{status, name, "kms " + op, detail}
	}
	return err
}

// keyPool keeps a few RSA-2048 keys made ahead: a key is made in the
// background and handed to one request, which forgets it; none is used
// twice. Key generation (tens of milliseconds) then stays out of a
// request's time unless requests come faster than keys. It starts with the
// first KMS request, never at boot.
type keyPool struct {
	start, end sync.Once
	ready      chan *rsa.PrivateKey
	done       chan struct{}
}

func newKeyPool(n int) *keyPool {
	return &keyPool{ready: make(chan *rsa.PrivateKey, n), done: make(chan struct{})}
}

func (p *keyPool) take(ctx context.Context) (*rsa.PrivateKey, error) {
	p.start.Do(func() {
		go func() {
			for {
				k, err := rsa.GenerateKey(rand.Reader, 2048)
				if err != nil {
					return
				}
				select {
				case p.ready <- k:
				case <-p.done:
					return
				}
			}
		}()
	})
	select {
	case k := <-p.ready:
		return k, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// stop ends the background generation.
func (p *keyPool) stop() { p.end.Do(func() { close(p.done) }) }
