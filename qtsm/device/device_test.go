package device

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func TestExchangeNotADevice(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	p := filepath.Join(t.TempDir(), "nsm")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	resp := make([]byte, NitroMaxResponse)
	for _, tc := range []struct {
		name      string
		req, resp []byte
		want      error
	}{
		{"regular file", []byte{0xa0}, resp, unix.ENOTTY},
		{"empty request", nil, resp, nil},
		{"empty response buffer", []byte{0xa0}, nil, nil},
	} {
		n, err := Exchange(f, IoctlRaw, tc.req, tc.resp)
		if err == nil || n != 0 || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("Exchange(%s) = %d, %v; want 0 and an error (%v)", tc.name, n, err, tc.want)
		}
	}
}

// TestIntegrationDevice sends DescribeNSM ("DescribeNSM" as a CBOR text
// string) to a real device, when there is one.
func TestIntegrationDevice(t *testing.T) {
	for _, dev := range []struct {
		path    string
		maxResp int
	}{{"/dev/nsm", NitroMaxResponse}, {"/dev/qtsm", QingtianMaxResponse}} {
		f, err := os.OpenFile(dev.path, os.O_RDWR, 0)
		if err != nil {
			t.Logf("skipping %s: %v", dev.path, err)
			continue
		}
		req := append([]byte{0x6b}, "DescribeNSM"...)
		resp := make([]byte, dev.maxResp)
		n, err := Exchange(f, IoctlRaw, req, resp)
		f.Close()
		if err != nil || n == 0 {
			t.Errorf("Exchange(%s, DescribeNSM) = %d, %v", dev.path, n, err)
		}
	}
}

func TestSpecs(t *testing.T) {
	for path, want := range map[string]string{"/dev/nsm": "nitro", "/dev/qtsm": "qingtian", "/tmp/x/nsm": "nitro", "/dev/other": ""} {
		s, ok := ByPath(path)
		if s.Name != want || ok != (want != "") {
			t.Errorf("ByPath(%q) = %q, %v; want %q", path, s.Name, ok, want)
		}
	}
	if got := Paths(); len(got) != 2 || got[0] != "/dev/qtsm" || got[1] != "/dev/nsm" {
		t.Errorf("Paths() = %q, want /dev/qtsm then /dev/nsm", got)
	}
}
