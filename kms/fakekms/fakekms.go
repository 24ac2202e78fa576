// Package fakekms is a faithful fake of AWS KMS's recipient flow, for
// tests and local boots: the JSON 1.1 TrentService protocol the AWS SDKs
// speak (Encrypt, Decrypt, GenerateDataKey, GenerateDataKeyPair, GenerateRandom), keys whose
// policy binds them to attested PCRs (kms:RecipientAttestation:PCRn,
// kms:RecipientAttestation:ImageSha384), attestation documents verified
// against a given root (the simulator's) or, only when told, QEMU's
// unsigned ones, and AWS's exact envelope (kms/envelope) in
// CiphertextForRecipient. Errors are AWS's: AccessDeniedException for a
// policy mismatch or a document that does not verify, ValidationException
// for a malformed request or algorithm, NotFoundException for an unknown
// key, InvalidCiphertextException for a ciphertext it did not make.
//
// It signs nothing: the requests' SigV4 signatures are not checked.
package fakekms

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/qtenclave/enclave/kms/envelope"
	"github.com/qtenclave/enclave/qtsm/attestation"
)

// Key is one symmetric key and its policy.
type Key struct {
	ID       string
	Material [32]byte
	// RequirePCRs are the policy's conditions on a recipient's attested
	// PCRs (index to lowercase hex): every one must match.
	RequirePCRs map[int]string
	// RequireRecipient refuses a request without an attestation (a
	// policy that allows decrypting only to an enclave).
	RequireRecipient bool
}

// Server is the fake KMS. Its zero value has no keys.
type Server struct {
	// Verify is how recipients' documents are checked (Roots: the
	// simulator's; AllowUnsigned only for QEMU's emulated NSM).
	Verify attestation.Options
	// Rand is the randomness for keys and envelopes (crypto/rand if nil).
	Rand io.Reader
	// Huawei, when set, checks the signature of Huawei-shaped requests.
	Huawei *HuaweiCredentials

	mu   sync.Mutex
	keys map[string]*Key
	// Calls counts requests by operation.
	calls map[string]int
}

// AddKey adds k.
func (s *Server) AddKey(k *Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = map[string]*Key{}
	}
	s.keys[k.ID] = k
}

// Calls returns how many requests of op were served.
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

func (s *Server) rand() io.Reader {
	if s.Rand != nil {
		return s.Rand
	}
	return rand.Reader
}

// kmsError is an AWS error answer.
type kmsError struct {
	Type    string `json:"__type"`
	Message string `json:"message"`
	status  int
}

func (e *kmsError) Error() string { return e.Type + ": " + e.Message }

func denied(format string, args ...any) *kmsError {
	return &kmsError{"AccessDeniedException", fmt.Sprintf(format, args...), http.StatusBadRequest}
}

func invalid(format string, args ...any) *kmsError {
	return &kmsError{"ValidationException", fmt.Sprintf(format, args...), http.StatusBadRequest}
}

// recipient is the request's Recipient.
type recipient struct {
	AttestationDocument    []byte
	KeyEncryptionAlgorithm string
}

type request struct {
	KeyId             string
	CiphertextBlob    []byte
	Plaintext         []byte
	EncryptionContext map[string]string
	KeySpec           string
	KeyPairSpec       string
	NumberOfBytes     int
	Recipient         *recipient
}

// ServeHTTP serves the JSON 1.1 protocol: POST with X-Amz-Target
// "TrentService.<Operation>".
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/v1.0/") {
		s.serveHuawei(w, r)
		return
	}
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "TrentService.")
	var resp any
	var err *kmsError
	if r.Method != http.MethodPost || !ok {
		err = &kmsError{"UnknownOperationException", "want POST with X-Amz-Target: TrentService.<Operation>", http.StatusBadRequest}
	} else {
		s.mu.Lock()
		if s.calls == nil {
			s.calls = map[string]int{}
		}
		s.calls[op]++
		s.mu.Unlock()
		var req request
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if derr := dec.Decode(&req); derr != nil {
			err = invalid("request body: %v", derr)
		} else {
			resp, err = s.do(op, &req)
		}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	if err != nil {
		w.Header().Set("X-Amzn-ErrorType", err.Type)
		w.WriteHeader(err.status)
		json.NewEncoder(w).Encode(err)
		return
	}
	json.NewEncoder(w).Encode(resp)
}

