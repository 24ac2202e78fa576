// Package api is the qtsm-agent's wire protocol: HTTP/1.1 over a Unix
// socket, JSON bodies, paths under /v1. The server (package agent) and the Go
// client (package agent/client) share these definitions; agent/API.md
// describes the protocol for everybody else.
//
// Encodings in JSON bodies: PCR values (digests) are lowercase hex strings;
// every other byte field (data, nonce, user_data, public_key, document,
// random) is standard base64 with padding, as encoding/json writes []byte.
// A byte field that is absent or null is "not given"; "" is an empty value.
package api

import (
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/qtenclave/enclave/qtsm"
)

// DefaultSocket is where qtsm-agent listens unless told otherwise.
const DefaultSocket = "/run/qtsm.sock"

// MaxBody is the largest request body the agent reads (64 KiB).
const MaxBody = 64 << 10

// MaxRandom is the largest number of bytes GET /v1/random?bytes=N returns.
const MaxRandom = 4096

// Paths. {index} is a decimal PCR index.
const (
	PathHealth      = "/v1/health"
	PathDescribe    = "/v1/describe"
	PathPCRs        = "/v1/pcrs"                // GET: all PCRs, or ?index=0,1,2
	PathPCR         = "/v1/pcrs/{index}"        // GET: one PCR
	PathExtend      = "/v1/pcrs/{index}/extend" // POST ExtendRequest
	PathLock        = "/v1/pcrs/{index}/lock"   // POST
	PathLockRange   = "/v1/pcrs/lock"           // POST LockRangeRequest
	PathAttestation = "/v1/attestation"         // POST AttestationRequest, or GET ?nonce=HEX&...
	PathRandom      = "/v1/random"              // GET, ?bytes=N
	PathRaw         = "/v1/raw"                 // POST: the module's CBOR request in, its CBOR answer out
	PathKMS         = "/v1/kms/{op}"            // POST KMSRequest: decrypt, generate-data-key, generate-data-key-pair, generate-random
)

// Media types.
const (
	MediaJSON   = "application/json"
	MediaCBOR   = "application/cbor"
	MediaBinary = "application/octet-stream"
)

// Hex is a byte string that JSON encodes as lowercase hex.
type Hex []byte

// MarshalJSON implements json.Marshaler.
func (h Hex) MarshalJSON() ([]byte, error) {
	if h == nil {
		return []byte("null"), nil
	}
	return json.Marshal(hex.EncodeToString(h))
}

// UnmarshalJSON implements json.Unmarshaler.
func (h *Hex) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*h = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("hex value: %w", err)
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("hex value: %w", err)
	}
	*h = d
	return nil
}

// Health answers GET /v1/health.
type Health struct {
	Status string `json:"status"` // "ok", or "shutting-down"
	Device string `json:"device"` // e.g. "/dev/nsm" or "simulator (nitro)"
	Vendor string `json:"vendor"` // nitro, qingtian or unknown
	Stats
}

// Stats are the agent's request counters since start.
type Stats struct {
	// Queued is the number of requests waiting for the device now.
	Queued int `json:"queued"`
	// Accepted requests entered the device queue.
	Accepted uint64 `json:"accepted"`
	// Executed requests were sent to the device (each once).
	Executed uint64 `json:"executed"`
	// Dropped requests left the queue unsent because their client had
	// gone or their deadline had passed.
	Dropped uint64 `json:"dropped"`
	// Rejected requests were refused with 503 because the queue was full.
	Rejected uint64 `json:"rejected"`
	// Denied requests were refused by the policy (403).
	Denied uint64 `json:"denied"`
	// DeviceNanos is the total time spent in device calls, in nanoseconds.
	DeviceNanos uint64 `json:"device_ns"`
}

// Description answers GET /v1/describe.
type Description = qtsm.Description

// PCR is one register, in GET /v1/pcrs and GET /v1/pcrs/{index}.
type PCR struct {
	Index  int  `json:"index"`
	Locked bool `json:"locked"`
	Value  Hex  `json:"value"`
}

// PCRList answers GET /v1/pcrs.
type PCRList struct {
	PCRs []PCR `json:"pcrs"`
}

// ExtendRequest is the body of POST /v1/pcrs/{index}/extend (or send the
// data itself as application/octet-stream).
type ExtendRequest struct {
	Data []byte `json:"data"`
}

