package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/qtenclave/enclave/image/eif"
)

func init() {
	register("pcrs", command{
		summary: "print an EIF's measurements; --expect compares them with a file",
		run:     runPCRs,
	})
}

const pcrsUsage = `FILE.eif [--expect PCRS.json]

Prints the measurements as nitro-cli does. With --expect, compares them with
PCRS.json — nitro-cli's output ({"Measurements": {...}}) or a plain
{"PCR0": "...", ...} map — on every PCR the file names: exit 0 when all are
equal, 1 (naming each PCR that differs) otherwise.`

func runPCRs(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("pcrs", pcrsUsage, stderr)
	expect := fs.String("expect", "", "expected measurements `FILE` (JSON)")
	pos, code, ok := parseN(fs, args, 1)
	if !ok {
		return code
	}
	var want *eif.Measurements
	if *expect != "" {
		var err error
		if want, err = loadExpected(*expect); err != nil {
			fmt.Fprintf(stderr, "qtenclave pcrs: %v\n", err)
			return exitUsage
		}
	}
	f, m, err := openVerified(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "qtenclave pcrs: %v\n", err)
		return exitFailed
	}
	f.Close()
	if err := writeJSON(stdout, measurementsDoc{m}); err != nil {
		fmt.Fprintf(stderr, "qtenclave pcrs: %v\n", err)
		return exitFailed
	}
	if want == nil {
		return exitOK
	}
	diffs := comparePCRs(m, want)
	for _, d := range diffs {
		fmt.Fprintln(stderr, "qtenclave pcrs:", d)
	}
	if len(diffs) > 0 {
		return exitFailed
	}
	fmt.Fprintf(stderr, "qtenclave pcrs: %s matches %s\n", pos[0], *expect)
	return exitOK
}

// loadExpected reads nitro-cli's {"Measurements": {...}} or a plain map.
func loadExpected(path string) (*eif.Measurements, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if inner, ok := top["Measurements"]; ok {
		b = inner
	}
	var mm map[string]string
	if err := json.Unmarshal(b, &mm); err != nil {
		return nil, fmt.Errorf("%s: want {\"PCR0\": \"hex\", ...}: %w", path, err)
	}
	m, err := eif.ParseMeasurementMap(mm)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if m.PCR0 == nil && m.PCR1 == nil && m.PCR2 == nil && m.PCR8 == nil {
		return nil, fmt.Errorf("%s: no PCR to compare", path)
	}
	return m, nil
}

// comparePCRs compares the PCRs that want names.
func comparePCRs(got, want *eif.Measurements) []string {
	var out []string
	for _, p := range []struct {
		name      string
		got, want []byte
	}{
		{"PCR0", got.PCR0, want.PCR0}, {"PCR1", got.PCR1, want.PCR1},
		{"PCR2", got.PCR2, want.PCR2}, {"PCR8", got.PCR8, want.PCR8},
	} {
		switch {
		case p.want == nil:
		case p.got == nil:
			out = append(out, fmt.Sprintf("%s differs: the image is not signed, expected %x", p.name, p.want))
		case !bytes.Equal(p.got, p.want):
			out = append(out, fmt.Sprintf("%s differs: image %x, expected %x", p.name, p.got, p.want))
		}
	}
	return out
}
