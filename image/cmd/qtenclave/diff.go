package main

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

func init() {
	register("diff", command{
		summary: "explain why two EIFs measure differently (sections, ramdisk paths)",
		run:     runDiff,
	})
}

const diffUsage = `[--json] [--max N] A.eif B.eif

Compares two images: their PCRs, header, and section by section (kernel,
cmdline, metadata, each ramdisk, signature). For ramdisks that differ it lists
the paths that differ inside the archives (newc cpio, gzip or not): added,
removed, or changed in type, mode, owner, mtime, size, content (sha256), link
target or device number. Exit status 0 when the measurements (PCR0, PCR1,
PCR2, PCR8) are equal, 1 when they differ.`

// diffDoc is the --json output.
type diffDoc struct {
	MeasurementsEqual bool          `json:"MeasurementsEqual"`
	PCRs              []pcrDiff     `json:"PCRs"`
	Header            []fieldDiff   `json:"Header,omitempty"`
	Sections          []sectionDiff `json:"Sections"`
}

type pcrDiff struct {
	PCR   string `json:"PCR"`
	Equal bool   `json:"Equal"`
	A     string `json:"A"`
	B     string `json:"B"`
}

type fieldDiff struct {
	Field string `json:"Field"`
	A     string `json:"A"`
	B     string `json:"B"`
}

type sectionDiff struct {
	Name     string           `json:"Name"`     // kernel, cmdline, metadata, ramdisk-N, signature
	Measured string           `json:"Measured"` // which PCRs it feeds
	Equal    bool             `json:"Equal"`
	A        *sectionSum      `json:"A"` // nil: absent
	B        *sectionSum      `json:"B"`
	Fields   []fieldDiff      `json:"Fields,omitempty"`  // cmdline, metadata, signature details
	Changes  []ramdisk.Change `json:"Changes,omitempty"` // ramdisk paths
	Note     string           `json:"Note,omitempty"`
}

type sectionSum struct {
	Size   int64  `json:"Size"`
	SHA384 string `json:"SHA384"`
}

func runDiff(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("diff", diffUsage, stderr)
	asJSON := fs.Bool("json", false, "print the comparison as JSON")
	maxChanges := fs.Int("max", 100, "list at most `N` path changes per ramdisk in text output (0: all)")
	pos, code, ok := parseN(fs, args, 2)
	if !ok {
		return code
	}
	fa, ma, err := openVerified(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "qtenclave diff: %v\n", err)
		return exitFailed
	}
	defer fa.Close()
	fb, mb, err := openVerified(pos[1])
	if err != nil {
		fmt.Fprintf(stderr, "qtenclave diff: %v\n", err)
		return exitFailed
	}
	defer fb.Close()
	doc, err := diffImages(fa, ma, fb, mb)
	if err != nil {
		fmt.Fprintf(stderr, "qtenclave diff: %v\n", err)
		return exitFailed
	}
	if *asJSON {
		err = writeJSON(stdout, doc)
	} else {
		err = printDiff(stdout, doc, pos[0], pos[1], *maxChanges)
	}
	if err != nil {
		fmt.Fprintf(stderr, "qtenclave diff: %v\n", err)
		return exitFailed
	}
	if !doc.MeasurementsEqual {
		return exitFailed
	}
	return exitOK
}

