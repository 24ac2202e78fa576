package launch

import (
	"errors"
	"reflect"
	"testing"
	"testing/fstest"
)

func TestLoad(t *testing.T) {
	manifest := []byte(`{"version":1,"entrypoint":["/app"],"cmd":["-v"],"env":["A=1"],"user":"app"}` + "\n")
	for _, tc := range []struct {
		name     string
		files    fstest.MapFS
		wantArgv []string
		wantEnv  []string
		wantSrc  string
		wantErr  error
	}{
		{"manifest preferred", fstest.MapFS{
			"launch.json": {Data: manifest},
			"cmd":         {Data: []byte("/legacy\n")},
		}, []string{"/app", "-v"}, []string{"A=1"}, "launch.json", nil},
		{"legacy", fstest.MapFS{
			"cmd": {Data: []byte("/bin/sh\n-c\necho \"$A\"\n")},
			"env": {Data: []byte("A=x y\n")},
		}, []string{"/bin/sh", "-c", `echo "$A"`}, []string{"A=x y"}, "cmd", nil},
		{"legacy without env", fstest.MapFS{"cmd": {Data: []byte("/app\n")}}, []string{"/app"}, nil, "cmd", nil},
		{"nothing", fstest.MapFS{"env": {Data: []byte("A=1\n")}}, nil, nil, "", ErrNotFound},
		{"empty cmd", fstest.MapFS{"cmd": {Data: nil}}, nil, nil, "cmd", ErrNoCommand},
		{"empty manifest command", fstest.MapFS{"launch.json": {Data: []byte(`{"version":1}`)}, "cmd": {Data: []byte("/x\n")}}, nil, nil, "launch.json", ErrNoCommand},
		{"malformed manifest", fstest.MapFS{"launch.json": {Data: []byte(`{"version":1,`)}}, nil, nil, "launch.json", nil},
		{"bad env line", fstest.MapFS{"cmd": {Data: []byte("/x\n")}, "env": {Data: []byte("NOEQUALS\n")}}, nil, nil, "cmd", nil},
	} {
		m, src, err := Load(tc.files)
		if src != tc.wantSrc {
			t.Errorf("%s: Load source = %q, want %q", tc.name, src, tc.wantSrc)
		}
		if tc.wantArgv == nil {
			if err == nil {
				t.Errorf("%s: Load = %+v, want error", tc.name, m)
			} else if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("%s: Load error %v, want %v", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: Load error %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(m.Argv(), tc.wantArgv) || !reflect.DeepEqual(m.Env, tc.wantEnv) {
			t.Errorf("%s: Load = argv %q env %q, want %q %q", tc.name, m.Argv(), m.Env, tc.wantArgv, tc.wantEnv)
		}
	}
}

func TestLoadUnreadable(t *testing.T) {
	// A directory where the manifest should be is an error, not a fallback.
	fsys := fstest.MapFS{"launch.json/x": {Data: []byte("x")}, "cmd": {Data: []byte("/x\n")}}
	if _, _, err := Load(fsys); err == nil {
		t.Error("Load with launch.json a directory = nil error, want error")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"version":1,"entrypoint":["/app"],"cmd":["-v"],"env":["A=1"],"user":"app","working_dir":"/srv","tmp_noexec":true,"agent":false,"nofile_limit":4096,"hostname":"h"}`))
	f.Add([]byte(`{"version":1,"cmd":[""]}`))
	f.Add([]byte(`{"version":1,"cmd":["/a"]} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		if len(m.Argv()) == 0 || m.Argv()[0] == "" {
			t.Fatalf("Parse(%q) accepted an empty command", data)
		}
		b, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed manifest: %v", err)
		}
		back, err := Parse(b)
		// Empty and absent lists mean the same.
		norm := func(m *Manifest) {
			for _, l := range []*[]string{&m.Entrypoint, &m.Cmd, &m.Env} {
				if len(*l) == 0 {
					*l = nil
				}
			}
		}
		if err == nil {
			norm(back)
			norm(m)
		}
		if err != nil || !reflect.DeepEqual(back, m) {
			t.Fatalf("round trip of %q: %+v, %v", data, back, err)
		}
	})
}

func FuzzParseLegacy(f *testing.F) {
	f.Add([]byte("/bin/sh\n-c\necho hi\n"), []byte("A=1\nB=\n"))
	f.Add([]byte("/app"), []byte(""))
	f.Fuzz(func(t *testing.T, cmd, env []byte) {
		m, err := ParseLegacy(cmd, env)
		if err != nil {
			return
		}
		// What init reads is what the tooling would write back.
		c, e := m.LegacyFiles()
		m2, err := ParseLegacy(c, e)
		if err != nil || !reflect.DeepEqual(m2.Argv(), m.Argv()) || !reflect.DeepEqual(m2.Env, m.Env) {
			t.Fatalf("legacy round trip of %q/%q: %+v, %v", cmd, env, m2, err)
		}
	})
}
