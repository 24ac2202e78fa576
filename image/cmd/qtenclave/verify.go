package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qtenclave/enclave/internal/cliflag"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/attestation"
)

func init() {
	register("verify", command{
		summary: "verify an attestation document (Nitro or Qingtian) and print it as JSON",
		run:     runVerify,
	})
}

const verifyUsage = `[flags] DOC

Parses the attestation document DOC (a file, or - for stdin; raw COSE_Sign1
bytes, or the same in base64 or hex), verifies its ES384 signature and its
certificate chain to a trusted root (the embedded AWS Nitro and Huawei
Qingtian roots unless --root is given), checks the optional expectations,
and prints the document as indented JSON. Exit 0 when the document is valid,
1 when it is not (the reason on stderr; the JSON is still printed when the
document parses), 2 for usage errors.

--at is the verification time: "now" (default), "doc" (the document's own
timestamp: leaves live 3 hours, so stored documents verify only at "doc")
or an RFC 3339 time. Debug-mode enclaves (PCR0 zero) and emulator documents
(QEMU's unsigned virtio-nsm) are refused unless allowed.`

// hexFlag is an optional hex value: set with "" means "expect empty".
type hexFlag struct {
	b   []byte
	set bool
}

func (h *hexFlag) String() string { return hex.EncodeToString(h.b) }
func (h *hexFlag) Set(v string) error {
	b, err := decodeHex(v)
	if err != nil {
		return err
	}
	h.b, h.set = b, true
	return nil
}

// value returns nil (no expectation) unless set.
func (h *hexFlag) value() []byte {
	if !h.set {
		return nil
	}
	if h.b == nil {
		return []byte{}
	}
	return h.b
}

func decodeHex(v string) ([]byte, error) {
	v = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(v), "0x"), "0X")
	b, err := hex.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("not hex: %v", err)
	}
	return b, nil
}

// pcrFlags collects --pcr N=HEX.
type pcrFlags map[int][]byte

func (p pcrFlags) String() string { return fmt.Sprint(map[int][]byte(p)) }
func (p pcrFlags) Set(v string) error {
	n, h, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want N=HEX, got %q", v)
	}
	i, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(strings.ToUpper(n), "PCR")))
	if err != nil || i < 0 || i >= attestation.MaxPCRs {
		return fmt.Errorf("PCR index %q, want 0..%d", n, attestation.MaxPCRs-1)
	}
	b, err := decodeHex(h)
	if err != nil {
		return fmt.Errorf("PCR%d: %v", i, err)
	}
	if l := len(b); l != 32 && l != 48 && l != 64 {
		return fmt.Errorf("PCR%d is %d bytes, want 48 (or 32, 64)", i, l)
	}
	if _, dup := p[i]; dup {
		return fmt.Errorf("PCR%d given twice", i)
	}
	p[i] = b
	return nil
}