// ExtendResponse answers an extension with the PCR's new value.
type ExtendResponse struct {
	Index int `json:"index"`
	Value Hex `json:"value"`
}

// LockResponse answers POST /v1/pcrs/{index}/lock and /v1/pcrs/lock.
type LockResponse struct {
	// Index is the locked PCR (lock of one), Range the count locked from 0
	// (lock of a range).
	Index  *int `json:"index,omitempty"`
	Range  *int `json:"range,omitempty"`
	Locked bool `json:"locked"`
}

// LockRangeRequest is the body of POST /v1/pcrs/lock: lock PCRs [0, Range).
type LockRangeRequest struct {
	Range *int `json:"range"`
}

// AttestationRequest is the body of POST /v1/attestation (may be empty).
type AttestationRequest struct {
	Nonce     []byte `json:"nonce"`
	UserData  []byte `json:"user_data"`
	PublicKey []byte `json:"public_key"`
}

// AttestationResponse answers POST /v1/attestation as JSON; with
// "Accept: application/cbor" the body is the COSE_Sign1 document itself.
type AttestationResponse struct {
	Document []byte `json:"document"`
}

// RandomResponse answers GET /v1/random as JSON; with
// "Accept: application/octet-stream" the body is the bytes themselves.
type RandomResponse struct {
	Random []byte `json:"random"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	// Error is the secure module's error name (InvalidIndex, ReadOnlyIndex,
	// InputTooLarge, ...) or one of the agent's Err* names.
	Error string `json:"error"`
	// Op is the secure-module operation, when there is one.
	Op string `json:"op,omitempty"`
	// Detail says what was wrong.
	Detail string `json:"detail,omitempty"`
}

// The agent's own error names (all others are the secure module's).
const (
	ErrBadRequest       = "BadRequest"       // 400: unparsable request
	ErrNotFound         = "NotFound"         // 404
	ErrMethodNotAllowed = "MethodNotAllowed" // 405
	ErrNotAcceptable    = "NotAcceptable"    // 406
	ErrPermission       = "PermissionDenied" // 403: policy
	ErrTooLarge         = "RequestTooLarge"  // 413: body over MaxBody
	ErrUnsupportedMedia = "UnsupportedMediaType"
	ErrBusy             = "Busy"         // 503: queue full
	ErrShuttingDown     = "ShuttingDown" // 503
	ErrTimeout          = "Timeout"      // 504
	ErrDevice           = "DeviceError"  // 502: the device failed (not an error answer)
)

// AgentErrors are the agent's own error names.
var AgentErrors = map[string]bool{
	ErrBadRequest: true, ErrNotFound: true, ErrMethodNotAllowed: true, ErrNotAcceptable: true,
	ErrPermission: true, ErrTooLarge: true, ErrUnsupportedMedia: true, ErrBusy: true,
	ErrShuttingDown: true, ErrTimeout: true, ErrDevice: true,
}

// KMSRequest asks KMS for a secret released only to this enclave
// (POST /v1/kms/{op}). Byte fields are base64.
type KMSRequest struct {
	Vendor            string            `json:"vendor,omitempty"` // "aws" (default) or "huawei"
	Region            string            `json:"region,omitempty"`
	Endpoint          string            `json:"endpoint,omitempty"`
	KeyID             string            `json:"key_id,omitempty"`
	Ciphertext        []byte            `json:"ciphertext,omitempty"`
	EncryptionContext map[string]string `json:"encryption_context,omitempty"`
	Bytes             int               `json:"bytes,omitempty"`
	KeyPairSpec       string            `json:"key_pair_spec,omitempty"`
	ProjectID         string            `json:"project_id,omitempty"` // huawei
	Credentials       KMSCredentials    `json:"credentials"`
}

// KMSCredentials sign the KMS request: AWS's access key, or Huawei's AK
// and SK.
type KMSCredentials struct {
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
	SessionToken    string `json:"session_token,omitempty"`
}

// KMSResponse carries the secret (opened in the agent) and, for data keys,
// what KMS returns besides.
type KMSResponse struct {
	Plaintext      []byte `json:"plaintext"`
	CiphertextBlob []byte `json:"ciphertext_blob,omitempty"`
	PublicKey      []byte `json:"public_key,omitempty"`
}
