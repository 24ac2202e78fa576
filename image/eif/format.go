package eif

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Format constants.
const (
	// Magic is the first four bytes of every EIF.
	Magic = ".eif"
	// Version is the format version this package writes.
	Version = 4
	// HeaderSize is the size of the file header.
	HeaderSize = 548
	// SectionHeaderSize is the size of a section header.
	SectionHeaderSize = 12
	// MaxSections is the size of the section table.
	MaxSections = 32
	// MinSections is the smallest section count the loaders accept.
	MinSections = 2

	// DefaultMemory and DefaultCPUs are what the reference writer stores
	// (the header fields are informative; the launcher decides).
	DefaultMemory = 1 << 30
	DefaultCPUs   = 2

	// crcOffset is the offset of the CRC field: the CRC covers [0,crcOffset).
	crcOffset = HeaderSize - 4
)

// Arch is the architecture recorded in the header flags (bit 0).
type Arch uint16

// Architectures.
const (
	ArchX86_64  Arch = 0
	ArchAArch64 Arch = 1

	archMask = 1
)

func (a Arch) String() string {
	switch a {
	case ArchX86_64:
		return "x86_64"
	case ArchAArch64:
		return "aarch64"
	}
	return fmt.Sprintf("Arch(%d)", uint16(a))
}

// ParseArch accepts x86_64 (amd64) and aarch64 (arm64).
func ParseArch(s string) (Arch, error) {
	switch strings.ToLower(s) {
	case "x86_64", "amd64", "x86-64":
		return ArchX86_64, nil
	case "aarch64", "arm64":
		return ArchAArch64, nil
	}
	return 0, fmt.Errorf("eif: unknown architecture %q (want x86_64 or aarch64)", s)
}

// SectionType is the type of a section.
type SectionType uint16

// Section types.
const (
	SectionInvalid   SectionType = 0
	SectionKernel    SectionType = 1
	SectionCmdline   SectionType = 2
	SectionRamdisk   SectionType = 3
	SectionSignature SectionType = 4
	SectionMetadata  SectionType = 5

	sectionTypeMax = 6
)

var sectionNames = [...]string{"invalid", "kernel", "cmdline", "ramdisk", "signature", "metadata"}

func (t SectionType) String() string {
	if int(t) < len(sectionNames) {
		return sectionNames[t]
	}
	return fmt.Sprintf("unknown(%d)", uint16(t))
}

// Header is the 548-byte file header.
type Header struct {
	Version        uint16
	Flags          uint16
	DefaultMemory  uint64
	DefaultCPUs    uint64
	Reserved       uint16
	NumSections    uint16
	SectionOffsets [MaxSections]uint64 // file offset of each section header
	SectionSizes   [MaxSections]uint64 // size of each section's data
	Unused         uint32
	CRC32          uint32
}

// Arch returns the architecture from the flags.
func (h *Header) Arch() Arch { return Arch(h.Flags & archMask) }

// MarshalBinary encodes the header (548 bytes, big-endian).
func (h *Header) MarshalBinary() ([]byte, error) { return h.encode(), nil }

func (h *Header) encode() []byte {
	b := make([]byte, HeaderSize)
	copy(b, Magic)
	be := binary.BigEndian
	be.PutUint16(b[4:], h.Version)
	be.PutUint16(b[6:], h.Flags)
	be.PutUint64(b[8:], h.DefaultMemory)
	be.PutUint64(b[16:], h.DefaultCPUs)
	be.PutUint16(b[24:], h.Reserved)
	be.PutUint16(b[26:], h.NumSections)
	p := 28
	for _, o := range h.SectionOffsets {
		be.PutUint64(b[p:], o)
		p += 8
	}
	for _, s := range h.SectionSizes {
		be.PutUint64(b[p:], s)
		p += 8
	}
	be.PutUint32(b[p:], h.Unused)
	be.PutUint32(b[p+4:], h.CRC32)
	return b
}

// decodeHeader decodes b (HeaderSize bytes) without validating anything but
// the length; the magic is checked by the caller.
func decodeHeader(b []byte) Header {
	var h Header
	be := binary.BigEndian
	h.Version = be.Uint16(b[4:])
	h.Flags = be.Uint16(b[6:])
	h.DefaultMemory = be.Uint64(b[8:])
	h.DefaultCPUs = be.Uint64(b[16:])
	h.Reserved = be.Uint16(b[24:])
	h.NumSections = be.Uint16(b[26:])
	p := 28
	for i := range h.SectionOffsets {
		h.SectionOffsets[i] = be.Uint64(b[p:])
		p += 8
	}
	for i := range h.SectionSizes {
		h.SectionSizes[i] = be.Uint64(b[p:])
		p += 8
	}
	h.Unused = be.Uint32(b[p:])
	h.CRC32 = be.Uint32(b[p+4:])
	return h
}

// sectionHeader is the 12-byte header in front of each section's data.
type sectionHeader struct {
	Type  SectionType
	Flags uint16
	Size  uint64
}

func (s sectionHeader) encode() []byte {
	b := make([]byte, SectionHeaderSize)
	binary.BigEndian.PutUint16(b[0:], uint16(s.Type))
	binary.BigEndian.PutUint16(b[2:], s.Flags)
	binary.BigEndian.PutUint64(b[4:], s.Size)
	return b
}

func decodeSectionHeader(b []byte) sectionHeader {
	return sectionHeader{
		Type:  SectionType(binary.BigEndian.Uint16(b[0:])),
		Flags: binary.BigEndian.Uint16(b[2:]),
		Size:  binary.BigEndian.Uint64(b[4:]),
	}
}
