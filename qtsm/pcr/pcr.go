// Package pcr holds the platform configuration register semantics shared by
// the secure module (NSM/QTSM), its simulator and the image tooling: 32
// SHA-384 registers, extended as SHA384(old || data) from 48 zero bytes.
package pcr

import (
	"crypto/sha512"
	"hash"
)

const (
	// Count is the number of PCRs of the secure module.
	Count = 32
	// Size is the size of one PCR value (SHA-384).
	Size = sha512.Size384
	// FirstApp is the first PCR an application may extend and lock; PCRs
	// below it are locked at boot.
	FirstApp = 16
)

// Well-known registers.
const (
	Image      = 0 // kernel, cmdline and all ramdisks
	Kernel     = 1 // kernel, cmdline and the bootstrap ramdisk
	App        = 2 // the application ramdisks
	ParentRole = 3 // parent IAM role ARN / Qingtian IAM agency
	ParentID   = 4 // parent instance ID
	Signer     = 8 // signing certificate
)

// Zero returns the initial value of every PCR: 48 zero bytes.
func Zero() []byte { return make([]byte, Size) }

// Extend returns SHA384(old || data), the value after extending old by data.
func Extend(old, data []byte) []byte {
	h := sha512.New384()
	h.Write(old)
	h.Write(data)
	return h.Sum(nil)
}

// FromDigest returns the PCR value that measures content whose SHA-384 digest
// is sum: SHA384(zero48 || sum). This is how EIF sections are measured.
func FromDigest(sum []byte) []byte { return Extend(Zero(), sum) }

// Measure returns FromDigest(SHA384(content)).
func Measure(content []byte) []byte {
	s := sha512.Sum384(content)
	return FromDigest(s[:])
}

// NewHash returns the hash used for PCR contents, for streaming measurement:
// write the content, then call FromDigest(h.Sum(nil)).
func NewHash() hash.Hash { return sha512.New384() }
