package main

import (
	"bytes"
	"encoding/json"
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
	if err := writeDescription(stdout, doc); err != nil {
		fmt.Fprintf(stderr, "qtenclave describe: %v\n", err)
		return exitFailed
	}
	if doc.Signature != nil && !doc.Signature.Verified {
		return exitFailed
	}
	return exitOK
}

// writeDescription prints doc indented. The metadata comes from the image's
// author, and indenting deeply nested JSON multiplies its size (a 23 KB EIF
// printed 162 MB): it is indented only while that keeps it within four
// times its compact size, else printed compact. The output stays within a
// small multiple of the input, whatever the metadata's shape.
func writeDescription(w io.Writer, doc *image.Description) error {
	md := doc.Metadata
	doc.Metadata = json.RawMessage("null")
	b, err := json.MarshalIndent(doc, "", "  ")
	doc.Metadata = md
	if err != nil {
		return err
	}
	// A raw newline cannot occur inside a JSON string, so this names the
	// field itself and nothing the image wrote.
	marker := []byte("\n  \"Metadata\": null")
	i := bytes.Index(b, marker)
	if i < 0 || bytes.Count(b, marker) != 1 {
		return fmt.Errorf("describe: internal: metadata field not found once")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, md); err != nil {
		// Not JSON (the reader accepted it): shown as a string.
		compact.Reset()
		q, _ := json.Marshal(string(md))
		compact.Write(q)
	} else if indentedSize(compact.Bytes()) <= 4*compact.Len()+4096 {
		var ind bytes.Buffer
		if json.Indent(&ind, compact.Bytes(), "  ", "  ") == nil {
			compact = ind
		}
	}
	for _, part := range [][]byte{b[:i+len(marker)-len("null")], compact.Bytes(), b[i+len(marker):], []byte("\n")} {
		if _, err := w.Write(part); err != nil {
			return err
		}
	}
	return nil
}

// indentedSize is what json.Indent(prefix "  ", indent "  ") would make of
// the compact JSON b, counted in one pass without making it.
func indentedSize(b []byte) int {
	n, depth, inString, escaped := len(b), 1, false, false
	for i, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			if i+1 < len(b) && b[i+1] != '}' && b[i+1] != ']' {
				n += 1 + 2*depth
			}
		case c == '}' || c == ']':
			depth--
			if i > 0 && b[i-1] != '{' && b[i-1] != '[' {
				n += 1 + 2*depth
			}
		case c == ',':
			n += 1 + 2*depth
		case c == ':':
			n++
		}
	}
	return n
}