func runVerify(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("verify", verifyUsage, stderr)
	vendorFlag := fs.String("vendor", "auto", "document vendor: `nitro, qingtian or auto`")
	var roots cliflag.List
	fs.Var(&roots, "root", "trusted root certificate `FILE` (DER or PEM; repeatable; replaces the embedded roots)")
	at := fs.String("at", "now", "verification time: `now, doc or RFC3339`")
	maxAge := fs.Duration("max-age", 0, "refuse documents older than `DUR` at the verification time (e.g. 15m; 0: no limit)")
	pcrs := pcrFlags{}
	fs.Var(pcrs, "pcr", "expected PCR value `N=HEX` (repeatable)")
	var nonce, userData, publicKey hexFlag
	fs.Var(&nonce, "nonce", "expected nonce `HEX` (\"\" expects none)")
	fs.Var(&userData, "user-data", "expected user_data `HEX` (\"\" expects none)")
	fs.Var(&publicKey, "public-key", "expected public_key `HEX` (\"\" expects none)")
	allowDebug := fs.Bool("allow-debug", false, "accept a debug-mode enclave (PCR0 zero)")
	allowUnsigned := fs.Bool("allow-unsigned", false, "accept an emulator's unsigned document (never in production)")
	pos, err := cliflag.Parse(fs, args)
	if err != nil {
		return usageExit(err)
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "qtenclave verify: "+format+"\n", a...)
		return exitUsage
	}
	if len(pos) != 1 {
		fs.Usage()
		return exitUsage
	}
	opts := attestation.Options{
		MaxAge: *maxAge, ExpectPCRs: pcrs,
		ExpectNonce: nonce.value(), ExpectUserData: userData.value(), ExpectPublicKey: publicKey.value(),
		AllowDebug: *allowDebug, AllowUnsigned: *allowUnsigned,
	}
	if len(pcrs) == 0 {
		opts.ExpectPCRs = nil
	}
	if opts.Vendor, err = qtsm.ParseVendor(*vendorFlag); err != nil {
		return usageErr("--vendor: %v", err)
	}
	switch strings.ToLower(*at) {
	case "now", "":
		opts.Time = time.Now()
	case "doc", "document":
		opts.DocumentTime = true
	default:
		t, err := time.Parse(time.RFC3339Nano, *at)
		if err != nil {
			return usageErr("--at %q: want now, doc or an RFC 3339 time", *at)
		}
		opts.Time = t
	}
	if *maxAge < 0 {
		return usageErr("--max-age %s is negative", *maxAge)
	}
	for _, f := range roots {
		b, err := os.ReadFile(f)
		if err != nil {
			return usageErr("--root: %v", err)
		}
		rs, err := attestation.ParseRoots(b)
		if err != nil {
			return usageErr("--root %s: %v", f, err)
		}
		opts.Roots = append(opts.Roots, rs...)
	}

	raw, err := readDocument(pos[0], stdin)
	if err != nil {
		fmt.Fprintf(stderr, "qtenclave verify: %v\n", err)
		return exitFailed
	}
	doc, err := attestation.Parse(raw)
	if err != nil {
		fmt.Fprintf(stderr, "qtenclave verify: %s: %v\n", pos[0], err)
		return exitFailed
	}
	res, verr := attestation.Verify(doc, opts)
	out := newDocumentJSON(doc)
	out.Verification = verificationJSON{Valid: verr == nil, Debug: doc.Debug(), Unsigned: doc.Unsigned()}
	if verr != nil {
		out.Verification.Error = verr.Error()
	} else {
		out.Verification.At = res.Time.UTC().Format(time.RFC3339Nano)
		if res.Encoding != 0 {
			out.Verification.Signature = res.Encoding.String()
		}
		if res.Root.Cert != nil {
			out.Verification.Root = res.Root.Cert.Subject.String()
			out.Verification.RootVendor = res.Root.Vendor.String()
		}
	}
	if err := writeJSON(stdout, out); err != nil {
		fmt.Fprintf(stderr, "qtenclave verify: %v\n", err)
		return exitFailed
	}
	if verr != nil {
		fmt.Fprintf(stderr, "qtenclave verify: %s: invalid: %s\n", pos[0], printable(oneLine(verr.Error())))
		return exitFailed
	}
	return exitOK
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// readDocument reads DOC ("-": stdin) and undoes a base64 or hex text
// encoding. A COSE_Sign1 starts with 0x84 (or 0xd2 with tag 18), which no
// base64 or hex text does.
func readDocument(name string, stdin io.Reader) ([]byte, error) {
	// A document is at most attestation.MaxDocument bytes; hex, base64 and
	// the whitespace around them fit in four times that. Nothing larger is
	// read into memory, from a file or from stdin.
	const limit = 4 * attestation.MaxDocument
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > limit {
			return nil, fmt.Errorf("%s: %d bytes, more than an attestation document can be (%d)", name, st.Size(), limit)
		}
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%s: more than %d bytes, more than an attestation document can be", name, limit)
	}
	if len(b) > 0 && (b[0] == 0x84 || b[0] == 0xd2) {
		return b, nil
	}
	text := strings.Join(strings.Fields(string(b)), "")
	if d, err := hex.DecodeString(text); err == nil && len(d) > 0 {
		return d, nil
	}
	for _, e := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if d, err := e.DecodeString(text); err == nil && len(d) > 0 {
			return d, nil
		}
	}
	if len(b) == 0 {
		return nil, errors.New(name + ": empty")
	}
	return b, nil // let Parse say what is wrong
}

