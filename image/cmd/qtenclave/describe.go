package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/qtenclave/enclave/image/eif"
)

func init() {
	register("describe", command{
		summary: "show an EIF's header, sections, metadata, measurements and signature (JSON)",
		run:     runDescribe,
	})
}

const describeUsage = `FILE.eif

Checks FILE.eif (structure, CRC, contents) and prints as JSON: the header
(version, architecture, default memory and CPUs, CRC), the sections (type,
offset of the section header, offset and size of the data), the kernel's
format and version, the cmdline, the metadata, the measurements and, if
signed, the signature: certificate subject, issuer, validity, and whether the
COSE_Sign1 verifies with it over this image's PCR0. Exit status 1 when the
image is invalid or its signature does not verify.`

type describeDoc struct {
	EifVersion   uint16             `json:"EifVersion"`
	Arch         string             `json:"Arch"`
	Flags        uint16             `json:"Flags"`
	DefaultMem   uint64             `json:"DefaultMemory"`
	DefaultCPUs  uint64             `json:"DefaultCPUs"`
	CRC32        string             `json:"CRC32"`
	CheckCRC     bool               `json:"CheckCRC"`
	FileSize     int64              `json:"FileSize"`
	Sections     []describeSection  `json:"Sections"`
	Kernel       eif.KernelInfo     `json:"Kernel"`
	Cmdline      string             `json:"Cmdline"`
	Metadata     json.RawMessage    `json:"Metadata"`
	Measurements *eif.Measurements  `json:"Measurements"`
	IsSigned     bool               `json:"IsSigned"`
	Signature    *describeSignature `json:"Signature,omitempty"`
}

type describeSection struct {
	Index      int    `json:"Index"`
	Type       string `json:"Type"`
	Offset     int64  `json:"Offset"`     // section header
	DataOffset int64  `json:"DataOffset"` // data
	Size       int64  `json:"Size"`
}

type describeSignature struct {
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

func runDescribe(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("describe", describeUsage, stderr)
	pos, code, ok := parseN(fs, args, 1)
	if !ok {
		return code
	}
	f, m, err := openVerified(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "qtenclave describe: %v\n", err)
		return exitFailed
	}
	defer f.Close()
	doc, err := describe(f, m, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "qtenclave describe: %s: %v\n", pos[0], err)
		return exitFailed
	}
	if err := writeJSON(stdout, doc); err != nil {
		fmt.Fprintf(stderr, "qtenclave describe: %v\n", err)
		return exitFailed
	}
	if doc.Signature != nil && !doc.Signature.Verified {
		return exitFailed
	}
	return exitOK
}

func describe(f *eif.File, m *eif.Measurements, now time.Time) (*describeDoc, error) {
	h := f.Header
	doc := &describeDoc{
		EifVersion: h.Version, Arch: f.Arch().String(), Flags: h.Flags,
		DefaultMem: h.DefaultMemory, DefaultCPUs: h.DefaultCPUs,
		CRC32: fmt.Sprintf("%#08x", h.CRC32), CheckCRC: true, FileSize: f.Size,
		Measurements: m,
	}
	for _, s := range f.Sections {
		doc.Sections = append(doc.Sections, describeSection{
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
		ds := &describeSignature{
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