func (s *Server) key(id string) (*Key, *kmsError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[id]
	if !ok {
		return nil, &kmsError{"NotFoundException", fmt.Sprintf("key %q does not exist", id), http.StatusBadRequest}
	}
	return k, nil
}

func (s *Server) do(op string, req *request) (any, *kmsError) {
	switch op {
	case "Encrypt":
		k, err := s.key(req.KeyId)
		if err != nil {
			return nil, err
		}
		blob, serr := s.seal(k, req.Plaintext, req.EncryptionContext)
		if serr != nil {
			return nil, invalid("%v", serr)
		}
		return map[string]any{"KeyId": k.ID, "CiphertextBlob": blob, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}, nil
	case "Decrypt":
		k, pt, err := s.open(req.CiphertextBlob, req.EncryptionContext)
		if err != nil {
			return nil, err
		}
		if req.KeyId != "" && req.KeyId != k.ID {
			return nil, &kmsError{"IncorrectKeyException", "the ciphertext was made with another key", http.StatusBadRequest}
		}
		return s.answer(k, req.Recipient, pt, map[string]any{"KeyId": k.ID, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
	case "GenerateDataKey":
		k, err := s.key(req.KeyId)
		if err != nil {
			return nil, err
		}
		n := req.NumberOfBytes
		switch {
		case req.KeySpec == "AES_256" && n == 0:
			n = 32
		case req.KeySpec == "AES_128" && n == 0:
			n = 16
		case req.KeySpec != "" || n < 1 || n > 1024:
			return nil, invalid("KeySpec %q, NumberOfBytes %d", req.KeySpec, req.NumberOfBytes)
		}
		dk := make([]byte, n)
		io.ReadFull(s.rand(), dk)
		blob, serr := s.seal(k, dk, req.EncryptionContext)
		if serr != nil {
			return nil, invalid("%v", serr)
		}
		return s.answer(k, req.Recipient, dk, map[string]any{"KeyId": k.ID, "CiphertextBlob": blob})
	case "GenerateDataKeyPair":
		k, err := s.key(req.KeyId)
		if err != nil {
			return nil, err
		}
		priv, pub, perr := s.keyPair(req.KeyPairSpec)
		if perr != nil {
			return nil, perr
		}
		blob, serr := s.seal(k, priv, req.EncryptionContext)
		if serr != nil {
			return nil, invalid("%v", serr)
		}
		resp, aerr := s.answer(k, req.Recipient, priv, map[string]any{"KeyId": k.ID, "KeyPairSpec": req.KeyPairSpec,
			"PublicKey": pub, "PrivateKeyCiphertextBlob": blob})
		if m, ok := resp.(map[string]any); ok && m["Plaintext"] != nil {
			m["PrivateKeyPlaintext"] = m["Plaintext"]
			delete(m, "Plaintext")
		}
		return resp, aerr
	case "GenerateRandom":
		if req.NumberOfBytes < 1 || req.NumberOfBytes > 1024 {
			return nil, invalid("NumberOfBytes %d outside 1..1024", req.NumberOfBytes)
		}
		b := make([]byte, req.NumberOfBytes)
		io.ReadFull(s.rand(), b)
		return s.answer(nil, req.Recipient, b, map[string]any{})
	}
	return nil, &kmsError{"UnknownOperationException", "operation " + op + " is not faked", http.StatusBadRequest}
}

// answer puts secret into resp: for a recipient, as CiphertextForRecipient
// once its document and the key's policy allow it; else as Plaintext, if
// the policy allows that.
func (s *Server) answer(k *Key, rc *recipient, secret []byte, resp map[string]any) (any, *kmsError) {
	if rc == nil {
		if k != nil && k.RequireRecipient {
			return nil, denied("the key policy of %s allows this only to an attested enclave (no Recipient)", k.ID)
		}
		resp["Plaintext"] = secret
		return resp, nil
	}
	env, err := s.release(k, rc.AttestationDocument, rc.KeyEncryptionAlgorithm, secret)
	if err != nil {
		return nil, err
	}
	resp["CiphertextForRecipient"] = env
	return resp, nil
}

// release seals secret to the recipient whose attestation document is
// doc, once the document verifies and satisfies k's policy (k nil: no
// policy, GenerateRandom).
func (s *Server) release(k *Key, doc []byte, alg string, secret []byte) ([]byte, *kmsError) {
	if alg != "RSAES_OAEP_SHA_256" {
		return nil, invalid("KeyEncryptionAlgorithm %q, want RSAES_OAEP_SHA_256", alg)
	}
	res, err := attestation.VerifyBytes(doc, s.Verify)
	if err != nil {
		return nil, denied("the recipient's attestation document does not verify: %v", err)
	}
	d := res.Document
	if k != nil {
		for _, i := range slices.Sorted(maps.Keys(k.RequirePCRs)) {
			if got := hex.EncodeToString(d.PCRs[i]); got != strings.ToLower(k.RequirePCRs[i]) {
				return nil, denied("the key policy of %s requires kms:RecipientAttestation:PCR%d %s; the enclave has %s", k.ID, i, k.RequirePCRs[i], got)
			}
		}
	}
	pub, perr := x509.ParsePKIXPublicKey(d.PublicKey)
	rpub, ok := pub.(*rsa.PublicKey)
	if perr != nil || !ok || rpub.N.BitLen() < 2048 {
		return nil, invalid("the attestation document's public_key is not an RSA key of 2048 bits or more")
	}
	env, serr := envelope.Seal(s.rand(), rpub, secret)
	if serr != nil {
		return nil, invalid("%v", serr)
	}
	return env, nil
}

// keyPair makes a data key pair: the private key in PKCS#8 DER, the
// public key as a SubjectPublicKeyInfo.
func (s *Server) keyPair(spec string) (priv, pub []byte, kerr *kmsError) {
	var k crypto.Signer
	var err error
	switch spec {
	case "ECC_NIST_P256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), s.rand())
	case "ECC_NIST_P384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), s.rand())
	case "RSA_2048":
		k, err = rsa.GenerateKey(s.rand(), 2048)
	default:
		return nil, nil, invalid("KeyPairSpec %q: the fake makes ECC_NIST_P256, ECC_NIST_P384 and RSA_2048", spec)
	}
	if err == nil {
		priv, err = x509.MarshalPKCS8PrivateKey(k)
	}
	if err == nil {
		pub, err = x509.MarshalPKIXPublicKey(k.Public())
	}
	if err != nil {
		return nil, nil, invalid("%v", err)
	}
	return priv, pub, nil
}

// The fake's ciphertext blob: "QTFK", the key ID's length and bytes, a
// 12-byte nonce, then AES-256-GCM of the plaintext with the encryption
// context (sorted key=value lines) as additional data.
const magic = "QTFK"

func contextAAD(ctx map[string]string) []byte {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(ctx)) {
		fmt.Fprintf(&b, "%q=%q\n", k, ctx[k])
	}
	return []byte(b.String())
}

func (s *Server) seal(k *Key, pt []byte, ctx map[string]string) ([]byte, error) {
	if len(k.ID) > 255 {
		return nil, errors.New("key ID too long")
	}
	block, _ := aes.NewCipher(k.Material[:])
	gcm, _ := cipher.NewGCM(block)
	out := append([]byte(magic), byte(len(k.ID)))
	out = append(out, k.ID...)
	nonce := make([]byte, gcm.NonceSize())
	io.ReadFull(s.rand(), nonce)
	out = append(out, nonce...)
	return gcm.Seal(out, nonce, pt, contextAAD(ctx)), nil
}

// Encrypt makes a ciphertext blob with key id, as TrentService.Encrypt
// would (for tests that need one).
func (s *Server) Encrypt(id string, pt []byte, ctx map[string]string) ([]byte, error) {
	k, err := s.key(id)
	if err != nil {
		return nil, err
	}
	return s.seal(k, pt, ctx)
}

func (s *Server) open(blob []byte, ctx map[string]string) (*Key, []byte, *kmsError) {
	bad := &kmsError{"InvalidCiphertextException", "the ciphertext is not this KMS's, or the encryption context differs", http.StatusBadRequest}
	if len(blob) < 5 || string(blob[:4]) != magic || len(blob) < 5+int(blob[4])+12 {
		return nil, nil, bad
	}
	id := string(blob[5 : 5+int(blob[4])])
	k, err := s.key(id)
	if err != nil {
		return nil, nil, bad
	}
	rest := blob[5+len(id):]
	block, _ := aes.NewCipher(k.Material[:])
	gcm, _ := cipher.NewGCM(block)
	pt, gerr := gcm.Open(nil, rest[:12], rest[12:], contextAAD(ctx))
	if gerr != nil {
		return nil, nil, bad
	}
	return k, pt, nil
}
