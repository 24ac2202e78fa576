package image

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/qtenclave/enclave/image/eif"
	"github.com/qtenclave/enclave/image/ramdisk"
)

// Comparison says how two EIFs differ: their PCRs, header fields and
// sections, down to the paths inside ramdisks (qtenclave diff prints it).
type Comparison struct {
	MeasurementsEqual bool          `json:"MeasurementsEqual"`
	PCRs              []PCRDiff     `json:"PCRs"`
	Header            []FieldDiff   `json:"Header,omitempty"`
	Sections          []SectionDiff `json:"Sections"`
}

type PCRDiff struct {
	PCR   string `json:"PCR"`
	Equal bool   `json:"Equal"`
	A     string `json:"A"`
	B     string `json:"B"`
}

type FieldDiff struct {
	Field string `json:"Field"`
	A     string `json:"A"`
	B     string `json:"B"`
}

type SectionDiff struct {
	Name     string           `json:"Name"`     // kernel, cmdline, metadata, ramdisk-N, signature
	Measured string           `json:"Measured"` // which PCRs it feeds
	Equal    bool             `json:"Equal"`
	A        *SectionSum      `json:"A"` // nil: absent
	B        *SectionSum      `json:"B"`
	Fields   []FieldDiff      `json:"Fields,omitempty"`  // cmdline, metadata, signature details
	Changes  []ramdisk.Change `json:"Changes,omitempty"` // ramdisk paths
	Note     string           `json:"Note,omitempty"`
}

type SectionSum struct {
	Size   int64  `json:"Size"`
	SHA384 string `json:"SHA384"`
}

// Compare compares two opened and measured images.
func Compare(fa *eif.File, ma *eif.Measurements, fb *eif.File, mb *eif.Measurements) (*Comparison, error) {
	doc := &Comparison{MeasurementsEqual: ma.Equal(mb)}
	for _, p := range []struct {
		name string
		a, b []byte
	}{{"PCR0", ma.PCR0, mb.PCR0}, {"PCR1", ma.PCR1, mb.PCR1}, {"PCR2", ma.PCR2, mb.PCR2}, {"PCR8", ma.PCR8, mb.PCR8}} {
		if p.a == nil && p.b == nil {
			continue
		}
		doc.PCRs = append(doc.PCRs, PCRDiff{PCR: p.name, Equal: bytes.Equal(p.a, p.b), A: hex.EncodeToString(p.a), B: hex.EncodeToString(p.b)})
	}
	ha, hb := fa.Header, fb.Header
	for _, f := range []FieldDiff{
		{"Version", fmt.Sprint(ha.Version), fmt.Sprint(hb.Version)},
		{"Arch", fa.Arch().String(), fb.Arch().String()},
		{"DefaultMemory", fmt.Sprint(ha.DefaultMemory), fmt.Sprint(hb.DefaultMemory)},
		{"DefaultCPUs", fmt.Sprint(ha.DefaultCPUs), fmt.Sprint(hb.DefaultCPUs)},
		{"NumSections", fmt.Sprint(ha.NumSections), fmt.Sprint(hb.NumSections)},
	} {
		if f.A != f.B {
			doc.Header = append(doc.Header, f)
		}
	}

	// Pair sections by role: the single ones by type, ramdisks by index.
	type pair struct {
		name, measured string
		a, b           *eif.Section
	}
	pairs := []pair{
		{"kernel", "PCR0 PCR1", fa.Kernel(), fb.Kernel()},
		{"cmdline", "PCR0 PCR1", fa.CmdlineSection(), fb.CmdlineSection()},
		{"metadata", "none", fa.MetadataSection(), fb.MetadataSection()},
	}
	ra, rb := fa.Ramdisks(), fb.Ramdisks()
	for i := 0; i < max(len(ra), len(rb)); i++ {
		p := pair{name: fmt.Sprintf("ramdisk-%d", i), measured: "PCR0 PCR2"}
		if i == 0 {
			p.measured = "PCR0 PCR1"
		}
		if i < len(ra) {
			p.a = ra[i]
		}
		if i < len(rb) {
			p.b = rb[i]
		}
		pairs = append(pairs, p)
	}
	pairs = append(pairs, pair{"signature", "PCR8 (certificate)", fa.SignatureSection(), fb.SignatureSection()})

	for _, p := range pairs {
		if p.a == nil && p.b == nil {
			continue
		}
		d := SectionDiff{Name: p.name, Measured: p.measured}
		var err error
		if d.A, err = sumSection(p.a); err != nil {
			return nil, err
		}
		if d.B, err = sumSection(p.b); err != nil {
			return nil, err
		}
		d.Equal = d.A != nil && d.B != nil && *d.A == *d.B
		switch {
		case d.Equal:
		case p.a == nil:
			d.Note = "only in B"
		case p.b == nil:
			d.Note = "only in A"
		case p.name == "cmdline":
			a, _ := fa.Cmdline()
			b, _ := fb.Cmdline()
			d.Fields = []FieldDiff{{"cmdline", a, b}}
		case p.name == "metadata":
			a, _ := fa.MetadataBytes()
			b, _ := fb.MetadataBytes()
			d.Fields = jsonDiff(a, b)
			d.Note = "not measured"
		case p.name == "signature":
			d.Fields, err = signatureDiff(fa, fb)
		case strings.HasPrefix(p.name, "ramdisk"):
			d.Changes, d.Note, err = ramdiskDiff(p.a, p.b)
		}
		if err != nil {
			return nil, err
		}
		doc.Sections = append(doc.Sections, d)
	}
	return doc, nil
}

