package eif

import (
	"bytes"
	"crypto/elliptic"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The seed corpus lives in testdata/fuzz/<target>/ (valid unsigned and
// signed images, and a few corrupted ones). Regenerate it with
//
//	EIF_WRITE_FUZZ_CORPUS=1 go test -run TestWriteFuzzCorpus ./image/eif

func corpusSeeds(t testing.TB) map[string][]byte {
	dir := t.TempDir()
	certFile, keyFile := testSigner(t, dir, elliptic.P256(), false)
	s, err := LoadSigner(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	unsigned := smallEIF(t, "console=ttyS0", nil, "boot", "app")
	seeds := map[string][]byte{
		"unsigned":    unsigned,
		"one-ramdisk": smallEIF(t, "", nil, "boot"),
		"signed":      smallEIF(t, "x", s, "boot", "app"),
		"header-only": unsigned[:HeaderSize],
	}
	bad := bytes.Clone(unsigned)
	bad[offNum+1] = 40
	seeds["bad-count"] = bad
	return seeds
}

func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("EIF_WRITE_FUZZ_CORPUS") == "" {
		t.Skip("set EIF_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz")
	}
	sig := []byte(nil)
	for name, b := range corpusSeeds(t) {
		for _, target := range []string{"FuzzRead", "FuzzValidate"} {
			writeSeed(t, target, name, b)
		}
		if name == "signed" {
			f, err := NewFile(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			sig, _ = f.SignatureSection().Bytes()
		}
	}
	writeSeed(t, "FuzzParseSignature", "signed", sig)
}

func writeSeed(t *testing.T, target, name string, b []byte) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
	sum := sha256.Sum256(b)
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%x", name, sum[:4])), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzRead opens arbitrary bytes and reads every small section: nothing may
// panic, allocate according to sizes from the input, or fail with an error
// that is not ErrInvalid (reads from memory cannot fail otherwise).
func FuzzRead(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := NewFile(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("NewFile error %v is not ErrInvalid", err)
			}
			return
		}
		for _, s := range file.Sections {
			if s.Offset < HeaderSize || s.DataOffset()+s.Size > int64(len(data)) {
				t.Fatalf("section %d outside the input: %+v", s.Index, s)
			}
		}
		file.Cmdline()
		file.Metadata()
		file.Signature()
		if len(file.Ramdisks()) == 0 || file.Kernel() == nil || file.CmdlineSection() == nil {
			t.Fatal("NewFile accepted an image without kernel, cmdline or ramdisk")
		}
	})
}

// FuzzValidate runs the full validation; an accepted image must measure
// the same through the independent reading of the test.
func FuzzValidate(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := NewFile(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		m, err := file.Verify()
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Verify error %v is not ErrInvalid", err)
			}
			return
		}
		file.VerifySignature(m)
		stored, computed, _, pcrs := independent(t, data)
		if stored != computed {
			t.Fatalf("Verify accepted a CRC that the independent reading refuses")
		}
		if got := fmt.Sprintf("%x %x %x", m.PCR0, m.PCR1, m.PCR2); got != pcrs[0]+" "+pcrs[1]+" "+pcrs[2] {
			t.Fatalf("measurements %s, independent %v", got, pcrs)
		}
	})
}

// FuzzParseSignature decodes arbitrary signature sections.
func FuzzParseSignature(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSignature(data)
		if err != nil {
			if !errors.Is(err, ErrSignature) {
				t.Fatalf("error %v is not ErrSignature", err)
			}
			return
		}
		s.Verify(make([]byte, 48))
		s.PCR8()
	})
}
