//go:build linux

package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
)

func TestStopCommand(t *testing.T) {
	var gotCID, gotPort uint32
	var gotLine string
	dialEnclave = func(cid, port uint32) (net.Conn, error) {
		gotCID, gotPort = cid, port
		a, b := net.Pipe()
		go func() {
			defer b.Close()
			gotLine, _ = bufio.NewReader(b).ReadString('\n')
			io.WriteString(b, "OK\n")
		}()
		return a, nil
	}
	var out, errb bytes.Buffer
	if code := run([]string{"stop", "--cid", "16", "--grace", "3s"}, nil, &out, &errb); code != exitOK {
		t.Fatalf("stop = %d: %s", code, errb.String())
	}
	if gotCID != 16 || gotPort != 9003 || gotLine != "STOP 3000\n" {
		t.Errorf("dialled %d:%d and sent %q, want 16:9003 and STOP 3000", gotCID, gotPort, gotLine)
	}
	for _, args := range [][]string{{"stop"}, {"stop", "--cid", "3"}, {"stop", "--cid", "5", "extra"}} {
		if code := run(args, nil, &out, &errb); code != exitUsage {
			t.Errorf("qtenclave %q = %d, want %d", args, code, exitUsage)
		}
	}
	dialEnclave = func(cid, port uint32) (net.Conn, error) {
		a, b := net.Pipe()
		go func() {
			defer b.Close()
			bufio.NewReader(b).ReadString('\n')
			io.WriteString(b, "ERR no workload running\n")
		}()
		return a, nil
	}
	errb.Reset()
	if code := run([]string{"stop", "--cid", "16"}, nil, &out, &errb); code != exitFailed || !strings.Contains(errb.String(), "no workload running") {
		t.Errorf("stop refused = %d %q, want %d and the reason", code, errb.String(), exitFailed)
	}
}