func sumSection(s *eif.Section) (*SectionSum, error) {
	if s == nil {
		return nil, nil
	}
	h := sha512.New384()
	if _, err := io.Copy(h, io.NewSectionReader(s, 0, s.Size)); err != nil {
		return nil, fmt.Errorf("read %s section %d: %w", s.Type, s.Index, err)
	}
	return &SectionSum{Size: s.Size, SHA384: hex.EncodeToString(h.Sum(nil))}, nil
}

func ramdiskDiff(a, b *eif.Section) ([]ramdisk.Change, string, error) {
	ia, err := ramdisk.ReadIndex(io.NewSectionReader(a, 0, a.Size))
	if err != nil {
		return nil, "A is not a readable initramfs: " + err.Error(), nil
	}
	ib, err := ramdisk.ReadIndex(io.NewSectionReader(b, 0, b.Size))
	if err != nil {
		return nil, "B is not a readable initramfs: " + err.Error(), nil
	}
	changes := ramdisk.Diff(ia, ib)
	if len(changes) == 0 {
		return nil, "same paths, metadata and contents; the archives differ in encoding (order, inode numbers, padding or compression)", nil
	}
	return changes, fmt.Sprintf("%d paths differ", len(changes)), nil
}

func signatureDiff(fa, fb *eif.File) ([]FieldDiff, error) {
	sa, err := fa.Signature()
	if err != nil {
		return nil, err
	}
	sb, err := fb.Signature()
	if err != nil {
		return nil, err
	}
	var out []FieldDiff
	add := func(f, a, b string) {
		if a != b {
			out = append(out, FieldDiff{f, a, b})
		}
	}
	add("certificate subject", sa.Certificate.Subject.String(), sb.Certificate.Subject.String())
	add("certificate sha256", sha256Hex(sa.Certificate.Raw), sha256Hex(sb.Certificate.Raw))
	if len(out) == 0 {
		out = append(out, FieldDiff{"COSE_Sign1", "same certificate, different signature (different PCR0 or randomized ECDSA)", ""})
	}
	return out, nil
}

// jsonDiff lists the differing leaves of two JSON documents (objects are
// walked, other values compared as compact JSON).
func jsonDiff(a, b []byte) []FieldDiff {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return []FieldDiff{{"metadata", string(a), string(b)}}
	}
	var out []FieldDiff
	var walk func(path string, x, y any)
	walk = func(path string, x, y any) {
		mx, okx := x.(map[string]any)
		my, oky := y.(map[string]any)
		if okx && oky {
			keys := map[string]bool{}
			for k := range mx {
				keys[k] = true
			}
			for k := range my {
				keys[k] = true
			}
			sorted := make([]string, 0, len(keys))
			for k := range keys {
				sorted = append(sorted, k)
			}
			sort.Strings(sorted)
			for _, k := range sorted {
				p := k
				if path != "" {
					p = path + "." + k
				}
				walk(p, mx[k], my[k])
			}
			return
		}
		jx, _ := json.Marshal(x)
		jy, _ := json.Marshal(y)
		if !bytes.Equal(jx, jy) {
			out = append(out, FieldDiff{path, string(jx), string(jy)})
		}
	}
	walk("", va, vb)
	return out
}
