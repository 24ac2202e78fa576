package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/qtenclave/enclave/image"
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
	doc, err := image.Compare(fa, ma, fb, mb)
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

func printDiff(w io.Writer, d *image.Comparison, nameA, nameB string, maxChanges int) error {
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
			fmt.Fprintf(&b, "; %s", printable(s.Note))
		}
		b.WriteByte('\n')
		for _, f := range s.Fields {
			if s.Name == "cmdline" {
				fmt.Fprintf(&b, "  %s: %q -> %q\n", f.Field, f.A, f.B)
			} else { // JSON values or text
				fmt.Fprintf(&b, "  %s: %s -> %s\n", f.Field, printable(f.A), printable(f.B))
			}
		}
		for i, c := range s.Changes {
			if maxChanges > 0 && i == maxChanges {
				fmt.Fprintf(&b, "  ... and %d more (--max 0 or --json for all)\n", len(s.Changes)-i)
				break
			}
			fmt.Fprintf(&b, "  %-7s %s", c.Kind, printable(c.Path))
			for j, f := range c.Fields {
				sep := ": "
				if j > 0 {
					sep = ", "
				}
				fmt.Fprintf(&b, "%s%s %s -> %s", sep, f.Field, printable(short(f.A)), printable(short(f.B)))
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
