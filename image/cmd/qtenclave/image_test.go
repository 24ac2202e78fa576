package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash/crc32"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qtenclave/enclave/image"
	"github.com/qtenclave/enclave/image/eif"
	"github.com/qtenclave/enclave/image/ramdisk"
	"github.com/qtenclave/enclave/proto/launch"
)

// fixture holds the inputs of a build: a fake bzImage, fake static init and
// agent binaries, a module file and a dir: image.
type fixture struct {
	dir, kernel, init, agent, kmod, rootfs string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{
		dir:    dir,
		kernel: filepath.Join(dir, "bzImage"),
		init:   filepath.Join(dir, "init"),
		agent:  filepath.Join(dir, "qtsm-agent"),
		kmod:   filepath.Join(dir, "nsm.ko.xz"),
		rootfs: filepath.Join(dir, "images", "app"),
	}
	// A kernel with a bzImage setup header naming its version.
	k := make([]byte, 64<<10)
	copy(k[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(k[0x20e:], 0x200)
	copy(k[0x400:], "6.12.117 (qtenclave@qtenclave) #1 SMP\x00")
	mustWrite(t, f.kernel, k, 0o644)
	mustWrite(t, f.init, fakeELF(elf.EM_X86_64, "init"), 0o755)
	mustWrite(t, f.agent, fakeELF(elf.EM_X86_64, "agent"), 0o755)
	mustWrite(t, f.kmod, []byte("\xfd7zXZ\x00module"), 0o644)
	writeTree(t, f.rootfs)
	return f
}

// writeTree writes a small filesystem with explicit permissions.
func writeTree(t *testing.T, root string) {
	t.Helper()
	for _, d := range []string{"bin", "etc", "app"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(root, d), 0o755)
	}
	os.Chmod(root, 0o755)
	mustWrite(t, filepath.Join(root, "bin", "server"), []byte("#!server binary\n"), 0o755)
	mustWrite(t, filepath.Join(root, "etc", "hello"), []byte("hello\n"), 0o644)
	mustWrite(t, filepath.Join(root, "app", "config.json"), []byte(`{"port": 8080}`), 0o600)
	if err := os.Symlink("../bin/server", filepath.Join(root, "app", "server")); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // whatever the umask
		t.Fatal(err)
	}
}

// fakeELF is a minimal static ELF64 executable header.
func fakeELF(machine elf.Machine, tag string) []byte {
	var b bytes.Buffer
	b.Write([]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT), 0, 0, 0, 0, 0, 0, 0, 0, 0})
	binary.Write(&b, binary.LittleEndian, struct {
		Type, Machine                                        uint16
		Version                                              uint32
		Entry, Phoff, Shoff                                  uint64
		Flags                                                uint32
		Ehsize, Phentsize, Phnum, Shentsize, Shnum, Shstrndx uint16
	}{uint16(elf.ET_EXEC), uint16(machine), 1, 0x401000, 64, 0, 0, 64, 56, 0, 64, 0, 0})
	b.WriteString(tag)
	return b.Bytes()
}

// cli runs qtenclave with args and returns the exit code and outputs.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func (f *fixture) buildArgs(out string, extra ...string) []string {
	return append([]string{"build", "--image", "dir:" + f.rootfs, "--kernel", f.kernel,
		"--init", f.init, "--agent", f.agent, "--kmod", f.kmod,
		"--cmd", `["/bin/server","--port","8080"]`, "-o", out}, extra...)
}

func parseMeasurements(t *testing.T, s string) *eif.Measurements {
	t.Helper()
	var doc struct{ Measurements *eif.Measurements }
	if err := json.Unmarshal([]byte(s), &doc); err != nil || doc.Measurements == nil {
		t.Fatalf("output %q is not {\"Measurements\": ...}: %v", s, err)
	}
	return doc.Measurements
}

