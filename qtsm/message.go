package qtsm

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Limits the secure module enforces on attestation inputs (and that strict
// verifiers enforce on documents).
const (
	MaxUserData  = 512
	MaxNonce     = 512
	MaxPublicKey = 1024
)

// Request is one request to the secure module.
type Request interface {
	// Op is the variant name on the wire, e.g. "DescribePCR".
	Op() string
	isRequest()
}

// Response is one response from the secure module.
type Response interface {
	Op() string
	isResponse()
}

// Requests.
type (
	// DescribeRequest asks for the module's description ("DescribeNSM").
	DescribeRequest struct{}
	// DescribePCRRequest reads one PCR.
	DescribePCRRequest struct {
		Index uint16 `cbor:"index"`
	}
	// ExtendPCRRequest extends one PCR with Data.
	ExtendPCRRequest struct {
		Index uint16 `cbor:"index"`
		Data  []byte `cbor:"data"`
	}
	// LockPCRRequest locks one PCR.
	LockPCRRequest struct {
		Index uint16 `cbor:"index"`
	}
	// LockPCRsRequest locks PCRs [0, Range).
	LockPCRsRequest struct {
		Range uint16 `cbor:"range"`
	}
	// AttestationRequest asks for a signed attestation document. A nil field
	// is sent as null (absent); a non-nil empty one as an empty byte string.
	AttestationRequest struct {
		UserData  []byte `cbor:"user_data" json:"user_data,omitempty"`
		Nonce     []byte `cbor:"nonce" json:"nonce,omitempty"`
		PublicKey []byte `cbor:"public_key" json:"public_key,omitempty"`
	}
	// GetRandomRequest asks for random bytes.
	GetRandomRequest struct{}
)

// Responses.
type (
	// Description describes the module.
	Description struct {
		VersionMajor uint16   `cbor:"version_major" json:"version_major"`
		VersionMinor uint16   `cbor:"version_minor" json:"version_minor"`
		VersionPatch uint16   `cbor:"version_patch" json:"version_patch"`
		ModuleID     string   `cbor:"module_id" json:"module_id"`
		MaxPCRs      uint16   `cbor:"max_pcrs" json:"max_pcrs"`
		LockedPCRs   []uint16 `cbor:"locked_pcrs" json:"locked_pcrs"`
		Digest       string   `cbor:"digest" json:"digest"`
	}
	// DescribeResponse answers DescribeRequest.
	DescribeResponse struct{ Description }
	// DescribePCRResponse answers DescribePCRRequest.
	DescribePCRResponse struct {
		Lock bool   `cbor:"lock"`
		Data []byte `cbor:"data"`
	}
	// ExtendPCRResponse carries the PCR value after the extension.
	ExtendPCRResponse struct {
		Data []byte `cbor:"data"`
	}
	// LockPCRResponse answers LockPCRRequest.
	LockPCRResponse struct{}
	// LockPCRsResponse answers LockPCRsRequest.
	LockPCRsResponse struct{}
	// AttestationResponse carries the COSE_Sign1 attestation document.
	AttestationResponse struct {
		Document []byte `cbor:"document"`
	}
	// GetRandomResponse carries random bytes.
	GetRandomResponse struct {
		Random []byte `cbor:"random"`
	}
	// ErrorResponse is the module's error answer.
	ErrorResponse struct {
		Code Code
		Name string
	}
)

// Wire names of the variants.
const (
	opDescribe    = "DescribeNSM"
	opDescribePCR = "DescribePCR"
	opExtendPCR   = "ExtendPCR"
	opLockPCR     = "LockPCR"
	opLockPCRs    = "LockPCRs"
	opAttestation = "Attestation"
	opGetRandom   = "GetRandom"
	opError       = "Error"
)

// describeAliases are other names seen or documented for DescribeNSM.
var describeAliases = map[string]bool{opDescribe: true, "Describe": true, "DescribeQTSM": true}

func (DescribeRequest) Op() string    { return opDescribe }
func (DescribePCRRequest) Op() string { return opDescribePCR }
func (ExtendPCRRequest) Op() string   { return opExtendPCR }
func (LockPCRRequest) Op() string     { return opLockPCR }
func (LockPCRsRequest) Op() string    { return opLockPCRs }
func (AttestationRequest) Op() string { return opAttestation }
func (GetRandomRequest) Op() string   { return opGetRandom }

func (DescribeRequest) isRequest()    {}
func (DescribePCRRequest) isRequest() {}
func (ExtendPCRRequest) isRequest()   {}
func (LockPCRRequest) isRequest()     {}
func (LockPCRsRequest) isRequest()    {}
func (AttestationRequest) isRequest() {}
func (GetRandomRequest) isRequest()   {}

func (DescribeResponse) Op() string    { return opDescribe }
func (DescribePCRResponse) Op() string { return opDescribePCR }
func (ExtendPCRResponse) Op() string   { return opExtendPCR }
func (LockPCRResponse) Op() string     { return opLockPCR }
func (LockPCRsResponse) Op() string    { return opLockPCRs }
func (AttestationResponse) Op() string { return opAttestation }
func (GetRandomResponse) Op() string   { return opGetRandom }
func (ErrorResponse) Op() string       { return opError }

func (DescribeResponse) isResponse()    {}
func (DescribePCRResponse) isResponse() {}
func (ExtendPCRResponse) isResponse()   {}
func (LockPCRResponse) isResponse()     {}
func (LockPCRsResponse) isResponse()    {}
func (AttestationResponse) isResponse() {}
func (GetRandomResponse) isResponse()   {}
func (ErrorResponse) isResponse()       {}

// Err converts an error response to an *Error for operation op.
func (r ErrorResponse) Err(op string) *Error {
	name := r.Name
	if name == "" {
		name = r.Code.String()
	}
	return &Error{Code: r.Code, Name: name, Op: op}
}

var (
	// Struct fields are encoded in declaration order (serde's order),
	// integers in their shortest form, nil byte slices as null.
	encMode = func() cbor.EncMode {
		m, err := cbor.EncOptions{Sort: cbor.SortNone, NilContainers: cbor.NilContainerAsNull}.EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{
			DupMapKey:        cbor.DupMapKeyEnforcedAPF,
			IndefLength:      cbor.IndefLengthAllowed,
			MaxNestedLevels:  8,
			MaxArrayElements: 1024,
			MaxMapPairs:      64,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// ErrMalformed wraps every decoding failure.
var ErrMalformed = errors.New("qtsm: malformed message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// EncodeRequest encodes r exactly as the vendor libraries do.
func EncodeRequest(r Request) ([]byte, error) {
	if e, ok := r.(ExtendPCRRequest); ok && e.Data == nil {
		e.Data = []byte{} // serde's Vec<u8> has no null
		r = e
	}
	switch r := r.(type) {
	case DescribeRequest, GetRandomRequest:
		return encMode.Marshal(r.Op())
	case DescribePCRRequest, ExtendPCRRequest, LockPCRRequest, LockPCRsRequest, AttestationRequest:
		return encMode.Marshal(map[string]any{r.Op(): r})
	case *DescribePCRRequest, *ExtendPCRRequest, *LockPCRRequest, *LockPCRsRequest, *AttestationRequest, *DescribeRequest, *GetRandomRequest:
		return nil, fmt.Errorf("qtsm: encode %T: pass requests by value", r)
	default:
		return nil, fmt.Errorf("qtsm: encode: unknown request type %T", r)
	}
}

// EncodeResponse encodes r as the module does.
func EncodeResponse(r Response) ([]byte, error) {
	switch r := r.(type) {
	case LockPCRResponse, LockPCRsResponse:
		return encMode.Marshal(r.Op())
	case DescribeResponse:
		return encMode.Marshal(map[string]any{r.Op(): r.Description})
	case ErrorResponse:
		name := r.Name
		if name == "" {
			name = r.Code.String()
		}
		return encMode.Marshal(map[string]any{opError: name})
	case DescribePCRResponse, ExtendPCRResponse, AttestationResponse, GetRandomResponse:
		return encMode.Marshal(map[string]any{r.Op(): r})
	default:
		return nil, fmt.Errorf("qtsm: encode: unknown response type %T", r)
	}
}

// splitEnum splits an externally tagged enum into its variant name and body
// (nil for a unit variant, encoded as a bare text string).
func splitEnum(b []byte) (string, cbor.RawMessage, error) {
	if len(b) == 0 {
		return "", nil, malformed("empty message")
	}
	switch b[0] >> 5 {
	case 3: // text string: unit variant
		var s string
		if err := decMode.Unmarshal(b, &s); err != nil {
			return "", nil, malformed("%v", err)
		}
		return s, nil, nil
	case 5: // map: one key, the variant
		var m map[string]cbor.RawMessage
		if err := decMode.Unmarshal(b, &m); err != nil {
			return "", nil, malformed("%v", err)
		}
		if len(m) != 1 {
			return "", nil, malformed("enum map has %d keys, want 1", len(m))
		}
		for k, v := range m {
			return k, v, nil
		}
	}
	return "", nil, malformed("message is neither a text string nor a map (initial byte %#x)", b[0])
}

// decodeBody decodes a variant's body into v, which has pointer fields for
// required members; unit reports whether the variant must have no body.
func decodeBody(name string, body cbor.RawMessage, v any) error {
	if body == nil {
		return malformed("%s: missing body", name)
	}
	if err := decMode.Unmarshal(body, v); err != nil {
		return malformed("%s: %v", name, err)
	}
	return nil
}

func noBody(name string, body cbor.RawMessage) error {
	if body != nil {
		return malformed("%s: unit variant has a body", name)
	}
	return nil
}

func need[T any](name, field string, p *T) (T, error) {
	if p == nil {
		var zero T
		return zero, malformed("%s: missing field %q", name, field)
	}
	return *p, nil
}

// DecodeRequest decodes an encoded request.
func DecodeRequest(b []byte) (Request, error) {
	name, body, err := splitEnum(b)
	if err != nil {
		return nil, err
	}
	switch {
	case describeAliases[name]:
		return DescribeRequest{}, noBody(name, body)
	case name == opGetRandom:
		return GetRandomRequest{}, noBody(name, body)
	case name == opDescribePCR || name == opLockPCR:
		var w struct {
			Index *uint16 `cbor:"index"`
		}
		if err := decodeBody(name, body, &w); err != nil {
			return nil, err
		}
		i, err := need(name, "index", w.Index)
		if err != nil {
			return nil, err
		}
		if name == opLockPCR {
			return LockPCRRequest{Index: i}, nil
		}
		return DescribePCRRequest{Index: i}, nil
	case name == opExtendPCR:
		var w struct {
			Index *uint16         `cbor:"index"`
			Data  cbor.RawMessage `cbor:"data"`
		}
		if err := decodeBody(name, body, &w); err != nil {
			return nil, err
		}
		i, err := need(name, "index", w.Index)
		if err != nil {
			return nil, err
		}
		// Data must be a byte string. Some clients (Go's hf/nsm) encode an
		// empty slice as null; the module's own decoder refuses that, and
		// so does this one, saying so.
		switch {
		case w.Data == nil:
			return nil, malformed("%s: missing field %q", name, "data")
		case len(w.Data) == 1 && w.Data[0] == 0xf6:
			return nil, malformed("%s: field %q is null, want a byte string (an empty one for no data)", name, "data")
		}
		var d []byte
		if err := cbor.Unmarshal(w.Data, &d); err != nil || d == nil {
			return nil, malformed("%s: field %q is not a byte string", name, "data")
		}
		return ExtendPCRRequest{Index: i, Data: d}, nil
	case name == opLockPCRs:
		var w struct {
			Range *uint16 `cbor:"range"`
		}
		if err := decodeBody(name, body, &w); err != nil {
			return nil, err
		}
		r, err := need(name, "range", w.Range)
		if err != nil {
			return nil, err
		}
		return LockPCRsRequest{Range: r}, nil
	case name == opAttestation:
		var r AttestationRequest
		if err := decodeBody(name, body, &r); err != nil {
			return nil, err
		}
		return r, nil
	}
	return nil, malformed("unknown request %q", name)
}

// DecodeResponse decodes an encoded response. An error response decodes to
// ErrorResponse (not to a Go error); Session turns it into *Error.
func DecodeResponse(b []byte) (Response, error) {
	name, body, err := splitEnum(b)
	if err != nil {
		return nil, err
	}
	switch {
	case name == opLockPCR:
		return LockPCRResponse{}, noBody(name, body)
	case name == opLockPCRs:
		return LockPCRsResponse{}, noBody(name, body)
	case describeAliases[name]:
		var d Description
		if err := decodeBody(name, body, &d); err != nil {
			return nil, err
		}
		return DescribeResponse{d}, nil
	case name == opDescribePCR:
		var w struct {
			Lock *bool   `cbor:"lock"`
			Data *[]byte `cbor:"data"`
		}
		if err := decodeBody(name, body, &w); err != nil {
			return nil, err
		}
		l, err := need(name, "lock", w.Lock)
		if err != nil {
			return nil, err
		}
		d, err := need(name, "data", w.Data)
		if err != nil {
			return nil, err
		}
		return DescribePCRResponse{Lock: l, Data: d}, nil
	case name == opExtendPCR, name == opAttestation, name == opGetRandom:
		var w struct {
			Data     *[]byte `cbor:"data"`
			Document *[]byte `cbor:"document"`
			Random   *[]byte `cbor:"random"`
		}
		if err := decodeBody(name, body, &w); err != nil {
			return nil, err
		}
		switch name {
		case opExtendPCR:
			d, err := need(name, "data", w.Data)
			return ExtendPCRResponse{Data: d}, err
		case opAttestation:
			d, err := need(name, "document", w.Document)
			return AttestationResponse{Document: d}, err
		default:
			d, err := need(name, "random", w.Random)
			return GetRandomResponse{Random: d}, err
		}
	case name == opError:
		var s string
		if body == nil {
			return nil, malformed("Error: missing body")
		}
		if err := decMode.Unmarshal(body, &s); err != nil {
			return nil, malformed("Error: %v", err)
		}
		return ErrorResponse{Code: CodeFromName(s), Name: s}, nil
	}
	return nil, malformed("unknown response %q", name)
}