// documentJSON is the printed form of a document: hex for bytes, RFC 3339
// for times, PCRs in index order, certificates decoded.
type documentJSON struct {
	Vendor       string           `json:"vendor"`
	ModuleID     string           `json:"module_id"`
	Digest       string           `json:"digest"`
	Timestamp    string           `json:"timestamp"`
	TimestampMS  uint64           `json:"timestamp_ms"`
	PCRs         orderedPCRs      `json:"pcrs"`
	Certificate  certJSON         `json:"certificate"`
	CABundle     []certJSON       `json:"cabundle"`
	PublicKey    *string          `json:"public_key"`
	UserData     *string          `json:"user_data"`
	Nonce        *string          `json:"nonce"`
	Layout       layoutJSON       `json:"layout"`
	Verification verificationJSON `json:"verification"`
}

type layoutJSON struct {
	Tagged           bool     `json:"tagged"`
	Keys             []string `json:"keys"`
	Unknown          []string `json:"unknown_keys,omitempty"`
	IndefiniteMap    bool     `json:"indefinite_map"`
	NullFields       []string `json:"null_fields,omitempty"`
	EmptyFields      []string `json:"empty_fields,omitempty"`
	MinimalProtected bool     `json:"minimal_protected"`
	PCRKeyWidth      int      `json:"pcr_key_width"`
	Algorithm        int64    `json:"alg"`
	Protected        string   `json:"protected"`
	Signature        string   `json:"signature"`
}

type verificationJSON struct {
	Valid      bool   `json:"valid"`
	Error      string `json:"error,omitempty"`
	At         string `json:"at,omitempty"`
	Signature  string `json:"signature_encoding,omitempty"`
	Root       string `json:"root,omitempty"`
	RootVendor string `json:"root_vendor,omitempty"`
	Debug      bool   `json:"debug"`
	Unsigned   bool   `json:"unsigned"`
}

type certJSON struct {
	Subject   string `json:"subject,omitempty"`
	Issuer    string `json:"issuer,omitempty"`
	Serial    string `json:"serial,omitempty"`
	NotBefore string `json:"not_before,omitempty"`
	NotAfter  string `json:"not_after,omitempty"`
	SHA256    string `json:"sha256"`
	Error     string `json:"error,omitempty"`
}

func newCertJSON(der []byte) certJSON {
	sum := sha256.Sum256(der)
	j := certJSON{SHA256: hex.EncodeToString(sum[:])}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		j.Error = err.Error()
		return j
	}
	j.Subject, j.Issuer = c.Subject.String(), c.Issuer.String()
	j.Serial = hex.EncodeToString(c.SerialNumber.Bytes())
	j.NotBefore = c.NotBefore.UTC().Format(time.RFC3339)
	j.NotAfter = c.NotAfter.UTC().Format(time.RFC3339)
	return j
}

// orderedPCRs marshals as a JSON object keyed by index, in index order.
type orderedPCRs map[int][]byte

func (p orderedPCRs) MarshalJSON() ([]byte, error) {
	idx := make([]int, 0, len(p))
	for i := range p {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	var b bytes.Buffer
	b.WriteByte('{')
	for n, i := range idx {
		if n > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%q", strconv.Itoa(i), hex.EncodeToString(p[i]))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func optionalHex(b []byte) *string {
	if b == nil {
		return nil
	}
	s := hex.EncodeToString(b)
	return &s
}

func newDocumentJSON(d *attestation.Document) documentJSON {
	j := documentJSON{
		Vendor:      d.Vendor.String(),
		ModuleID:    d.ModuleID,
		Digest:      d.Digest,
		Timestamp:   d.Timestamp.UTC().Format(time.RFC3339Nano),
		TimestampMS: d.TimestampMillis,
		PCRs:        orderedPCRs(d.PCRs),
		Certificate: newCertJSON(d.Certificate),
		PublicKey:   optionalHex(d.PublicKey),
		UserData:    optionalHex(d.UserData),
		Nonce:       optionalHex(d.Nonce),
		Layout: layoutJSON{
			Tagged: d.Layout.Tagged, Keys: d.Layout.Keys, Unknown: d.Layout.Unknown,
			IndefiniteMap: d.Layout.IndefiniteMap, NullFields: d.Layout.NullFields, EmptyFields: d.Layout.EmptyFields,
			MinimalProtected: d.Layout.MinimalProtected, PCRKeyWidth: d.Layout.PCRKeyWidth,
			Algorithm: d.Algorithm, Protected: hex.EncodeToString(d.Protected), Signature: hex.EncodeToString(d.Signature),
		},
	}
	for _, c := range d.CABundle {
		j.CABundle = append(j.CABundle, newCertJSON(c))
	}
	return j
}
