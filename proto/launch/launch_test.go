package launch

import (
	"errors"
	"reflect"
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
