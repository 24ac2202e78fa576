package eif

import (
	"errors"
	"fmt"
)

// ErrInvalid matches every validation error: errors.Is(err, ErrInvalid)
// tells a malformed image from an I/O error.
var ErrInvalid = errors.New("invalid EIF")

// Kinds of validation errors; errors.Is(err, ErrCRC) and so on. Each also
// matches ErrInvalid.
var (
	ErrTruncated      = errors.New("truncated")
	ErrMagic          = errors.New("bad magic")
	ErrVersion        = errors.New("unsupported version")
	ErrFlags          = errors.New("unknown header flags")
	ErrSectionCount   = errors.New("bad section count")
	ErrSectionBounds  = errors.New("section outside the file")
	ErrSectionOverlap = errors.New("sections overlap")
	ErrSectionHeader  = errors.New("bad section header")
	ErrSectionType    = errors.New("bad section type")
	ErrLayout         = errors.New("bad section layout")
	ErrCRC            = errors.New("CRC mismatch")
	ErrCmdline        = errors.New("bad cmdline")
	ErrMetadata       = errors.New("bad metadata")
	ErrSignature      = errors.New("bad signature section")
)

// FormatError is a validation error: Kind is one of the Err* kinds above,
// Detail says what exactly is wrong.
type FormatError struct {
	Kind   error
	Detail string
}

func (e *FormatError) Error() string {
	return "eif: invalid image: " + e.Kind.Error() + ": " + e.Detail
}

// Unwrap returns the kind.
func (e *FormatError) Unwrap() error { return e.Kind }

// Is matches ErrInvalid in addition to the kind.
func (e *FormatError) Is(target error) bool { return target == ErrInvalid }

func invalid(kind error, format string, args ...any) error {
	return &FormatError{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}
