//go:build linux

package main

import (
	"bytes"
	"testing"
	"time"
)

func TestParseRunArgs(t *testing.T) {
	o, err := parseRunArgs([]string{"--cpus", "1", "app.eif", "--mem", "512", "--forward", "8080:80", "--forward", "/tmp/s:1", "--timeout", "3s"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.EIF != "app.eif" || o.CPUs != 1 || o.MemMiB != 512 || len(o.Forwards) != 2 || o.Timeout != 3*time.Second || o.CID != 4 {
		t.Errorf("parseRunArgs = %+v", o)
	}
	for _, args := range [][]string{{}, {"a.eif", "b.eif"}, {"--cid", "3", "a.eif"}, {"--bogus", "a.eif"}, {"--cpus", "-1", "a.eif"}, {"--icount", "11", "a.eif"}, {"--icount", "-1", "a.eif"}, {"--icount", "x", "a.eif"}} {
		if _, err := parseRunArgs(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseRunArgs(%q) = nil error", args)
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"run"}, nil, &bytes.Buffer{}, &stderr); code != exitUsage {
		t.Errorf("qtenclave run (no EIF) = %d, want %d", code, exitUsage)
	}
}
