package qtsm

import (
	"errors"
	"fmt"
)

// Code is a secure-module error code. The numbers are QTSM's C error codes;
// the names are NSM's (and QTSM's) CBOR error names.
type Code uint32

// Error codes.
const (
	CodeSuccess          Code = 0
	CodeInvalidIndex     Code = 1
	CodeInvalidResponse  Code = 2
	CodeInvalidArgument  Code = 3
	CodeReadOnlyIndex    Code = 4
	CodeInvalidOperation Code = 5
	CodeBufferTooSmall   Code = 6
	CodeInputTooLarge    Code = 7
	CodeInternalError    Code = 8
	CodeInvalidQTSMCert  Code = 9
	// CodeUnknown is used for an error name this package does not know; the
	// name is kept in Error.Name.
	CodeUnknown Code = 0xffffffff
)

var codeNames = map[Code]string{
	CodeSuccess:          "Success",
	CodeInvalidIndex:     "InvalidIndex",
	CodeInvalidResponse:  "InvalidResponse",
	CodeInvalidArgument:  "InvalidArgument",
	CodeReadOnlyIndex:    "ReadOnlyIndex",
	CodeInvalidOperation: "InvalidOperation",
	CodeBufferTooSmall:   "BufferTooSmall",
	CodeInputTooLarge:    "InputTooLarge",
	CodeInternalError:    "InternalError",
	CodeInvalidQTSMCert:  "InvalidQtsmCert",
}

var namesToCode = func() map[string]Code {
	m := make(map[string]Code, len(codeNames))
	for c, n := range codeNames {
		m[n] = c
	}
	return m
}()

// String returns the wire name of the code.
func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("Code(%d)", uint32(c))
}

// CodeFromName maps a wire error name to its code (CodeUnknown if unknown).
func CodeFromName(name string) Code {
	if c, ok := namesToCode[name]; ok {
		return c
	}
	return CodeUnknown
}

// Error is an error reported by the secure module (or by this package's
// validation, which refuses what the module would refuse before sending it).
// Compare with errors.Is against the Err* values, or errors.As to read Code.
type Error struct {
	Code Code
	// Name is the wire name; it differs from Code.String() only for
	// CodeUnknown.
	Name string
	// Op is the operation, e.g. "ExtendPCR".
	Op string
	// Detail says what was wrong, for validation errors.
	Detail string
}

func (e *Error) Error() string {
	name := e.Name
	if name == "" {
		name = e.Code.String()
	}
	s := "qtsm: "
	if e.Op != "" {
		s += e.Op + ": "
	}
	s += name
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, qtsm.ErrInvalidIndex) works whatever Op and Detail say.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	if e.Code == CodeUnknown || t.Code == CodeUnknown {
		return e.Code == t.Code && e.Name == t.Name
	}
	return e.Code == t.Code
}

// Sentinel errors for errors.Is.
var (
	ErrInvalidIndex     = &Error{Code: CodeInvalidIndex}
	ErrInvalidResponse  = &Error{Code: CodeInvalidResponse}
	ErrInvalidArgument  = &Error{Code: CodeInvalidArgument}
	ErrReadOnlyIndex    = &Error{Code: CodeReadOnlyIndex}
	ErrInvalidOperation = &Error{Code: CodeInvalidOperation}
	ErrBufferTooSmall   = &Error{Code: CodeBufferTooSmall}
	ErrInputTooLarge    = &Error{Code: CodeInputTooLarge}
	ErrInternalError    = &Error{Code: CodeInternalError}
	ErrInvalidQTSMCert  = &Error{Code: CodeInvalidQTSMCert}
)

// Transport-level errors (not reported by the module itself).
var (
	// ErrNoDevice: neither /dev/nsm nor /dev/qtsm exists.
	ErrNoDevice = errors.New("qtsm: no secure-module device found")
	// ErrRequestTooLarge: the encoded request exceeds the device's limit.
	ErrRequestTooLarge = errors.New("qtsm: request larger than the device accepts")
	// ErrResponseTruncated: the response filled the whole buffer and does
	// not decode, so the device cut it.
	ErrResponseTruncated = errors.New("qtsm: response truncated by the device buffer")
	// ErrClosed: the session or device was closed.
	ErrClosed = errors.New("qtsm: closed")
)

// codeError builds a validation error.
func codeError(c Code, op, format string, args ...any) *Error {
	return &Error{Code: c, Name: c.String(), Op: op, Detail: fmt.Sprintf(format, args...)}
}
