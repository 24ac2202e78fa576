package logstream

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func encode(t *testing.T, lines ...Record) []byte {
	t.Helper()
	b := []byte(Header)
	for _, r := range lines {
		var err error
		if b, err = AppendLine(b, r.Source, r.Text); err != nil {
			t.Fatalf("AppendLine(%v, %q) = %v", r.Source, r.Text, err)
		}
	}
	return b
}

func readAll(t *testing.T, b []byte) ([]Record, error) {
	t.Helper()
	r := NewReader(bytes.NewReader(b))
	var out []Record
	for {
		rec, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		rec.Text = append([]byte(nil), rec.Text...)
		out = append(out, rec)
	}
}

func TestWireBytes(t *testing.T) {
	got := encode(t, Record{Source: Init, Text: []byte("init: start")}, Record{Source: Stdout, Text: []byte("a\r")},
		Record{Source: Stderr, Text: nil}, Record{Source: Agent, Text: []byte("x\ny")})
	want := "qtenclave-log 1\ninit init: start\nstdout a\r\nstderr \nagent x\nagent y\n"
	if string(got) != want {
		t.Errorf("encoded = %q, want %q", got, want)
	}
}

func TestLongLineSplitsAndRoundTrips(t *testing.T) {
	long := strings.Repeat("0123456789", MaxText/10*2+7) // a little over 2 x MaxText
	b := encode(t, Record{Source: Stdout, Text: []byte(long)}, Record{Source: Stderr, Text: []byte("e")})
	recs, err := readAll(t, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4 (3 pieces and one line)", len(recs))
	}
	var joined []byte
	for i, r := range recs[:3] {
		if r.Source != Stdout || r.More != (i < 2) {
			t.Errorf("record %d = %v more=%v, want stdout more=%v", i, r.Source, r.More, i < 2)
		}
		if len(r.Text) > MaxText {
			t.Errorf("record %d carries %d bytes, want <= %d", i, len(r.Text), MaxText)
		}
		joined = append(joined, r.Text...)
	}
	if string(joined) != long {
		t.Errorf("joined pieces differ from the line")
	}
	if recs[3].Source != Stderr || string(recs[3].Text) != "e" || recs[3].More {
		t.Errorf("last record = %+v", recs[3])
	}
}

func TestAppendRecordRefuses(t *testing.T) {
	for _, r := range []Record{
		{Source: 0, Text: []byte("x")},
		{Source: 9, Text: []byte("x")},
		{Source: Init, Text: []byte("a\nb")},
		{Source: Init, Text: bytes.Repeat([]byte("x"), MaxText+1)},
	} {
		if b, err := AppendRecord(nil, r); err == nil {
			t.Errorf("AppendRecord(%v, %d bytes) = %q, want an error", r.Source, len(r.Text), b)
		}
	}
}

func TestReaderMalformed(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"empty", "", ErrSyntax},
		{"bad header", "qtenclave-log 2\n", ErrSyntax},
		{"unknown source", Header + "kernel x\n", ErrSyntax},
		{"no mark", Header + "stdout\n", ErrSyntax},
		{"cut record", Header + "stdout abc", io.ErrUnexpectedEOF},
		{"cut header", "qtenclave-l", io.ErrUnexpectedEOF},
		{"too long", Header + "stdout " + strings.Repeat("x", MaxText+1) + "\n", ErrSyntax},
	} {
		_, err := readAll(t, []byte(tc.in))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: read %q: err = %v, want %v", tc.name, tc.in, err, tc.want)
		}
	}
}

func TestSourceNames(t *testing.T) {
	for s, want := range map[Source]string{Init: "init", Agent: "agent", Stdout: "stdout", Stderr: "stderr", 7: "Source(7)"} {
		if s.String() != want {
			t.Errorf("Source(%d).String() = %q, want %q", uint8(s), s.String(), want)
		}
	}
}

// FuzzReader: any byte string either reads or fails with an error; what
// reads encodes back to the same records.
func FuzzReader(f *testing.F) {
	f.Add([]byte(Header + "init init: start\nstdout+abc\nstdout def\n"))
	f.Add([]byte(Header + "stderr \n"))
	f.Add([]byte("qtenclave-log 1\nagent x"))
	f.Fuzz(func(t *testing.T, in []byte) {
		recs, err := readAll(t, in)
		if err != nil {
			return
		}
		b := []byte(Header)
		for _, r := range recs {
			if b, err = AppendRecord(b, r); err != nil {
				t.Fatalf("AppendRecord(read record %+v) = %v", r, err)
			}
		}
		again, err := readAll(t, b)
		if err != nil || len(again) != len(recs) {
			t.Fatalf("re-read = %d records, %v; want %d", len(again), err, len(recs))
		}
	})
}
