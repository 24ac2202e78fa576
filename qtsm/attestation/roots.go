package attestation

import (
	"bytes"
	"crypto/x509"
	"embed"
	"encoding/pem"
	"fmt"
	"sync"

	"github.com/qtenclave/enclave/qtsm"
)

// The vendors' root certificates, pinned by their DER bytes:
//
//	aws-nitro-enclaves-root-g1.der        CN=aws.nitro-enclaves, SHA-256 641A0321...8F79BB5B, 2019-2049
//	huawei-qingtian-enclaves-root-g1.der  CN=huaweicloud.qingtian-enclaves, SHA-256 F23443B4...C8C4F581, 2022-2052
//
//go:embed roots/*.der
var rootFiles embed.FS

// Root is a trusted root certificate and the vendor whose documents it
// anchors (VendorUnknown for a root added by the caller without one).
type Root struct {
	Vendor qtsm.Vendor
	Cert   *x509.Certificate
}

// embeddedRoots parses the roots on first use, not at program start: a
// program that never verifies (qtsm-agent) does not pay for it.
var embeddedRoots = sync.OnceValue(func() []Root {
	var out []Root
	for _, f := range []struct {
		name   string
		vendor qtsm.Vendor
	}{
		{"roots/aws-nitro-enclaves-root-g1.der", qtsm.VendorNitro},
		{"roots/huawei-qingtian-enclaves-root-g1.der", qtsm.VendorQingtian},
	} {
		b, err := rootFiles.ReadFile(f.name)
		if err != nil {
			panic(err)
		}
		c, err := x509.ParseCertificate(b)
		if err != nil {
			panic(fmt.Sprintf("attestation: embedded root %s: %v", f.name, err))
		}
		out = append(out, Root{Vendor: f.vendor, Cert: c})
	}
	return out
})

// DefaultRoots returns the embedded root of vendor, or both vendors' roots
// for VendorUnknown.
func DefaultRoots(vendor qtsm.Vendor) []Root {
	var out []Root
	for _, r := range embeddedRoots() {
		if vendor == qtsm.VendorUnknown || r.Vendor == vendor {
			out = append(out, r)
		}
	}
	return out
}

// NitroRoot returns AWS's Nitro Enclaves root certificate (G1).
func NitroRoot() *x509.Certificate { return DefaultRoots(qtsm.VendorNitro)[0].Cert }

// QingtianRoot returns Huawei Cloud's Qingtian Enclaves root certificate (G1).
func QingtianRoot() *x509.Certificate { return DefaultRoots(qtsm.VendorQingtian)[0].Cert }

// ParseRoots parses root certificates from DER (one certificate) or PEM
// (any number of CERTIFICATE blocks). A root equal to an embedded one gets
// that root's vendor.
func ParseRoots(b []byte) ([]Root, error) {
	var ders [][]byte
	if bytes.Contains(b, []byte("-----BEGIN")) {
		rest := b
		for {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if blk.Type == "CERTIFICATE" {
				ders = append(ders, blk.Bytes)
			}
		}
		if len(ders) == 0 {
			return nil, fmt.Errorf("attestation: no CERTIFICATE block in PEM")
		}
	} else {
		ders = [][]byte{b}
	}
	var out []Root
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("attestation: root certificate %d: %w", i, err)
		}
		out = append(out, RootOf(c))
	}
	return out, nil
}

// RootOf makes c a Root, with the vendor of the embedded root equal to c.
func RootOf(c *x509.Certificate) Root {
	for _, r := range embeddedRoots() {
		if r.Cert.Equal(c) {
			return r
		}
	}
	return Root{Cert: c}
}
