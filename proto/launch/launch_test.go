package launch

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestArgv(t *testing.T) {
	for _, tc := range []struct {
		name       string
		entrypoint []string
		cmd        []string
		want       []string
	}{
		{"cmd only", nil, []string{"/bin/sh", "-c", "echo hi"}, []string{"/bin/sh", "-c", "echo hi"}},
		{"entrypoint only", []string{"/app"}, nil, []string{"/app"}},
		{"both", []string{"/app", "--serve"}, []string{"--port", "80"}, []string{"/app", "--serve", "--port", "80"}},
		{"neither", nil, nil, []string{}},
	} {
		m := &Manifest{Version: Version, Entrypoint: tc.entrypoint, Cmd: tc.cmd}
		if got := m.Argv(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Argv() = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestParseRoundTrip(t *testing.T) {
	m := &Manifest{Version: Version, Entrypoint: []string{"/app"}, Cmd: []string{"a b", "c"},
		Env: []string{"A=1", "B=x=y"}, WorkingDir: "/srv", User: "app:app", TmpNoexec: true}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(%s) error %v", b, err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("Parse(Marshal(m)) = %+v, want %+v", got, m)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"empty command", `{"version":1}`, ErrNoCommand},
		{"empty program", `{"version":1,"cmd":[""]}`, ErrNoCommand},
		{"bad version", `{"version":2,"cmd":["/a"]}`, nil},
		{"unknown field", `{"version":1,"cmd":["/a"],"bogus":1}`, nil},
		{"bad env", `{"version":1,"cmd":["/a"],"env":["NOEQUALS"]}`, nil},
		{"trailing", `{"version":1,"cmd":["/a"]} {}`, nil},
		{"not json", `cmd`, nil},
	} {
		_, err := Parse([]byte(tc.in))
		if err == nil {
			t.Errorf("%s: Parse(%s) = nil error, want error", tc.name, tc.in)
			continue
		}
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: Parse(%s) = %v, want %v", tc.name, tc.in, err, tc.want)
		}
	}
}

func TestLegacy(t *testing.T) {
	m, err := ParseLegacy([]byte("/bin/sh\n-c\necho 'a  b'\n"), []byte("PATH=/bin\nX=\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/bin/sh", "-c", "echo 'a  b'"}; !reflect.DeepEqual(m.Argv(), want) {
		t.Errorf("ParseLegacy argv = %q, want %q", m.Argv(), want)
	}
	if want := []string{"PATH=/bin", "X="}; !reflect.DeepEqual(m.Env, want) {
		t.Errorf("ParseLegacy env = %q, want %q", m.Env, want)
	}
	cmd, env := m.LegacyFiles()
	if string(cmd) != "/bin/sh\n-c\necho 'a  b'\n" || string(env) != "PATH=/bin\nX=\n" {
		t.Errorf("LegacyFiles() = %q, %q", cmd, env)
	}
	if _, err := ParseLegacy(nil, nil); !errors.Is(err, ErrNoCommand) {
		t.Errorf("ParseLegacy(empty) = %v, want ErrNoCommand", err)
	}
	// No trailing newline is fine too.
	if m, err := ParseLegacy([]byte("/app"), nil); err != nil || m.Argv()[0] != "/app" {
		t.Errorf("ParseLegacy(no newline) = %v, %v", m, err)
	}
}

// TestValidateHostileStrings: what a hostile image config could put in the
// manifest to forge console lines, write into /etc/hosts or break /env is
// refused where the manifest is made and where init loads it (issue 14,
// item 3).
func TestValidateHostileStrings(t *testing.T) {
	base := func() *Manifest { return &Manifest{Version: Version, Cmd: []string{"/app"}} }
	for _, tc := range []struct {
		name string
		mod  func(m *Manifest)
		want string // "" = valid
	}{
		{"plain", func(m *Manifest) {}, ""},
		{"workdir forging a status line", func(m *Manifest) {
			m.WorkingDir = "/srv\nqtenclave-exit: code=0 signal=0 reason=exited"
		}, "working_dir"},
		{"hostname with a hosts line", func(m *Manifest) { m.Hostname = "h\n6.6.6.6 attacker.example" }, "hostname"},
		{"hostname NUL", func(m *Manifest) { m.Hostname = "h\x00" }, "hostname"},
		{"hostname underscore", func(m *Manifest) { m.Hostname = "my_host" }, "hostname"},
		{"hostname leading hyphen", func(m *Manifest) { m.Hostname = "-h" }, "hyphen"},
		{"hostname long label", func(m *Manifest) { m.Hostname = strings.Repeat("a", 64) }, "label"},
		{"hostname ok", func(m *Manifest) { m.Hostname = "enc-1.example.com" }, ""},
		{"user with escape", func(m *Manifest) { m.User = "app\x1b[2J" }, "user"},
		{"env value newline", func(m *Manifest) { m.Env = []string{"A=1\nB=2"} }, "newline"},
		{"env key control", func(m *Manifest) { m.Env = []string{"A\tB=1"} }, "control"},
		{"env value 1 MiB", func(m *Manifest) { m.Env = []string{"BIG=" + strings.Repeat("x", 1<<20)} }, "kernel passes"},
		{"env value at the limit", func(m *Manifest) { m.Env = []string{"BIG=" + strings.Repeat("x", MaxString-4)} }, ""},
		{"argv NUL", func(m *Manifest) { m.Cmd = []string{"/app", "a\x00b"} }, "NUL"},
		{"argv newline (launch.json carries it)", func(m *Manifest) { m.Cmd = []string{"/bin/sh", "-c", "echo a\necho b"} }, ""},
	} {
		m := base()
		tc.mod(m)
		err := m.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: Validate = %v, want nil", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid mentioning %q", tc.name, err, tc.want)
		}
		// The same manifest as launch.json is refused by init's loader too.
		b, _ := m.Marshal()
		if _, err := Parse(b); err == nil {
			t.Errorf("%s: Parse(launch.json) accepted it", tc.name)
		}
	}
}

func TestLegacyLineEnds(t *testing.T) {
	m, err := ParseLegacy([]byte("/bin/sh\r\n-c\r\necho hi\r\n"), []byte("A=1\r\n"))
	if err != nil || strings.Join(m.Cmd, "|") != "/bin/sh|-c|echo hi" || m.Env[0] != "A=1" {
		t.Errorf("ParseLegacy(CRLF) = %+v, %v; want the lines without CR", m, err)
	}
	if _, err := ParseLegacy([]byte("/bin/sh\n-c\r\n"), nil); err == nil || !strings.Contains(err.Error(), "mixed") {
		t.Errorf("ParseLegacy(mixed line ends) = %v, want an error", err)
	}
}
