package eif

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"sort"
	"strconv"
	"strings"

	"github.com/qtenclave/enclave/qtsm/pcr"
)

// HashAlgorithm is how nitro-cli names the measurement hash (Rust's Debug
// output of sha2::Sha384), kept for output compatibility.
const HashAlgorithm = "Sha384 { ... }"

// Measurements are the PCR values an enclave booted from the image has.
type Measurements struct {
	PCR0 []byte // kernel, cmdline and all ramdisks
	PCR1 []byte // kernel, cmdline and the first (bootstrap) ramdisk
	PCR2 []byte // the other (application) ramdisks
	PCR8 []byte // the signing certificate; nil when unsigned
}

// PCRs returns the measurements by register index, the form the secure
// module simulator takes (sim.Options.PCRs).
func (m *Measurements) PCRs() map[int][]byte {
	out := map[int][]byte{pcr.Image: m.PCR0, pcr.Kernel: m.PCR1, pcr.App: m.PCR2}
	if m.PCR8 != nil {
		out[pcr.Signer] = m.PCR8
	}
	return out
}

// Equal reports whether both hold the same registers with the same values.
func (m *Measurements) Equal(o *Measurements) bool {
	return bytes.Equal(m.PCR0, o.PCR0) && bytes.Equal(m.PCR1, o.PCR1) &&
		bytes.Equal(m.PCR2, o.PCR2) && bytes.Equal(m.PCR8, o.PCR8)
}

// Map returns the nitro-cli form: "HashAlgorithm" and "PCRn" -> lowercase hex.
func (m *Measurements) Map() map[string]string {
	out := map[string]string{"HashAlgorithm": HashAlgorithm}
	for i, v := range m.PCRs() {
		out["PCR"+strconv.Itoa(i)] = hex.EncodeToString(v)
	}
	return out
}

// MarshalJSON encodes the nitro-cli form, keys in nitro-cli's order
// (HashAlgorithm, PCR0, PCR1, PCR2, PCR8).
func (m *Measurements) MarshalJSON() ([]byte, error) {
	mm := m.Map()
	keys := make([]string, 0, len(mm))
	for k := range mm {
		keys = append(keys, k)
	}
	sort.Strings(keys) // "HashAlgorithm" < "PCR0" < ... < "PCR8"
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, _ := json.Marshal(mm[k])
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON accepts the nitro-cli form (HashAlgorithm optional) with
// upper- or lowercase hex.
func (m *Measurements) UnmarshalJSON(data []byte) error {
	var mm map[string]string
	if err := json.Unmarshal(data, &mm); err != nil {
		return err
	}
	parsed, err := ParseMeasurementMap(mm)
	if err != nil {
		return err
	}
	*m = *parsed
	return nil
}

// ParseMeasurementMap converts {"PCR0": hex, ...} into Measurements. Keys
// other than PCR0/1/2/8 and HashAlgorithm are refused, as are values that are
// not 48-byte hex strings.
func ParseMeasurementMap(mm map[string]string) (*Measurements, error) {
	var m Measurements
	for k, v := range mm {
		if k == "HashAlgorithm" {
			if !strings.HasPrefix(v, "Sha384") {
				return nil, fmt.Errorf("measurements: hash algorithm %q, want Sha384", v)
			}
			continue
		}
		b, err := hex.DecodeString(strings.TrimSpace(v))
		if err != nil || len(b) != pcr.Size {
			return nil, fmt.Errorf("measurements: %s is not %d bytes of hex", k, pcr.Size)
		}
		switch strings.ToUpper(k) {
		case "PCR0":
			m.PCR0 = b
		case "PCR1":
			m.PCR1 = b
		case "PCR2":
			m.PCR2 = b
		case "PCR8":
			m.PCR8 = b
		default:
			return nil, fmt.Errorf("measurements: unknown key %q", k)
		}
	}
	return &m, nil
}

// measurer routes section bytes to the PCR hashes the way AWS and QEMU do.
type measurer struct {
	h0, h1, h2 hash.Hash
	ramdisks   int
}

func newMeasurer() *measurer {
	return &measurer{h0: pcr.NewHash(), h1: pcr.NewHash(), h2: pcr.NewHash()}
}

// route returns the hashes that a section of type t feeds (PCR0's and the
// second one), and counts ramdisks; call once per section, in order.
func (m *measurer) route(t SectionType) (pcr0, aux hash.Hash) {
	switch t {
	case SectionKernel, SectionCmdline:
		return m.h0, m.h1
	case SectionRamdisk:
		m.ramdisks++
		if m.ramdisks == 1 {
			return m.h0, m.h1
		}
		return m.h0, m.h2
	}
	return nil, nil
}

// result returns PCR0-2; the hashes must not be written concurrently.
func (m *measurer) result() *Measurements {
	return &Measurements{
		PCR0: pcr.FromDigest(m.h0.Sum(nil)),
		PCR1: pcr.FromDigest(m.h1.Sum(nil)),
		PCR2: pcr.FromDigest(m.h2.Sum(nil)),
	}
}
