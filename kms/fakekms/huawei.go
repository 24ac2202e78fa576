package fakekms

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/qtenclave/enclave/kms"
)

// HuaweiCredentials, when set, are the AK and SK every Huawei-shaped
// request must be signed with (SDK-HMAC-SHA256).
type HuaweiCredentials struct{ AK, SK string }

// huaweiRequest is the bodies of decrypt-datakey, create-datakey and
// gen-random.
type huaweiRequest struct {
	KeyID               string `json:"key_id"`
	CipherText          string `json:"cipher_text"`
	DatakeyCipherLength string `json:"datakey_cipher_length"`
	DatakeyLength       string `json:"datakey_length"`
	RandomDataLength    string `json:"random_data_length"`
	Recipient           *struct {
		AttestationDocument    string `json:"attestation_document"`
		KeyEncryptionAlgorithm string `json:"key_encryption_algorithm"`
	} `json:"recipient"`
}

func huaweiFail(w http.ResponseWriter, status int, code, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"error_code": code, "error_msg": fmt.Sprintf(format, args...)}})
}

// serveHuawei serves POST /v1.0/{project_id}/kms/decrypt-datakey,
// create-datakey and gen-random, the Huawei Cloud KMS shape (UNVERIFIED
// against Huawei KMS, as the client).
func (s *Server) serveHuawei(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.Method != http.MethodPost || len(parts) != 4 || parts[2] != "kms" {
		huaweiFail(w, http.StatusNotFound, "APIGW.0101", "no such API %q", r.URL.Path)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if c := s.Huawei; c != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
		if ak, err := kms.VerifyHuawei(r, body, c.SK); err != nil || ak != c.AK {
			huaweiFail(w, http.StatusUnauthorized, "APIGW.0301", "incorrect IAM authentication information: %v", err)
			return
		}
	}
	s.mu.Lock()
	if s.calls == nil {
		s.calls = map[string]int{}
	}
	s.calls["huawei:"+parts[3]]++
	s.mu.Unlock()
	var req huaweiRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		huaweiFail(w, http.StatusBadRequest, "KMS.InvalidRequest", "request body: %v", err)
		return
	}
	var (
		k     *Key
		pt    []byte
		clear string // the member that carries the secret without a recipient
		resp  = map[string]any{}
	)
	switch parts[3] {
	case "decrypt-datakey":
		blob, err := hex.DecodeString(req.CipherText)
		if err != nil {
			huaweiFail(w, http.StatusBadRequest, "KMS.InvalidCiphertext", "cipher_text is not hex")
			return
		}
		var kerr *kmsError
		k, pt, kerr = s.open(blob, nil)
		if kerr != nil || (req.KeyID != "" && req.KeyID != k.ID) {
			huaweiFail(w, http.StatusBadRequest, "KMS.InvalidCiphertext", "the cipher_text is not this KMS's, or not key %q's", req.KeyID)
			return
		}
		clear = "data_key"
		resp["key_id"], resp["datakey_length"] = k.ID, fmt.Sprint(len(pt))
	case "create-datakey", "gen-random":
		bits := req.DatakeyLength
		if parts[3] == "gen-random" {
			bits = req.RandomDataLength
		}
		var n int
		if _, err := fmt.Sscan(bits, &n); err != nil || n < 8 || n > 8192 || n%8 != 0 {
			huaweiFail(w, http.StatusBadRequest, "KMS.InvalidRequest", "length %q: want bits, a multiple of 8", bits)
			return
		}
		pt = make([]byte, n/8)
		io.ReadFull(s.rand(), pt)
		clear = "random_data"
		if parts[3] == "create-datakey" {
			var kerr *kmsError
			if k, kerr = s.key(req.KeyID); kerr != nil {
				huaweiFail(w, http.StatusBadRequest, "KMS.NotFound", "%s", kerr.Message)
				return
			}
			blob, err := s.seal(k, pt, nil)
			if err != nil {
				huaweiFail(w, http.StatusBadRequest, "KMS.InvalidRequest", "%v", err)
				return
			}
			clear = "plain_text"
			resp["key_id"], resp["cipher_text"] = k.ID, hex.EncodeToString(blob)
		}
	default:
		huaweiFail(w, http.StatusBadRequest, "KMS.NotFaked", "operation %q is not faked", parts[3])
		return
	}
	if req.Recipient == nil {
		if k != nil && k.RequireRecipient {
			huaweiFail(w, http.StatusForbidden, "KMS.AccessDenied", "the key policy of %s allows this only to an attested enclave (no recipient)", k.ID)
			return
		}
		resp[clear] = hex.EncodeToString(pt)
	} else {
		doc, err := base64.StdEncoding.DecodeString(req.Recipient.AttestationDocument)
		if err != nil {
			huaweiFail(w, http.StatusBadRequest, "KMS.InvalidRequest", "attestation_document is not base64")
			return
		}
		env, kerr := s.release(k, doc, req.Recipient.KeyEncryptionAlgorithm, pt)
		if kerr != nil {
			status, code := http.StatusBadRequest, "KMS.InvalidRequest"
			if kerr.Type == "AccessDeniedException" {
				status, code = http.StatusForbidden, "KMS.AccessDenied"
			}
			huaweiFail(w, status, code, "%s", kerr.Message)
			return
		}
		resp["ciphertext_recipient"] = base64.StdEncoding.EncodeToString(env)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}