func TestBuildDescribeExtract(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	f := newFixture(t)
	out := filepath.Join(t.TempDir(), "app.eif")
	code, stdout, stderr := cli(t, f.buildArgs(out, "--env", "MODE=prod", "--workdir", "/app")...)
	if code != exitOK {
		t.Fatalf("build = %d, stderr %s", code, stderr)
	}
	built := parseMeasurements(t, stdout)
	if !strings.Contains(stdout, `"HashAlgorithm": "Sha384 { ... }"`) {
		t.Errorf("build output lacks nitro-cli's HashAlgorithm: %s", stdout)
	}

	// pcrs agrees with build.
	code, stdout, stderr = cli(t, "pcrs", out)
	if code != exitOK || !parseMeasurements(t, stdout).Equal(built) {
		t.Errorf("pcrs = %d %s %s, want the build's measurements", code, stdout, stderr)
	}

	// describe.
	code, stdout, stderr = cli(t, "describe", out)
	if code != exitOK {
		t.Fatalf("describe = %d: %s", code, stderr)
	}
	var d struct {
		EifVersion int
		Arch       string
		CheckCRC   bool
		Sections   []struct{ Type string }
		Kernel     eif.KernelInfo
		Cmdline    string
		Metadata   eif.Metadata
		IsSigned   bool
	}
	if err := json.Unmarshal([]byte(stdout), &d); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, s := range d.Sections {
		types = append(types, s.Type)
	}
	if got := strings.Join(types, ","); got != "kernel,cmdline,metadata,ramdisk,ramdisk" {
		t.Errorf("sections = %s", got)
	}
	if d.EifVersion != 4 || d.Arch != "x86_64" || !d.CheckCRC || d.IsSigned {
		t.Errorf("describe = version %d arch %s crc %v signed %v", d.EifVersion, d.Arch, d.CheckCRC, d.IsSigned)
	}
	if want := image.CmdlineX86; d.Cmdline != want {
		t.Errorf("cmdline = %q, want AWS's %q", d.Cmdline, want)
	}
	md := d.Metadata
	if md.ImageName != "app" || md.ImageVersion != "latest" || md.BuildMetadata.BuildTime != "1970-01-01T00:00:00Z" ||
		md.BuildMetadata.KernelVersion != "6.12.117" || md.BuildMetadata.BuildTool != "qtenclave" {
		t.Errorf("metadata = %+v", md)
	}
	if d.Kernel.Format != "bzImage" {
		t.Errorf("kernel = %+v", d.Kernel)
	}

	// extract, then look inside the ramdisks.
	dir := filepath.Join(t.TempDir(), "x")
	code, stdout, stderr = cli(t, "extract", out, dir)
	if code != exitOK {
		t.Fatalf("extract = %d: %s", code, stderr)
	}
	for _, name := range []string{"kernel", "cmdline", "metadata.json", "ramdisk-0", "ramdisk-1"} {
		if !strings.Contains(stdout, filepath.Join(dir, name)) {
			t.Errorf("extract did not list %s: %s", name, stdout)
		}
	}
	if k, _ := os.ReadFile(filepath.Join(dir, "kernel")); !bytes.Equal(k, mustRead(t, f.kernel)) {
		t.Error("extracted kernel differs from the input")
	}
	boot := index(t, filepath.Join(dir, "ramdisk-0"))
	if got := strings.Join(boot.Paths(), ","); got != "dev,dev/console,init,nsm.ko.xz,qtsm-agent" {
		t.Errorf("bootstrap ramdisk = %s", got)
	}
	app := index(t, filepath.Join(dir, "ramdisk-1"))
	for _, p := range []string{"rootfs/bin/server", "rootfs/etc/hello", "rootfs/app/server", "rootfs/proc", "cmd", "env", "launch.json"} {
		if _, ok := app.Entries[p]; !ok {
			t.Errorf("application ramdisk lacks %s (has %v)", p, app.Paths())
		}
	}
	if e := app.Entries["rootfs/app/config.json"]; e == nil || e.Mode&0o777 != 0o600 || e.UID != 0 {
		t.Errorf("rootfs/app/config.json = %+v, want mode 0600 owner root", e)
	}
	// The launch manifest carries the overrides.
	mf := extractFile(t, filepath.Join(dir, "ramdisk-1"), "launch.json")
	m, err := launch.Parse(mf)
	if err != nil {
		t.Fatalf("launch.json %q: %v", mf, err)
	}
	if got := strings.Join(m.Argv(), " "); got != "/bin/server --port 8080" || m.WorkingDir != "/app" || !contains(m.Env, "MODE=prod") {
		t.Errorf("manifest = %+v", m)
	}
	// Extract never overwrites.
	if code, _, stderr := cli(t, "extract", out, dir); code != exitFailed || !strings.Contains(stderr, "exists") {
		t.Errorf("extract into a full directory = %d %s, want failure", code, stderr)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func index(t *testing.T, path string) *ramdisk.Index {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	idx, err := ramdisk.ReadIndex(fh)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return idx
}

// extractFile returns the content of one file of a cpio archive, read with
// the GNU-compatible record layout by hand.
func extractFile(t *testing.T, archive, name string) []byte {
	t.Helper()
	b := mustRead(t, archive)
	for off := 0; off+110 <= len(b); {
		field := func(i int) int {
			v, _ := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			return int(v)
		}
		size, nameSize := field(6), field(11)
		n := string(b[off+110 : off+110+nameSize-1])
		data := (off + 110 + nameSize + 3) &^ 3
		if n == name {
			return b[data : data+size]
		}
		off = (data + size + 3) &^ 3
	}
	t.Fatalf("%s not in %s", name, archive)
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestBuildRefuses(t *testing.T) {
	f := newFixture(t)
	outDir := t.TempDir()
	out := filepath.Join(outDir, "bad.eif")
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no image", []string{"build", "--kernel", f.kernel, "-o", out}, exitUsage, "--image, --kernel and -o are required"},
		{"bad ref", f.buildArgs(out, "--image", "docker:app"), exitFailed, "want docker-archive:PATH"},
		{"missing rootfs", f.buildArgs(out, "--image", "dir:"+filepath.Join(f.dir, "nope")), exitFailed, "nope"},
		{"missing kernel", f.buildArgs(out, "--kernel", filepath.Join(f.dir, "nope")), exitFailed, "kernel:"},
		{"cmdline newline", f.buildArgs(out, "--cmdline", "a\nb"), exitFailed, "newline"},
		{"arm init in x86 image", append(f.buildArgs(out), "--init", writeTmp(t, fakeELF(elf.EM_AARCH64, "i"))), exitFailed, "built for EM_AARCH64"},
		{"bad arch", f.buildArgs(out, "--arch", "riscv64"), exitUsage, "unknown architecture"},
		{"key without cert", f.buildArgs(out, "--sign-key", f.kernel), exitUsage, "go together"},
		{"agent and no-agent", f.buildArgs(out, "--no-agent"), exitUsage, "exclude each other"},
		{"bad env", f.buildArgs(out, "--env", "NOEQUALS"), exitUsage, "not KEY=VALUE"},
		{"bad entrypoint JSON", f.buildArgs(out, "--entrypoint", "[1,2]"), exitUsage, "JSON array"},
		{"empty command", f.buildArgs(out, "--cmd", ""), exitFailed, "empty command"},
		{"bad metadata", f.buildArgs(out, "--metadata", f.kernel), exitFailed, "metadata"},
		{"extra argument", f.buildArgs(out, "surplus"), exitUsage, "unexpected argument"},
		{"bad egress rule", f.buildArgs(out, "--egress-allow", "api-*.example.com"), exitFailed, `egress rule "api-*.example.com": * stands for a whole label`},
		{"bad egress port", f.buildArgs(out, "--egress-allow", "a.example", "--egress-proxy-port", "70000"), exitUsage, "not a port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := cli(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.msg) {
				t.Errorf("build = %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.msg)
			}
			ents, _ := os.ReadDir(outDir)
			for _, e := range ents {
				t.Errorf("failed build left %s behind", e.Name())
			}
		})
	}
}

func writeTmp(t *testing.T, b []byte) string {
	p := filepath.Join(t.TempDir(), "bin")
	mustWrite(t, p, b, 0o755)
	return p
}

func TestSignedBuildAndPCRsExpect(t *testing.T) {
	f := newFixture(t)
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "signer"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(f.dir, "cert.pem"), filepath.Join(f.dir, "key.pem")
	mustWrite(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	mustWrite(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)

	out := filepath.Join(t.TempDir(), "signed.eif")
	code, stdout, stderr := cli(t, f.buildArgs(out, "--private-key", keyFile, "--signing-certificate", certFile)...)
	if code != exitOK {
		t.Fatalf("build = %d: %s", code, stderr)
	}
	m := parseMeasurements(t, stdout)
	inner := sha512Sum384(der)
	if want := hex.EncodeToString(pcrExtendZero(inner)); hex.EncodeToString(m.PCR8) != want {
		t.Errorf("PCR8 = %x, want %s", m.PCR8, want)
	}
	code, stdout, _ = cli(t, "describe", out)
	var d struct {
		IsSigned  bool
		Signature struct {
			Verified  bool
			Algorithm string
			Subject   string
		}
	}
	json.Unmarshal([]byte(stdout), &d)
	if code != exitOK || !d.IsSigned || !d.Signature.Verified || d.Signature.Algorithm != "ES384" || d.Signature.Subject != "CN=signer" {
		t.Errorf("describe signed = %d %+v", code, d)
	}

	// A signature over another PCR0: flip a byte of the application
	// ramdisk and fix the CRC; describe reports the signature as invalid.
	tampered := filepath.Join(t.TempDir(), "tampered.eif")
	b := mustRead(t, out)
	ef, err := eif.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	rds := ef.Ramdisks()
	b[rds[len(rds)-1].DataOffset()] ^= 1
	ef.Close()
	mustWrite(t, tampered, fixCRC(b), 0o644)
	code, stdout, _ = cli(t, "describe", tampered)
	var td struct {
		Signature struct {
			Verified bool
			Error    string
		}
	}
	json.Unmarshal([]byte(stdout), &td)
	if code != exitFailed || td.Signature.Verified || !strings.Contains(td.Signature.Error, "the image's PCR0 is") {
		t.Errorf("describe tampered = %d %+v, want 1 and a PCR0 mismatch", code, td)
	}

	// --expect: nitro-cli's form (with PCR8), the plain form, a mismatch.
	dir := t.TempDir()
	nitro := filepath.Join(dir, "nitro.json")
	mustWrite(t, nitro, []byte(stdoutOf(t, "pcrs", out)), 0o644)
	plain := filepath.Join(dir, "plain.json")
	mustWrite(t, plain, []byte(fmt.Sprintf(`{"PCR2": "%X"}`, m.PCR2)), 0o644)
	wrong := filepath.Join(dir, "wrong.json")
	mustWrite(t, wrong, []byte(fmt.Sprintf(`{"PCR0": "%x", "PCR1": "%x"}`, m.PCR0, make([]byte, 48))), 0o644)
	junk := filepath.Join(dir, "junk.json")
	mustWrite(t, junk, []byte(`{"PCR0": "zz"}`), 0o644)
	for _, tc := range []struct {
		file string
		code int
		msg  string
	}{
		{nitro, exitOK, "matches"},
		{plain, exitOK, "matches"},
		{wrong, exitFailed, "PCR1 differs"},
		{junk, exitUsage, "not 48 bytes of hex"},
	} {
		code, _, stderr := cli(t, "pcrs", out, "--expect", tc.file)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("pcrs --expect %s = %d %q, want %d %q", filepath.Base(tc.file), code, stderr, tc.code, tc.msg)
		}
		if tc.code == exitFailed && strings.Contains(stderr, "PCR0 differs") {
			t.Errorf("pcrs --expect %s reports the equal PCR0 as different", filepath.Base(tc.file))
		}
	}
}

func stdoutOf(t *testing.T, args ...string) string {
	code, out, errOut := cli(t, args...)
	if code != exitOK {
		t.Fatalf("%v = %d: %s", args, code, errOut)
	}
	return out
}

func TestDiff(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.eif"), filepath.Join(dir, "b.eif"), filepath.Join(dir, "c.eif")
	stdoutOf(t, f.buildArgs(a)...)
	stdoutOf(t, f.buildArgs(c, "--build-time", "2024-01-02T03:04:05Z")...) // metadata only
	mustWrite(t, filepath.Join(f.rootfs, "etc", "hello"), []byte("hello, world\n"), 0o644)
	os.Remove(filepath.Join(f.rootfs, "app", "config.json"))
	mustWrite(t, filepath.Join(f.rootfs, "etc", "new"), nil, 0o640)
	stdoutOf(t, f.buildArgs(b, "--cmdline", "console=ttyS0")...)

	code, out, stderr := cli(t, "diff", a, b)
	if code != exitFailed {
		t.Fatalf("diff a b = %d (%s), want 1", code, stderr)
	}
	for _, want := range []string{
		"PCR0 differs", "PCR1 differs", "PCR2 differs",
		"kernel: same", `cmdline: "`, "ramdisk-0: same",
		"ramdisk-1: DIFFERS (measured in PCR0 PCR2)",
		"changed rootfs/etc/hello: size 6 -> 13, sha256",
		"removed rootfs/app/config.json",
		"added   rootfs/etc/new",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff output lacks %q:\n%s", want, out)
		}
	}
	// Metadata differences do not change the measurements.
	code, out, _ = cli(t, "diff", a, c)
	if code != exitOK || !strings.Contains(out, "measurements: equal") || !strings.Contains(out, "BuildMetadata.BuildTime") {
		t.Errorf("diff a c = %d:\n%s\nwant 0, equal measurements and a BuildTime difference", code, out)
	}
	code, out, _ = cli(t, "diff", "--json", a, b)
	var doc image.Comparison
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != exitFailed || doc.MeasurementsEqual {
		t.Fatalf("diff --json = %d %v", code, err)
	}
	var paths []string
	for _, s := range doc.Sections {
		for _, ch := range s.Changes {
			paths = append(paths, ch.Kind+":"+ch.Path)
		}
	}
	if got := strings.Join(paths, " "); got != "removed:rootfs/app/config.json changed:rootfs/etc/hello added:rootfs/etc/new" {
		t.Errorf("diff --json changes = %s", got)
	}
	if code, _, _ := cli(t, "diff", a, a); code != exitOK {
		t.Errorf("diff a a = %d, want 0", code)
	}
	if code, _, _ := cli(t, "diff", a); code != exitUsage {
		t.Errorf("diff with one file = %d, want 2", code)
	}
}

