package tunnel

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/qtenclave/enclave/proto/egress"
)

func TestRoundTrip(t *testing.T) {
	d, err := egress.ParseDestination("KMS.eu-west-1.amazonaws.com:443")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteRequest(&b, d); err != nil {
		t.Fatal(err)
	}
	b.WriteString("\x16\x03\x01 the TLS bytes that follow")
	if got := b.String(); !strings.HasPrefix(got, "qtenclave-tunnel 1 kms.eu-west-1.amazonaws.com:443\n") {
		t.Errorf("request = %q", got)
	}
	got, err := ReadRequest(&b)
	if err != nil || got != d {
		t.Fatalf("ReadRequest = %v, %v; want %v", got, err, d)
	}
	if rest := b.String(); rest != "\x16\x03\x01 the TLS bytes that follow" {
		t.Errorf("ReadRequest consumed the stream after the line: left %q", rest)
	}
	b.Reset()
	WriteOK(&b)
	if err := ReadAnswer(&b); err != nil {
		t.Errorf("ReadAnswer(OK) = %v", err)
	}
	b.Reset()
	WriteRefusal(&b, Denied, "operator allowlist: default deny\x00\n")
	var r *Refusal
	if err := ReadAnswer(&b); !errors.As(err, &r) || r.Code != Denied || r.Text != "operator allowlist: default deny??" {
		t.Errorf("ReadAnswer(refusal) = %v", err)
	}
}

func TestMalformed(t *testing.T) {
	for _, in := range []string{
		"",
		"qtenclave-tunnel 1 example.com:443",   // no newline
		"qtenclave-tunnel 2 example.com:443\n", // version
		"CONNECT example.com:443 HTTP/1.1\n",
		"qtenclave-tunnel 1 example.com\n",
		"qtenclave-tunnel 1 *.example.com:443\n",
		"qtenclave-tunnel 1 " + strings.Repeat("a", MaxLine) + ":443\n",
	} {
		if d, err := ReadRequest(strings.NewReader(in)); err == nil {
			t.Errorf("ReadRequest(%q) = %v, want an error", in, d)
		}
	}
	for _, in := range []string{"", "YES\n", "ERR nope text\n", "ERR denied bad\x01\n", "OK"} {
		if err := ReadAnswer(strings.NewReader(in)); err == nil {
			t.Errorf("ReadAnswer(%q) = nil, want an error", in)
		} else {
			var r *Refusal
			if errors.As(err, &r) {
				t.Errorf("ReadAnswer(%q) = refusal %v, want a malformed answer", in, r)
			}
		}
	}
	// A long line is refused after MaxLine bytes, not read to its end.
	long := io.MultiReader(strings.NewReader(Magic), strings.NewReader(strings.Repeat("x", 1<<20)))
	if _, err := ReadRequest(long); !errors.Is(err, ErrMalformed) {
		t.Errorf("ReadRequest(1 MiB line) = %v, want ErrMalformed", err)
	}
}

func FuzzHandshake(f *testing.F) {
	f.Add([]byte("qtenclave-tunnel 1 example.com:443\nrest"))
	f.Add([]byte("qtenclave-tunnel 1 [fd00::1]:443\n"))
	f.Add([]byte("ERR denied default deny\n"))
	f.Add([]byte("OK\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		if d, err := ReadRequest(r); err == nil {
			var out bytes.Buffer
			WriteRequest(&out, d)
			if d2, err := ReadRequest(&out); err != nil || d2 != d {
				t.Fatalf("request %v does not round-trip: %v, %v", d, d2, err)
			}
			if consumed := len(b) - r.Len(); consumed > MaxLine {
				t.Fatalf("ReadRequest consumed %d bytes", consumed)
			}
		}
		if err := ReadAnswer(bytes.NewReader(b)); err != nil {
			var ref *Refusal
			if errors.As(err, &ref) {
				var out bytes.Buffer
				WriteRefusal(&out, ref.Code, ref.Text)
				var ref2 *Refusal
				if err := ReadAnswer(&out); !errors.As(err, &ref2) || *ref2 != *ref {
					t.Fatalf("refusal %v does not round-trip: %v", ref, err)
				}
			}
		}
	})
}
