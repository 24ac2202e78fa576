// Command qtsm is the in-enclave command line of the secure module. It talks
// to qtsm-agent over its socket and, when no agent socket exists, to the
// device (/dev/nsm or /dev/qtsm) directly.
//
//	qtsm [--socket PATH] [--direct] [--json] [--timeout 30s] COMMAND
//
//	describe                               the module's description
//	pcr read [INDEX...]                    PCR values (all if no index)
//	pcr extend INDEX [--hex HEX|--string S|--file F|-]
//	                                       extend (default: data from stdin)
//	pcr lock INDEX                         lock one PCR
//	pcr lock-range N                       lock PCRs [0, N)
//	attest [--nonce HEX] [--user-data HEX|--user-data-file F]
//	       [--public-key-file F] [--out F] [--base64]
//	                                       attestation document (raw CBOR)
//	random [N] [--raw]                     N random bytes (default 32), hex
//	kms decrypt|generate-data-key|generate-random [...]
//	                                       a secret from KMS, released only to
//	                                       this attested enclave (kms.go)
//
// Exit status: 0 success, 1 failure, 2 usage.
package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/agent/client"
	"github.com/qtenclave/enclave/internal/cliflag"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/pcr"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage: qtsm [--socket PATH] [--direct] [--json] [--timeout D] COMMAND
commands:
  describe
  pcr read [INDEX...]
  pcr extend INDEX [--hex HEX | --string S | --file F | -]
  pcr lock INDEX
  pcr lock-range N
  attest [--nonce HEX] [--user-data HEX | --user-data-file F] [--public-key-file F] [--out F] [--base64]
  random [N] [--raw]
  ` + kmsUsage + `