func diffImages(fa *eif.File, ma *eif.Measurements, fb *eif.File, mb *eif.Measurements) (*diffDoc, error) {
	doc := &diffDoc{MeasurementsEqual: ma.Equal(mb)}
	for _, p := range []struct {
		name string
		a, b []byte
	}{{"PCR0", ma.PCR0, mb.PCR0}, {"PCR1", ma.PCR1, mb.PCR1}, {"PCR2", ma.PCR2, mb.PCR2}, {"PCR8", ma.PCR8, mb.PCR8}} {
		if p.a == nil && p.b == nil {
			continue
		}
		doc.PCRs = append(doc.PCRs, pcrDiff{PCR: p.name, Equal: bytes.Equal(p.a, p.b), A: hex.EncodeToString(p.a), B: hex.EncodeToString(p.b)})
	}
	ha, hb := fa.Header, fb.Header
	for _, f := range []fieldDiff{
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
		d := sectionDiff{Name: p.name, Measured: p.measured}
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
			d.Fields = []fieldDiff{{"cmdline", a, b}}
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

func sumSection(s *eif.Section) (*sectionSum, error) {
	if s == nil {
		return nil, nil
	}
	h := sha512.New384()
	if _, err := io.Copy(h, io.NewSectionReader(s, 0, s.Size)); err != nil {
		return nil, fmt.Errorf("read %s section %d: %w", s.Type, s.Index, err)
	}
	return &sectionSum{Size: s.Size, SHA384: hex.EncodeToString(h.Sum(nil))}, nil
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

func signatureDiff(fa, fb *eif.File) ([]fieldDiff, error) {
	sa, err := fa.Signature()
	if err != nil {
		return nil, err
	}
	sb, err := fb.Signature()
	if err != nil {
		return nil, err
	}
	var out []fieldDiff
	add := func(f, a, b string) {
		if a != b {
			out = append(out, fieldDiff{f, a, b})
		}
	}
	add("certificate subject", sa.Certificate.Subject.String(), sb.Certificate.Subject.String())
	add("certificate sha256", sha256Hex(sa.Certificate.Raw), sha256Hex(sb.Certificate.Raw))
	if len(out) == 0 {
		out = append(out, fieldDiff{"COSE_Sign1", "same certificate, different signature (different PCR0 or randomized ECDSA)", ""})
	}
	return out, nil
}

// jsonDiff lists the differing leaves of two JSON documents (objects are
// walked, other values compared as compact JSON).
func jsonDiff(a, b []byte) []fieldDiff {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return []fieldDiff{{"metadata", string(a), string(b)}}
	}
	var out []fieldDiff
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
			out = append(out, fieldDiff{path, string(jx), string(jy)})
		}
	}
	walk("", va, vb)
	return out
}

func printDiff(w io.Writer, d *diffDoc, nameA, nameB string, maxChanges int) error {
	var b strings.Builder
	fmt.Fprintf(&b, "A = %s\nB = %s\n", nameA, nameB)
	if d.MeasurementsEqual {
		b.WriteString("measurements: equal\n")
	} else {
		b.WriteString("measurements: DIFFERENT\n")
	}
	for _, p := range d.PCRs {
		if p.Equal {
			fmt.Fprintf(&b, "  %s equal   %s\n", p.PCR, p.A)
			continue
		}
		fmt.Fprintf(&b, "  %s differs A %s\n  %s         B %s\n", p.PCR, orNone(p.A), strings.Repeat(" ", len(p.PCR)), orNone(p.B))
	}
	for _, h := range d.Header {
		fmt.Fprintf(&b, "header %s: %s -> %s (not measured)\n", h.Field, h.A, h.B)
	}
	for _, s := range d.Sections {
		if s.Equal {
			fmt.Fprintf(&b, "%s: same (%d bytes; measured in %s)\n", s.Name, s.A.Size, s.Measured)
			continue
		}
		fmt.Fprintf(&b, "%s: DIFFERS (measured in %s)", s.Name, s.Measured)
		if s.A != nil && s.B != nil {
			fmt.Fprintf(&b, ": %d -> %d bytes", s.A.Size, s.B.Size)
		}
		if s.Note != "" {
			fmt.Fprintf(&b, "; %s", s.Note)
		}
		b.WriteByte('\n')
		for _, f := range s.Fields {
			if s.Name == "cmdline" {
				fmt.Fprintf(&b, "  %s: %q -> %q\n", f.Field, f.A, f.B)
			} else { // JSON values or text
				fmt.Fprintf(&b, "  %s: %s -> %s\n", f.Field, f.A, f.B)
			}
		}
		for i, c := range s.Changes {
			if maxChanges > 0 && i == maxChanges {
				fmt.Fprintf(&b, "  ... and %d more (--max 0 or --json for all)\n", len(s.Changes)-i)
				break
			}
			fmt.Fprintf(&b, "  %-7s %s", c.Kind, c.Path)
			for j, f := range c.Fields {
				sep := ": "
				if j > 0 {
					sep = ", "
				}
				fmt.Fprintf(&b, "%s%s %s -> %s", sep, f.Field, short(f.A), short(f.B))
			}
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// short abbreviates hashes in text output.
func short(s string) string {
	if len(s) == 64 {
		return s[:12] + "…"
	}
	if s == "" {
		return `""`
	}
	return s
}