func TestCommandsRefuseBadImages(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.eif")
	mustWrite(t, bad, bytes.Repeat([]byte("x"), 600), 0o644)
	for _, args := range [][]string{{"describe", bad}, {"pcrs", bad}, {"extract", bad, filepath.Join(dir, "x")}, {"diff", bad, bad}} {
		code, _, stderr := cli(t, args...)
		if code != exitFailed || !strings.Contains(stderr, "bad magic") {
			t.Errorf("%v = %d %q, want 1 and a bad magic error", args, code, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("extract of a bad image created the directory")
	}
}

// TestReproducibleBuild builds the same image twice — the second time in a
// subprocess with another working directory, time zone and umask, from a
// copy of the filesystem with other mtimes, a second later — and compares
// the files byte for byte.
func TestReproducibleBuild(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	f := newFixture(t)
	out1 := filepath.Join(t.TempDir(), "one.eif")
	t.Chdir(f.dir)
	stdoutOf(t, f.buildArgs(out1)...)

	// A copy of the filesystem elsewhere, with other mtimes.
	copyRoot := filepath.Join(t.TempDir(), "app")
	writeTree(t, copyRoot)
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	filepath.Walk(copyRoot, func(p string, _ os.FileInfo, _ error) error {
		os.Lchown(p, os.Getuid(), os.Getgid())
		return os.Chtimes(p, old, old)
	})
	// Start the second build in another second of wall-clock time.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))

	otherCwd := t.TempDir()
	out2 := filepath.Join(t.TempDir(), "two.eif")
	args := f.buildArgs(out2, "--image", "dir:"+copyRoot)
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestHelperProcess$", "--"}, args...)...)
	cmd.Dir = otherCwd
	cmd.Env = append(os.Environ(), "QTENCLAVE_HELPER_PROCESS=1", "QTENCLAVE_HELPER_UMASK=077", "TZ=Pacific/Chatham", "LC_ALL=C")
	var serr bytes.Buffer
	cmd.Stderr = &serr
	if out, err := cmd.Output(); err != nil {
		t.Fatalf("second build: %v\n%s%s", err, out, serr.String())
	}
	s1, s2 := sha256.Sum256(mustRead(t, out1)), sha256.Sum256(mustRead(t, out2))
	if s1 != s2 {
		code, out, _ := cli(t, "diff", out1, out2)
		t.Errorf("sha256 %x != %x; diff (%d):\n%s", s1, s2, code, out)
	}
}

// TestHelperProcess runs qtenclave in a subprocess for TestReproducibleBuild.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("QTENCLAVE_HELPER_PROCESS") != "1" {
		t.Skip("runs only as TestReproducibleBuild's subprocess")
	}
	if m := os.Getenv("QTENCLAVE_HELPER_UMASK"); m != "" {
		v, _ := strconv.ParseUint(m, 8, 32)
		unix.Umask(int(v))
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Exit(run(args, os.Stdin, os.Stdout, os.Stderr))
}

func sha512Sum384(b []byte) []byte {
	s := sha512.Sum384(b)
	return s[:]
}

func pcrExtendZero(d []byte) []byte {
	s := sha512.Sum384(append(make([]byte, 48), d...))
	return s[:]
}

// fixCRC recomputes an image's CRC: header [0,544), then each section header
// and data in table order.
func fixCRC(b []byte) []byte {
	n := int(binary.BigEndian.Uint16(b[26:]))
	c := crc32.ChecksumIEEE(b[:544])
	for i := 0; i < n; i++ {
		off := binary.BigEndian.Uint64(b[28+8*i:])
		size := binary.BigEndian.Uint64(b[28+8*32+8*i:])
		c = crc32.Update(c, crc32.IEEETable, b[off:off+12+size])
	}
	binary.BigEndian.PutUint32(b[544:], c)
	return b
}

func TestBuildAArch64(t *testing.T) {
	f := newFixture(t)
	mustWrite(t, f.init, fakeELF(elf.EM_AARCH64, "init"), 0o755)
	out := filepath.Join(t.TempDir(), "arm.eif")
	code, _, stderr := cli(t, "build", "--arch", "aarch64", "--image", "dir:"+f.rootfs, "--kernel", f.kernel,
		"--init", f.init, "--no-agent", "--cmd", "/bin/server", "-o", out)
	if code != exitOK {
		t.Fatalf("build --arch aarch64 = %d: %s", code, stderr)
	}
	ef, err := eif.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	cl, _ := ef.Cmdline()
	if ef.Arch() != eif.ArchAArch64 || cl != image.CmdlineARM64 {
		t.Errorf("arch %v cmdline %q, want aarch64 and %q ", ef.Arch(), cl, image.CmdlineARM64)
	}
	boot := ef.Ramdisks()[0]
	idx, err := ramdisk.ReadIndex(io.NewSectionReader(boot, 0, boot.Size))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(idx.Paths(), ","); got != "dev,dev/console,init" {
		t.Errorf("bootstrap ramdisk = %s, want no agent and no module", got)
	}
}

// TestDiffQuotesUntrustedNames: names and values from the images cannot
// forge lines of the diff or reach the terminal as control sequences
// (issue 14, item 6).
func TestDiffQuotesUntrustedNames(t *testing.T) {
	d := &image.Comparison{
		MeasurementsEqual: false,
		Sections: []image.SectionDiff{{
			Name: "ramdisk-1", Measured: "PCR0, PCR2",
			A: &image.SectionSum{Size: 1}, B: &image.SectionSum{Size: 2},
			Changes: []ramdisk.Change{
				{Kind: "added", Path: "rootfs/x\nmeasurements: equal"},
				{Kind: "changed", Path: "rootfs/\x1b[2Jclear", Fields: []ramdisk.FieldChange{{Field: "link", A: "a\nb", B: "ok"}}},
				{Kind: "removed", Path: "rootfs/plain name"},
			},
		}},
	}
	var out bytes.Buffer
	if err := printDiff(&out, d, "a.eif", "b.eif", 0); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, l := range strings.Split(s, "\n") {
		if l == "measurements: equal" {
			t.Errorf("a ramdisk name forged the line %q:\n%s", l, s)
		}
	}
	if strings.ContainsRune(s, 0x1b) {
		t.Errorf("an escape character reached the output:\n%q", s)
	}
	for _, want := range []string{`"rootfs/x\nmeasurements: equal"`, `"rootfs/\x1b[2Jclear"`, `link "a\nb" -> ok`, "removed rootfs/plain name"} {
		if !strings.Contains(s, want) {
			t.Errorf("diff output lacks %s:\n%s", want, s)
		}
	}
}

// TestDescribeNestedMetadataBounded: deeply nested custom metadata is not
// re-indented into a multiple of itself (issue 14, item 4: a 23 KB EIF
// printed 162 MB); ordinary metadata still prints indented.
func TestDescribeNestedMetadataBounded(t *testing.T) {
	const depth = 9000
	nested := json.RawMessage(strings.Repeat("[", depth) + strings.Repeat("]", depth))
	path := filepath.Join(t.TempDir(), "nested.eif")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := eif.NewWriter(f, eif.Options{})
	w.WriteKernel(bytes.NewReader(make([]byte, 4096)))
	w.WriteCmdline("console=ttyS0")
	if err := w.WriteMetadata(&eif.Metadata{ImageName: "x", ImageVersion: "1",
		BuildMetadata: eif.BuildMetadata{BuildTime: "2000-01-01T00:00:00Z", BuildTool: "t"}, CustomMetadata: nested}); err != nil {
		t.Fatal(err)
	}
	w.WriteRamdisk(bytes.NewReader([]byte("070701")))
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	st, _ := os.Stat(path)
	var out, errb bytes.Buffer
	if code := run([]string{"describe", path}, nil, &out, &errb); code != exitOK {
		t.Fatalf("describe = %d: %s", code, errb.String())
	}
	if out.Len() > 4*int(st.Size())+16<<10 {
		t.Errorf("describe of a %d-byte EIF printed %d bytes", st.Size(), out.Len())
	}
	if !json.Valid(out.Bytes()) {
		t.Errorf("describe output is not JSON")
	}
	for _, in := range []string{`{"a":[1,2,{"b":{}}],"c":[],"d":"x,y{"}`, `[]`, `{"k":"\"[,"}`, `[[1],[2,[3]]]`} {
		var ind bytes.Buffer
		json.Indent(&ind, []byte(in), "  ", "  ")
		if got := indentedSize([]byte(in)); got != ind.Len() {
			t.Errorf("indentedSize(%s) = %d, json.Indent makes %d", in, got, ind.Len())
		}
	}
}

// FuzzDescribeMetadata: whatever the metadata bytes, describe prints JSON
// within a small multiple of them (issue 14, item 4).
func FuzzDescribeMetadata(f *testing.F) {
	f.Add([]byte(`{"a":[1,2,{"b":{}}]}`))
	f.Add([]byte(strings.Repeat("[", 50) + strings.Repeat("]", 50)))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, md []byte) {
		var out bytes.Buffer
		doc := &image.Description{Metadata: json.RawMessage(md)}
		if err := writeDescription(&out, doc); err != nil {
			t.Fatalf("writeDescription(%q) = %v", md, err)
		}
		if !json.Valid(out.Bytes()) {
			t.Fatalf("output for metadata %q is not JSON: %s", md, out.Bytes())
		}
		if out.Len() > 6*len(md)+8192 {
			t.Fatalf("%d bytes of metadata printed as %d", len(md), out.Len())
		}
	})
}