`

// usageError is a command-line mistake (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

type env struct {
	ctx    context.Context
	m      qtsm.Module
	json   bool
	stdin  io.Reader
	stdout io.Writer
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("qtsm", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	defSock := os.Getenv("QTSM_SOCKET")
	if defSock == "" {
		defSock = api.DefaultSocket
	}
	socket := fs.String("socket", defSock, "qtsm-agent socket ($QTSM_SOCKET)")
	direct := fs.Bool("direct", false, "use the device directly, never the agent")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 30*time.Second, "deadline of the whole command")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "qtsm: %v\n%s", err, usage)
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	var parse func([]string) (action, error)
	switch cmd {
	case "describe":
		parse = describe
	case "pcr":
		parse = pcrCmd
	case "attest", "attestation":
		parse = attest
	case "random":
		parse = random
	case "kms":
		parse = kmsCmd
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "qtsm: unknown command %q\n%s", cmd, usage)
		return 2
	}

	// The whole command line is checked before the module is touched.
	act, err := parse(rest)
	if err != nil {
		return report(stderr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var m qtsm.Module
	if *direct {
		m, err = qtsm.Open()
	} else {
		m, err = client.Open(*socket)
	}
	if err != nil {
		fmt.Fprintf(stderr, "qtsm: %v\n", err)
		return 1
	}
	defer m.Close()
	return report(stderr, act(&env{ctx: ctx, m: m, json: *asJSON, stdin: stdin, stdout: stdout}))
}

func report(stderr io.Writer, err error) int {
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "qtsm: %v\n%s", err, usage)
		return 2
	}
	fmt.Fprintf(stderr, "qtsm: %v\n", err)
	return 1
}

// action runs a parsed command against the module.
type action func(e *env) error

// parseArgs parses fs's flags anywhere among args and returns the
// positional arguments ("-" counts as positional).
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	pos, err := cliflag.Parse(fs, args)
	if err != nil {
		return nil, usagef("%s: %v", fs.Name(), err)
	}
	return pos, nil
}

func parseIndex(s string) (int, error) {
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || i >= pcr.Count {
		return 0, usagef("PCR index %q: want 0..%d", s, pcr.Count-1)
	}
	return i, nil
}

func (e *env) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}

func describe(args []string) (action, error) {
	if len(args) != 0 {
		return nil, usagef("describe takes no arguments")
	}
	return func(e *env) error {
		d, err := e.m.Describe(e.ctx)
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(d)
		}
		locked := make([]string, len(d.LockedPCRs))
		for i, l := range d.LockedPCRs {
			locked[i] = strconv.Itoa(int(l))
		}
		fmt.Fprintf(e.stdout, "module_id: %s\nversion: %d.%d.%d\ndigest: %s\nmax_pcrs: %d\nlocked_pcrs: %s\n",
			d.ModuleID, d.VersionMajor, d.VersionMinor, d.VersionPatch, d.Digest, d.MaxPCRs, strings.Join(locked, ","))
		return nil
	}, nil
}

func pcrCmd(args []string) (action, error) {
	if len(args) == 0 {
		return nil, usagef("pcr: want read, extend, lock or lock-range")
	}
	switch args[0] {
	case "read":
		return pcrRead(args[1:])
	case "extend":
		return pcrExtend(args[1:])
	case "lock":
		if len(args) != 2 {
			return nil, usagef("pcr lock INDEX")
		}
		i, err := parseIndex(args[1])
		if err != nil {
			return nil, err
		}
		return func(e *env) error {
			if err := e.m.LockPCR(e.ctx, i); err != nil {
				return err
			}
			if e.json {
				return e.printJSON(api.LockResponse{Index: &i, Locked: true})
			}
			fmt.Fprintf(e.stdout, "pcr%d: locked\n", i)
			return nil
		}, nil
	case "lock-range":
		if len(args) != 2 {
			return nil, usagef("pcr lock-range N")
		}
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 0 || n > pcr.Count {
			return nil, usagef("pcr lock-range %q: want 0..%d", args[1], pcr.Count)
		}
		return func(e *env) error {
			if err := e.m.LockPCRs(e.ctx, n); err != nil {
				return err
			}
			if e.json {
				return e.printJSON(api.LockResponse{Range: &n, Locked: true})
			}
			fmt.Fprintf(e.stdout, "pcr0-%d: locked\n", n-1)
			return nil
		}, nil
	}
	return nil, usagef("pcr: unknown subcommand %q", args[0])
}

func pcrRead(args []string) (action, error) {
	var idx []int
	for _, a := range args {
		i, err := parseIndex(a)
		if err != nil {
			return nil, err
		}
		idx = append(idx, i)
	}
	return func(e *env) error {
		if len(idx) == 0 {
			for i := range pcr.Count {
				idx = append(idx, i)
			}
		}
		var out []api.PCR
		for _, i := range idx {
			p, err := e.m.DescribePCR(e.ctx, i)
			if err != nil {
				return err
			}
			out = append(out, api.PCR{Index: p.Index, Locked: p.Locked, Value: p.Value})
		}
		if e.json {
			return e.printJSON(api.PCRList{PCRs: out})
		}
		for _, p := range out {
			state := "unlocked"
			if p.Locked {
				state = "locked"
			}
			fmt.Fprintf(e.stdout, "pcr%d: %x %s\n", p.Index, []byte(p.Value), state)
		}
		return nil
	}, nil
}

func pcrExtend(args []string) (action, error) {
	fs := flag.NewFlagSet("pcr extend", flag.ContinueOnError)
	hexData := fs.String("hex", "", "data in hex")
	str := fs.String("string", "", "data as text")
	file := fs.String("file", "", "data from a file")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) < 1 || len(pos) > 2 || (len(pos) == 2 && pos[1] != "-") {
		return nil, usagef("pcr extend INDEX [--hex HEX | --string S | --file F | -]")
	}
	i, err := parseIndex(pos[0])
	if err != nil {
		return nil, err
	}
	given := 0
	fs.Visit(func(*flag.Flag) { given++ })
	if given > 1 || (given == 1 && len(pos) == 2) {
		return nil, usagef("pcr extend: give the data one way only")
	}
	var data []byte
	switch {
	case isSet(fs, "hex"):
		if data, err = hex.DecodeString(*hexData); err != nil {
			return nil, usagef("--hex: %v", err)
		}
	case isSet(fs, "string"):
		data = []byte(*str)
	}
	return func(e *env) error {
		switch {
		case isSet(fs, "file"):
			if data, err = os.ReadFile(*file); err != nil {
				return err
			}
		case given == 0:
			if data, err = io.ReadAll(io.LimitReader(e.stdin, api.MaxBody+1)); err != nil {
				return fmt.Errorf("reading data from stdin: %w", err)
			}
		}
		v, err := e.m.ExtendPCR(e.ctx, i, data)
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(api.ExtendResponse{Index: i, Value: v})
		}
		fmt.Fprintf(e.stdout, "pcr%d: %x\n", i, v)
		return nil
	}, nil
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func attest(args []string) (action, error) {
	fs := flag.NewFlagSet("attest", flag.ContinueOnError)
	nonce := fs.String("nonce", "", "nonce in hex")
	ud := fs.String("user-data", "", "user data in hex")
	udFile := fs.String("user-data-file", "", "user data from a file")
	pkFile := fs.String("public-key-file", "", "public key from a file (DER or PEM, sent as is)")
	out := fs.String("out", "", "write the document to this file instead of stdout")
	b64 := fs.Bool("base64", false, "print the document in base64")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != 0 {
		return nil, usagef("attest takes no positional arguments")
	}
	var req qtsm.AttestationRequest
	if isSet(fs, "nonce") {
		if req.Nonce, err = hex.DecodeString(*nonce); err != nil {
			return nil, usagef("--nonce: %v", err)
		}
	}
	if isSet(fs, "user-data") && isSet(fs, "user-data-file") {
		return nil, usagef("--user-data and --user-data-file are exclusive")
	}
	if isSet(fs, "user-data") {
		if req.UserData, err = hex.DecodeString(*ud); err != nil {
			return nil, usagef("--user-data: %v", err)
		}
	}
	return func(e *env) error {
		if isSet(fs, "user-data-file") {
			if req.UserData, err = os.ReadFile(*udFile); err != nil {
				return err
			}
		}
		if isSet(fs, "public-key-file") {
			if req.PublicKey, err = os.ReadFile(*pkFile); err != nil {
				return err
			}
		}
		doc, err := e.m.Attestation(e.ctx, req)
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(api.AttestationResponse{Document: doc})
		}
		if *b64 {
			doc = []byte(base64.StdEncoding.EncodeToString(doc) + "\n")
		}
		if *out != "" {
			return os.WriteFile(*out, doc, 0o644)
		}
		_, err = e.stdout.Write(doc)
		return err
	}, nil
}

func random(args []string) (action, error) {
	fs := flag.NewFlagSet("random", flag.ContinueOnError)
	raw := fs.Bool("raw", false, "print the bytes themselves")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, err
	}
	n := 32
	if len(pos) > 1 {
		return nil, usagef("random [N]")
	}
	if len(pos) == 1 {
		if n, err = strconv.Atoi(pos[0]); err != nil || n < 1 || n > 1<<20 {
			return nil, usagef("random %q: want 1..%d", pos[0], 1<<20)
		}
	}
	return func(e *env) error {
		b := make([]byte, n)
		if _, err := qtsm.ReadRandom(e.ctx, e.m, b); err != nil {
			return err
		}
		switch {
		case e.json:
			return e.printJSON(api.RandomResponse{Random: b})
		case *raw:
			_, err = e.stdout.Write(b)
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "%x\n", b)
		return err
	}, nil
}
