package kms

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Huawei asks Huawei Cloud KMS for secrets sealed to Recipient
// (decrypt-datakey, create-datakey and gen-random with a recipient). UNVERIFIED against Huawei KMS:
// the envelope's byte format is not public and is assumed to be AWS's
// (kms/envelope); the request shape and the AK/SK signing follow Huawei's
// public documentation (docs/protocol.md §7).
type Huawei struct {
	// Endpoint is the KMS endpoint, e.g. https://kms.cn-north-4.myhuaweicloud.com.
	Endpoint  string
	ProjectID string
	// AK and SK sign the requests (SDK-HMAC-SHA256); SecurityToken is
	// sent with temporary credentials.
	AK, SK, SecurityToken string
	HTTP                  *http.Client // default: http.DefaultClient (honours the proxy variables)
	Recipient             *Recipient
	Now                   func() time.Time
}

// huaweiError is Huawei KMS's error body.
type huaweiError struct {
	Error struct {
		Code    string `json:"error_code"`
		Message string `json:"error_msg"`
	} `json:"error"`
	Code    string `json:"error_code"`
	Message string `json:"error_msg"`
}

// DecryptDataKey decrypts a data key (cipherHex: the cipher_text as KMS
// gave it, hex) and returns it, sealed to the enclave on the way.
func (h *Huawei) DecryptDataKey(ctx context.Context, keyID, cipherHex string, datakeyLen int) ([]byte, error) {
	var out struct {
		CiphertextRecipient string `json:"ciphertext_recipient"`
		DataKey             string `json:"data_key"`
	}
	if err := h.ask(ctx, "decrypt-datakey", map[string]any{"key_id": keyID, "cipher_text": cipherHex, "datakey_cipher_length": fmt.Sprint(datakeyLen)}, &out); err != nil {
		return nil, err
	}
	return h.sealed(out.DataKey, out.CiphertextRecipient)
}

// ask calls op with the request's fields and its recipient member (a new
// attestation document), and decodes the answer into out.
func (h *Huawei) ask(ctx context.Context, op string, fields map[string]any, out any) error {
	doc, err := h.Recipient.Document(ctx, nil)
	if err != nil {
		return err
	}
	fields["recipient"] = map[string]string{"attestation_document": base64.StdEncoding.EncodeToString(doc), "key_encryption_algorithm": "RSAES_OAEP_SHA_256"}
	body, _ := json.Marshal(fields)
	return h.call(ctx, op, body, out)
}

// sealed opens an answer's ciphertext_recipient; a clear value (plain, a
// data_key or random_data) where a recipient was sent is refused.
func (h *Huawei) sealed(plain, forRecipient string) ([]byte, error) {
	if plain != "" {
		return nil, stepErr(StepAnswer, errors.New("the answer has the secret in clear where a recipient was given: the attestation was dropped on the way; refused"))
	}
	env, err := base64.StdEncoding.DecodeString(forRecipient)
	if err != nil || len(env) == 0 {
		return nil, stepErr(StepAnswer, fmt.Errorf("the answer has no usable ciphertext_recipient (%v)", err))
	}
	return h.Recipient.Open(env)
}

// CreateDataKey makes a data key of n bytes (create-datakey): it returns
// the key (opened here) and its cipher_text (hex) for decrypt-datakey.
func (h *Huawei) CreateDataKey(ctx context.Context, keyID string, n int) ([]byte, string, error) {
	var out struct {
		CipherText          string `json:"cipher_text"`
		PlainText           string `json:"plain_text"`
		CiphertextRecipient string `json:"ciphertext_recipient"`
	}
	if err := h.ask(ctx, "create-datakey", map[string]any{"key_id": keyID, "datakey_length": fmt.Sprint(8 * n)}, &out); err != nil {
		return nil, "", err
	}
	dk, err := h.sealed(out.PlainText, out.CiphertextRecipient)
	return dk, out.CipherText, err
}

// GenRandom returns n random bytes (gen-random), sealed on the way.
func (h *Huawei) GenRandom(ctx context.Context, n int) ([]byte, error) {
	var out struct {
		RandomData          string `json:"random_data"`
		CiphertextRecipient string `json:"ciphertext_recipient"`
	}
	if err := h.ask(ctx, "gen-random", map[string]any{"random_data_length": fmt.Sprint(8 * n)}, &out); err != nil {
		return nil, err
	}
	return h.sealed(out.RandomData, out.CiphertextRecipient)
}

