//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/qtenclave/enclave/internal/cliflag"
	"github.com/qtenclave/enclave/proto/control"
	"github.com/qtenclave/enclave/proto/vsockports"
)

func init() {
	register("stop", command{summary: "stop a running enclave gracefully (SIGTERM to its workload, SIGKILL after the grace period)", run: runStop})
}

const stopUsage = `--cid CID [--port N] [--grace D]

On a parent instance, asks the enclave at CID (its init listens when its
kernel command line has qtenclave.control_port) to stop as docker stop
does: SIGTERM to the workload's process group, SIGKILL once the grace
period is over (0: the image's stop_timeout, else 10s); the workload's real
exit status is then reported to the parent as usual. Exit status 0 when
init took the request, 1 when it refused or did not answer (then only the
hypervisor's terminate is left).`

// dialEnclave is the AF_VSOCK connection to the enclave: a thin adapter,
// swapped in tests (this machine's own vsock device is not for tests).
var dialEnclave = func(cid, port uint32) (net.Conn, error) { return vsock.Dial(cid, port, nil) }

func runStop(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("stop", stopUsage, stderr)
	cid := fs.Uint("cid", 0, "the enclave's `CID` (4..4294967294)")
	port := fs.Uint("port", vsockports.Control, "the enclave's control port")
	grace := fs.Duration("grace", 0, "grace period between SIGTERM and SIGKILL (0: the image's)")
	pos, err := cliflag.Parse(fs, args)
	if err != nil {
		return usageExit(err)
	}
	switch {
	case len(pos) != 0:
		fmt.Fprintf(stderr, "qtenclave stop: unexpected argument %q\n", pos[0])
		return exitUsage
	case *cid < 4 || *cid > 0xfffffffe:
		fmt.Fprintln(stderr, "qtenclave stop: --cid: want the enclave's CID, 4..4294967294")
		return exitUsage
	case *port == 0 || *port > 0xffffffff || *grace < 0:
		fmt.Fprintln(stderr, "qtenclave stop: --port and --grace out of range")
		return exitUsage
	}
	if err := stopEnclave(context.Background(), uint32(*cid), uint32(*port), *grace); err != nil {
		fmt.Fprintf(stderr, "qtenclave stop: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "enclave %d: stopping (SIGTERM sent to its workload)\n", *cid)
	return exitOK
}

func stopEnclave(ctx context.Context, cid, port uint32, grace time.Duration) error {
	c, err := dialEnclave(cid, port)
	if err != nil {
		return fmt.Errorf("enclave %d port %d: %w", cid, port, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := control.Request(c, grace); err != nil {
		if errors.Is(err, control.ErrSyntax) {
			return fmt.Errorf("enclave %d port %d does not speak the stop protocol: %w", cid, port, err)
		}
		return err
	}
	return nil
}
