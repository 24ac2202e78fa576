package main

import (
	"fmt"
	"io"
	"time"

	"github.com/qtenclave/enclave/image"
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
	doc, err := image.Describe(f, m, time.Now())
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
