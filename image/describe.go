package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/qtenclave/enclave/image/eif"
)

// Description is what qtenclave describe prints of an EIF.
type Description struct {
	EifVersion   uint16            `json:"EifVersion"`
	Arch         string            `json:"Arch"`
	Flags        uint16            `json:"Flags"`
	DefaultMem   uint64            `json:"DefaultMemory"`
	DefaultCPUs  uint64            `json:"DefaultCPUs"`
	CRC32        string            `json:"CRC32"`
	CheckCRC     bool              `json:"CheckCRC"`
	FileSize     int64             `json:"FileSize"`
	Sections     []SectionInfo     `json:"Sections"`
	Kernel       eif.KernelInfo    `json:"Kernel"`
	Cmdline      string            `json:"Cmdline"`
	Metadata     json.RawMessage   `json:"Metadata"`
	Measurements *eif.Measurements `json:"Measurements"`
	IsSigned     bool              `json:"IsSigned"`
	Signature    *SignatureInfo    `json:"Signature,omitempty"`
}

type SectionInfo struct {
	Index      int    `json:"Index"`
	Type       string `json:"Type"`
	Offset     int64  `json:"Offset"`     // section header
	DataOffset int64  `json:"DataOffset"` // data
	Size       int64  `json:"Size"`
}

type SignatureInfo struct {
	Verified    bool      `json:"Verified"`
	Error       string    `json:"Error,omitempty"`
	Algorithm   string    `json:"Algorithm,omitempty"`
	Subject     string    `json:"Subject"`
	Issuer      string    `json:"Issuer"`
	Serial      string    `json:"Serial"`
	NotBefore   time.Time `json:"NotBefore"`
	NotAfter    time.Time `json:"NotAfter"`
	Expired     bool      `json:"Expired"`
	Entries     int       `json:"Entries"`
	Certificate string    `json:"CertificateSHA256"`
}

// Describe checks what it can of f (measured as m) and describes it; now
// decides whether the signing certificate has expired.
func Describe(f *eif.File, m *eif.Measurements, now time.Time) (*Description, error) {
	h := f.Header
	doc := &Description{
		EifVersion: h.Version, Arch: f.Arch().String(), Flags: h.Flags,
		DefaultMem: h.DefaultMemory, DefaultCPUs: h.DefaultCPUs,
		CRC32: fmt.Sprintf("%#08x", h.CRC32), CheckCRC: true, FileSize: f.Size,
		Measurements: m,
	}
	for _, s := range f.Sections {
		doc.Sections = append(doc.Sections, SectionInfo{
			Index: s.Index, Type: s.Type.String(), Offset: s.Offset, DataOffset: s.DataOffset(), Size: s.Size,
		})
	}
	k := f.Kernel()
	doc.Kernel = eif.InspectKernel(k, k.Size)
	var err error
	if doc.Cmdline, err = f.Cmdline(); err != nil {
		return nil, err
	}
	md, err := f.MetadataBytes()
	if err != nil {
		return nil, err
	}
	doc.Metadata = json.RawMessage("null")
	if md != nil {
		doc.Metadata = md
	}
	sig, err := f.Signature()
	if err != nil {
		return nil, err
	}
	if sig != nil {
		doc.IsSigned = true
		c := sig.Certificate
		sum := sha256Hex(c.Raw)
		ds := &SignatureInfo{
			Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: c.SerialNumber.String(),
			NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), Expired: now.After(c.NotAfter),
			Entries: sig.Entries, Certificate: sum,
		}
		if alg, err := sig.Verify(m.PCR0); err != nil {
			ds.Error = err.Error()
		} else {
			ds.Verified, ds.Algorithm = true, alg
		}
		doc.Signature = ds
	}
	return doc, nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
