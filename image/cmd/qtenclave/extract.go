package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/qtenclave/enclave/image/eif"
)

func init() {
	register("extract", command{
		summary: "write an EIF's sections to files in a directory",
		run:     runExtract,
	})
}

const extractUsage = `FILE.eif DIR

Checks FILE.eif, then writes its sections into DIR (created if needed):
kernel, cmdline, metadata.json, ramdisk-0 (bootstrap), ramdisk-1... (the
application), signature.cbor and signing-certificate.pem (if signed). Existing
files are never overwritten; on error the files written so far are removed.
Prints the paths written.`

func runExtract(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("extract", extractUsage, stderr)
	pos, code, ok := parseN(fs, args, 2)
	if !ok {
		return code
	}
	f, _, err := openVerified(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "qtenclave extract: %v\n", err)
		return exitFailed
	}
	defer f.Close()
	written, err := extract(f, pos[1])
	if err != nil {
		for _, p := range written {
			os.Remove(p)
		}
		fmt.Fprintf(stderr, "qtenclave extract: %v\n", err)
		return exitFailed
	}
	for _, p := range written {
		fmt.Fprintln(stdout, p)
	}
	return exitOK
}

// extractName is the file name of a section.
func extractName(s *eif.Section, ramdisk int) string {
	switch s.Type {
	case eif.SectionKernel:
		return "kernel"
	case eif.SectionCmdline:
		return "cmdline"
	case eif.SectionMetadata:
		return "metadata.json"
	case eif.SectionSignature:
		return "signature.cbor"
	case eif.SectionRamdisk:
		return fmt.Sprintf("ramdisk-%d", ramdisk)
	}
	return fmt.Sprintf("section-%d", s.Index)
}

func extract(f *eif.File, dir string) (written []string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	create := func(name string, r io.Reader) error {
		p := filepath.Join(dir, name)
		out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		written = append(written, p)
		if _, err := io.Copy(out, r); err != nil {
			out.Close()
			return fmt.Errorf("%s: %w", p, err)
		}
		return out.Close()
	}
	ramdisk := 0
	for _, s := range f.Sections {
		name := extractName(s, ramdisk)
		if s.Type == eif.SectionRamdisk {
			ramdisk++
		}
		if err := create(name, io.NewSectionReader(s, 0, s.Size)); err != nil {
			return written, err
		}
	}
	sig, err := f.Signature()
	if err != nil {
		return written, err
	}
	if sig != nil {
		if err := create("signing-certificate.pem", bytesReader(sig.CertificatePEM)); err != nil {
			return written, err
		}
	}
	return written, nil
}