func (h *Huawei) call(ctx context.Context, op string, body []byte, out any) error {
	u := strings.TrimSuffix(h.Endpoint, "/") + "/v1.0/" + url.PathEscape(h.ProjectID) + "/kms/" + op
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return stepErr(StepKMS, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if h.SecurityToken != "" {
		req.Header.Set("X-Security-Token", h.SecurityToken)
	}
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	SignHuawei(req, body, h.AK, h.SK, now)
	c := h.HTTP
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return stepErr(StepKMS, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return stepErr(StepKMS, err)
	}
	if resp.StatusCode/100 != 2 {
		var he huaweiError
		json.Unmarshal(b, &he)
		code, msg := he.Error.Code, he.Error.Message
		if code == "" {
			code, msg = he.Code, he.Message
		}
		if code == "" {
			code, msg = resp.Status, strings.TrimSpace(string(b))
		}
		return &StepError{Step: StepKMS, Code: code, Message: msg, Err: fmt.Errorf("HTTP %s", resp.Status)}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return stepErr(StepAnswer, fmt.Errorf("not JSON: %v", err))
	}
	return nil
}

// SignHuawei signs req (whose body is body) with Huawei Cloud's AK/SK
// scheme, SDK-HMAC-SHA256: it sets X-Sdk-Date and Authorization. The
// canonical request is SigV4's shape with the URI's trailing slash, over
// the headers content-type, host, x-sdk-date (and x-security-token).
func SignHuawei(req *http.Request, body []byte, ak, sk string, now time.Time) {
	date := now.UTC().Format("20060102T150405Z")
	req.Header.Set("X-Sdk-Date", date)
	canonical, signed := huaweiCanonical(req, body)
	sum := sha256.Sum256([]byte(canonical))
	sts := "SDK-HMAC-SHA256\n" + date + "\n" + hex.EncodeToString(sum[:])
	req.Header.Set("Authorization", fmt.Sprintf("SDK-HMAC-SHA256 Access=%s, SignedHeaders=%s, Signature=%s", ak, signed, HuaweiSignature(sk, sts)))
}

// HuaweiSignature is hex(HMAC-SHA256(sk, stringToSign)).
func HuaweiSignature(sk, stringToSign string) string {
	m := hmac.New(sha256.New, []byte(sk))
	m.Write([]byte(stringToSign))
	return hex.EncodeToString(m.Sum(nil))
}

// huaweiCanonical is the canonical request and its signed headers.
func huaweiCanonical(req *http.Request, body []byte) (string, string) {
	path := req.URL.EscapedPath()
	if !strings.HasSuffix(path, "/") {
		path += "/"
	}
	q := req.URL.Query()
	var qs []string
	for _, k := range slices.Sorted(maps.Keys(q)) {
		for _, v := range slices.Sorted(slices.Values(q[k])) {
			qs = append(qs, url.QueryEscape(k)+"="+url.QueryEscape(v))
		}
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	headers := map[string]string{"host": host}
	for _, h := range []string{"Content-Type", "X-Sdk-Date", "X-Security-Token"} {
		if v := req.Header.Get(h); v != "" {
			headers[strings.ToLower(h)] = strings.TrimSpace(v)
		}
	}
	names := slices.Sorted(maps.Keys(headers))
	var ch strings.Builder
	for _, n := range names {
		ch.WriteString(n + ":" + headers[n] + "\n")
	}
	sum := sha256.Sum256(body)
	signed := strings.Join(names, ";")
	return strings.Join([]string{req.Method, path, strings.Join(qs, "&"), ch.String(), signed, hex.EncodeToString(sum[:])}, "\n"), signed
}

// VerifyHuawei checks req's SDK-HMAC-SHA256 signature with sk (for the
// fake KMS): it returns the access key that signed.
func VerifyHuawei(req *http.Request, body []byte, sk string) (string, error) {
	f, ok := authFields(req.Header.Get("Authorization"), "SDK-HMAC-SHA256")
	if !ok {
		return "", errors.New("not signed with SDK-HMAC-SHA256")
	}
	ak, sig := f["Access"], f["Signature"]
	canonical, _ := huaweiCanonical(req, body)
	sum := sha256.Sum256([]byte(canonical))
	sts := "SDK-HMAC-SHA256\n" + req.Header.Get("X-Sdk-Date") + "\n" + hex.EncodeToString(sum[:])
	if !hmac.Equal([]byte(HuaweiSignature(sk, sts)), []byte(sig)) {
		return ak, errors.New("the signature does not match")
	}
	return ak, nil
}

// authFields splits an Authorization header of scheme ("SCHEME k=v, k=v")
// into its fields.
func authFields(header, scheme string) (map[string]string, bool) {
	rest, ok := strings.CutPrefix(header, scheme+" ")
	if !ok {
		return nil, false
	}
	f := map[string]string{}
	for _, kv := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		f[k] = v
	}
	return f, true
}