// TestBuildRefusesWithoutLeftovers: an image init could not run fails the
// build (its application ramdisk is prepared while the other sections are
// written), and neither the spool nor a partial image is left.
func TestBuildRefusesWithoutLeftovers(t *testing.T) {
	f := newFixture(t)
	outDir := t.TempDir()
	code, _, stderr := cli(t, f.buildArgs(filepath.Join(outDir, "app.eif"), "--cmd", "/missing")...)
	if code != exitFailed || !strings.Contains(stderr, `exec "/missing": no such file or directory`) {
		t.Fatalf("build with a missing program = %d, %q; want %d and init's message", code, stderr, exitFailed)
	}
	if left, _ := os.ReadDir(outDir); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestBuildEgress: the egress rules go into the measured launch manifest
// normalised, and image.LaunchManifest reads them back from the EIF.
func TestBuildEgress(t *testing.T) {
	f := newFixture(t)
	out := filepath.Join(t.TempDir(), "egress.eif")
	if code, _, stderr := cli(t, f.buildArgs(out, "--egress-allow", "API.Example.com.:443", "--egress-allow", "**.amazonaws.com",
		"--egress-deny", "[fd00::0/8]", "--egress-proxy-port", "8080")...); code != 0 {
		t.Fatalf("build = %d: %s", code, stderr)
	}
	m := manifestOf(t, out)
	want := &launch.Egress{Allow: []string{"api.example.com:443", "**.amazonaws.com"}, Deny: []string{"[fd00::/8]"}, ProxyPort: 8080}
	if m.Egress == nil || !slices.Equal(m.Egress.Allow, want.Allow) || !slices.Equal(m.Egress.Deny, want.Deny) || m.Egress.ProxyPort != want.ProxyPort {
		t.Errorf("LaunchManifest(built EIF).Egress = %+v, want %+v", m.Egress, want)
	}
	// Without the flags there is no egress in the manifest.
	plain := filepath.Join(t.TempDir(), "plain.eif")
	if code, _, stderr := cli(t, f.buildArgs(plain)...); code != 0 {
		t.Fatalf("build = %d: %s", code, stderr)
	}
	if m := manifestOf(t, plain); m.Egress != nil {
		t.Errorf("LaunchManifest(plain EIF).Egress = %+v, want none", m.Egress)
	}
}

// manifestOf reads the launch manifest of the EIF at path.
func manifestOf(t *testing.T, path string) *launch.Manifest {
	t.Helper()
	e, err := eif.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	m, err := image.LaunchManifest(e)
	if err != nil {
		t.Fatalf("LaunchManifest(%s) = %v", path, err)
	}
	return m
}

// TestBuildConfigFile: --config's YAML sets what the manifest holds; flags
// given win, list flags add; a typo in the file is refused.
func TestBuildConfigFile(t *testing.T) {
	f := newFixture(t)
	cfg := filepath.Join(t.TempDir(), "enclave.yaml")
	mustWrite(t, cfg, []byte(`# an enclave
cmd: ["/bin/server", "--from-file"]
env: ["FROM_FILE=1"]
working_dir: /
hostname: from-file
tmp_noexec: true
nofile_limit: 4096
stop_timeout: 30
egress:
  allow: ["kms.eu-west-1.amazonaws.com:443"]
  deny: ["10.0.0.0/8"]
  proxy_port: 8888
  forwards: ["kms.eu-west-1.amazonaws.com:443"]
publish: [8080]
`), 0o644)
	out := filepath.Join(t.TempDir(), "cfg.eif")
	args := []string{"build", "--image", "dir:" + f.rootfs, "--kernel", f.kernel, "--init", f.init, "--agent", f.agent, "--kmod", f.kmod,
		"-o", out, "--config", cfg, "--hostname", "from-flag", "--egress-allow", "api.example.com:443", "--publish", "9090", "--env", "FROM_FLAG=1"}
	if code, _, stderr := cli(t, args...); code != 0 {
		t.Fatalf("build --config = %d: %s", code, stderr)
	}
	m := manifestOf(t, out)
	if !slices.Equal(m.Cmd, []string{"/bin/server", "--from-file"}) || m.Hostname != "from-flag" || !m.TmpNoexec || m.NofileLimit != 4096 || m.StopTimeout != 30 ||
		!slices.Contains(m.Env, "FROM_FILE=1") || !slices.Contains(m.Env, "FROM_FLAG=1") || !slices.Equal(m.Publish, []uint16{8080, 9090}) {
		t.Errorf("manifest = %+v", m)
	}
	if e := m.Egress; e == nil || !slices.Equal(e.Allow, []string{"kms.eu-west-1.amazonaws.com:443", "api.example.com:443"}) ||
		!slices.Equal(e.Deny, []string{"10.0.0.0/8"}) || e.ProxyPort != 8888 || !slices.Equal(e.Forwards, []string{"kms.eu-west-1.amazonaws.com:443"}) {
		t.Errorf("manifest egress = %+v", m.Egress)
	}
	for _, c := range []struct{ file, msg string }{
		{"hostnme: typo\n", "field hostnme not found"},
		{"egress:\n  alow: [a.example]\n", "field alow not found"},
		{"publish: [70000]\n", "70000"},
		{"cmd: [a]\n---\ncmd: [b]\n", "more than one YAML document"},
		{"agent: false\npublish: [8080]\n", "served by qtsm-agent"},
	} {
		mustWrite(t, cfg, []byte(c.file), 0o644)
		code, _, stderr := cli(t, f.buildArgs(filepath.Join(t.TempDir(), "bad.eif"), "--config", cfg)...)
		if code == 0 || !strings.Contains(stderr, c.msg) {
			t.Errorf("build --config with %q = %d %q, want a failure saying %q", c.file, code, stderr, c.msg)
		}
	}
}
