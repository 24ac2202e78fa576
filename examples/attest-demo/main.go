// Command attest-demo is the demo workload of the end-to-end boot: inside
// the enclave it uses qtsm-agent (through package agent/client) to exercise
// every secure-module operation and prints one parseable line per result:
//
//	demo: agent /run/qtsm.sock ready
//	demo: module_id=<id> digest=SHA384 max_pcrs=32 locked=<n>
//	demo: PCR0=<hex>            (PCR1, PCR2 likewise)
//	demo: random bytes=<n>
//	demo: attestation bytes=<n> sha256=<hex>
//	demo: attestation nonce=<hex> document=<base64 COSE_Sign1>
//	demo: attestation nonce ok
//	demo: pcr16 extended=<hex>
//	demo: pcr16 locked ok
//	demo: pcr16 extend after lock refused ReadOnlyIndex ok
//	demo: PASS                  (or "demo: FAIL <n> checks failed")
//
// A failed step prints "demo: FAIL <step>: <error>". It exits 0 when every
// check passed and 1 otherwise; --exit N makes it exit N regardless (for the
// failing-workload scenario).
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/agent/client"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/attestation"
	"github.com/qtenclave/enclave/qtsm/pcr"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("attest-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", api.DefaultSocket, "qtsm-agent socket")
	wait := fs.Duration("wait", 5*time.Second, "how long to wait for the agent")
	exit := fs.Int("exit", -1, "exit with this code whatever happened (0..255)")
	index := fs.Int("pcr", 16, "application PCR to extend and lock (16..31)")
	untilTerm := fs.Bool("until-term", false, "skip the checks: say so, wait for SIGTERM, then exit 0 (a service being stopped)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 || *exit > 255 || *index < pcr.FirstApp || *index >= pcr.Count {
		fmt.Fprintln(stderr, "usage: attest-demo [--socket PATH] [--wait D] [--pcr 16..31] [--exit 0..255]")
		return 2
	}
	if *untilTerm {
		return serveUntilTerm(stdout)
	}
	failed := demo(*socket, *wait, *index, stdout)
	// One line on stderr, so a boot shows that both streams reach the
	// parent, each apart.
	fmt.Fprintf(stderr, "demo: %d checks failed\n", failed)
	code := 0
	if failed > 0 {
		fmt.Fprintf(stdout, "demo: FAIL %d checks failed\n", failed)
		code = 1
	} else {
		fmt.Fprintln(stdout, "demo: PASS")
	}
	if *exit >= 0 {
		fmt.Fprintf(stdout, "demo: exiting with %d as requested\n", *exit)
		return *exit
	}
	return code
}

// demo runs the steps and returns how many failed.
func demo(socket string, wait time.Duration, index int, out io.Writer) int {
	failed := 0
	fail := func(step string, err error) {
		failed++
		fmt.Fprintf(out, "demo: FAIL %s: %v\n", step, err)
	}
	c := client.New(socket)
	defer c.Close()
	wctx, cancel := context.WithTimeout(context.Background(), wait)
	err := c.Wait(wctx)
	cancel()
	if err != nil {
		fail("agent", err)
		return failed
	}
	fmt.Fprintf(out, "demo: agent %s ready\n", socket)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if d, err := c.Describe(ctx); err != nil {
		fail("describe", err)
	} else {
		fmt.Fprintf(out, "demo: module_id=%s digest=%s max_pcrs=%d locked=%d\n", d.ModuleID, d.Digest, d.MaxPCRs, len(d.LockedPCRs))
	}
	for i := range 3 {
		if p, err := c.DescribePCR(ctx, i); err != nil {
			fail(fmt.Sprintf("PCR%d", i), err)
		} else {
			fmt.Fprintf(out, "demo: PCR%d=%x\n", i, p.Value)
		}
	}

	nonce, err := c.GetRandom(ctx)
	switch {
	case err != nil:
		fail("random", err)
	case len(nonce) == 0 || bytes.Count(nonce, []byte{0}) == len(nonce):
		fail("random", fmt.Errorf("%d bytes, all zero", len(nonce)))
	default:
		fmt.Fprintf(out, "demo: random bytes=%d\n", len(nonce))
	}
	if len(nonce) > 64 {
		nonce = nonce[:64]
	}
	if len(nonce) == 0 {
		nonce = []byte("attest-demo")
	}
	doc, err := c.Attestation(ctx, qtsm.AttestationRequest{Nonce: nonce, UserData: []byte("qtenclave attest-demo")})
	if err != nil {
		fail("attestation", err)
	} else {
		sum := sha256.Sum256(doc)
		fmt.Fprintf(out, "demo: attestation bytes=%d sha256=%x\n", len(doc), sum)
		// The whole document and the nonce, so the parent can verify it.
		fmt.Fprintf(out, "demo: attestation nonce=%x document=%s\n", nonce, base64.StdEncoding.EncodeToString(doc))
		d, err := attestation.Parse(doc)
		switch {
		case err != nil:
			fail("attestation parse", err)
		case !bytes.Equal(d.Nonce, nonce):
			fail("attestation nonce", fmt.Errorf("document carries nonce %x, sent %x", d.Nonce, nonce))
		default:
			fmt.Fprintln(out, "demo: attestation nonce ok")
		}
	}

	data := []byte("qtenclave attest-demo")
	before, err := c.DescribePCR(ctx, index)
	if err != nil {
		fail(fmt.Sprintf("pcr%d read", index), err)
	} else if v, err := c.ExtendPCR(ctx, index, data); err != nil {
		fail(fmt.Sprintf("pcr%d extend", index), err)
	} else if want := pcr.Extend(before.Value, data); !bytes.Equal(v, want) {
		fail(fmt.Sprintf("pcr%d extend", index), fmt.Errorf("new value %x, want SHA384(old||data) = %x", v, want))
	} else {
		fmt.Fprintf(out, "demo: pcr%d extended=%x\n", index, v)
	}
	if err := c.LockPCR(ctx, index); err != nil {
		fail(fmt.Sprintf("pcr%d lock", index), err)
	} else {
		fmt.Fprintf(out, "demo: pcr%d locked ok\n", index)
	}
	if _, err := c.ExtendPCR(ctx, index, data); !errors.Is(err, qtsm.ErrReadOnlyIndex) {
		fail(fmt.Sprintf("pcr%d extend after lock", index), fmt.Errorf("got %v, want ReadOnlyIndex", err))
	} else {
		fmt.Fprintf(out, "demo: pcr%d extend after lock refused ReadOnlyIndex ok\n", index)
	}
	return failed
}

// serveUntilTerm is a service that traps SIGTERM: it says it is waiting,
// and on SIGTERM writes its last line and exits 0, as a well-behaved
// service does when it is stopped.
func serveUntilTerm(stdout io.Writer) int {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	fmt.Fprintln(stdout, "demo: waiting for SIGTERM")
	<-c
	fmt.Fprintln(stdout, "demo: got SIGTERM, clean exit")
	return 0
}
