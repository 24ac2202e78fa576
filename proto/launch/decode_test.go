package launch

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// viaJSON decodes data with encoding/json the way Parse used to.
func viaJSON(data []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errTrailing
	}
	return &m, nil
}

var errTrailing = errors.New("trailing data")

func TestDecode(t *testing.T) {
	yes := true
	for _, tc := range []struct {
		in   string
		want Manifest
	}{
		{`{}`, Manifest{}},
		{` { "version" : 1 } `, Manifest{Version: 1}},
		{`{"version":-0}`, Manifest{}},
		{`{"cmd":[],"env":null,"entrypoint":["a","b"]}`, Manifest{Cmd: []string{}, Entrypoint: []string{"a", "b"}}},
		{`{"user":null,"hostname":"h","working_dir":"/w","tmp_noexec":true,"agent":true,"nofile_limit":18446744073709551615}`,
			Manifest{Hostname: "h", WorkingDir: "/w", TmpNoexec: true, Agent: &yes, NofileLimit: 1<<64 - 1}},
		{`{"cmd":["\"\\\/\b\f\n\r\t\u00e9\u4e2d\ud83d\ude00"]}`, Manifest{Cmd: []string{"\"\\/\b\f\n\r\té中😀"}}},
		{`{"cmd":["\ud800x","\udc00","\ud800\u0041"]}`, Manifest{Cmd: []string{"\ufffdx", "\ufffd", "\ufffdA"}}},
		{`{"cmd":["é中"],"agent":null,"tmp_noexec":null,"version":null,"nofile_limit":null}`, Manifest{Cmd: []string{"é中"}}},
	} {
		got, err := decode([]byte(tc.in))
		if err != nil {
			t.Errorf("decode(%s) error %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("decode(%s) = %+v, want %+v", tc.in, *got, tc.want)
		}
		ref, err := viaJSON([]byte(tc.in))
		if err != nil || !reflect.DeepEqual(ref, got) {
			t.Errorf("encoding/json decodes %s to %+v, %v; decode gave %+v", tc.in, ref, err, got)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, in := range []string{
		``, ` `, `[]`, `null`, `"x"`, `{`, `{"version":1`, `{"version":1,}`, `{,}`, `{"version"}`,
		`{"version":1}x`, `{"version":1}{}`, `{"version":1}]`,
		`{"Version":1}`, `{"version":1,"version":1}`, `{"bogus":1}`,
		`{"version":1.0}`, `{"version":1e0}`, `{"version":01}`, `{"version":-}`, `{"version":"1"}`,
		`{"version":9223372036854775808}`, `{"nofile_limit":-1}`, `{"nofile_limit":-0}`, `{"nofile_limit":18446744073709551616}`,
		`{"cmd":"x"}`, `{"cmd":[1]}`, `{"cmd":["a",]}`, `{"cmd":["a"}`, `{"cmd":[null]}`,
		`{"user":1}`, `{"tmp_noexec":"true"}`, `{"tmp_noexec":tru}`, `{"agent":nul}`,
		"{\"cmd\":[\"a\x01\"]}", "{\"cmd\":[\"\xff\"]}", `{"cmd":["\x"]}`, `{"cmd":["\u12"]}`, `{"cmd":["\u12g4"]}`, `{"cmd":["`,
	} {
		if m, err := decode([]byte(in)); err == nil {
			t.Errorf("decode(%q) = %+v, want error", in, m)
		}
	}
}

// FuzzDecodeMatchesJSON: whatever decode accepts, encoding/json accepts
// too and decodes to the same manifest (decode is never looser).
func FuzzDecodeMatchesJSON(f *testing.F) {
	f.Add([]byte(`{"version":1,"entrypoint":["/app"],"cmd":["-v"],"env":["A=1"],"user":"app","working_dir":"/srv","tmp_noexec":true,"agent":false,"nofile_limit":4096,"hostname":"h"}`))
	f.Add([]byte(`{"cmd":["\ud83d\ude00\u0000"],"agent":null}`))
	f.Add([]byte(`{"version":-0,"env":[]}`))
	f.Add([]byte(`{"cmd":["/a"],"egress":{"allow":["a.example:443","10.0.0.0/8"],"deny":[],"proxy_port":3128}}`))
	f.Add([]byte(`{"egress":null,"cmd":["/a"]}`))
	f.Add([]byte(`{"cmd":["/a"],"publish":[8080,443],"egress":{"forwards":["kms.example:443"],"allow":["kms.example:443"]}}`))
	f.Add([]byte(`{"cmd":["/a"],"publish":[]}`))
	f.Add([]byte(`{"egress":{"proxy_port":null,"allow":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decode(data)
		if err != nil {
			return
		}
		ref, rerr := viaJSON(data)
		if rerr != nil {
			t.Fatalf("decode(%q) = %+v, but encoding/json refuses: %v", data, got, rerr)
		}
		if !reflect.DeepEqual(got, ref) {
			t.Fatalf("decode(%q) = %+v, encoding/json gives %+v", data, got, ref)
		}
	})
}

// FuzzDecodeMarshalled: every manifest the tooling writes (Marshal, which
// is encoding/json) decodes back to itself.
func FuzzDecodeMarshalled(f *testing.F) {
	f.Add(1, "/app", "a <b> & \"c\"", "K=\u2028v", "/w", "app:app", "h", true, uint64(4096), byte(1))
	f.Add(-5, "", "\xff\x00", "=", "", "", "", false, uint64(0), byte(2))
	f.Fuzz(func(t *testing.T, version int, ep, cmd, env, wd, user, host string, nx bool, nofile uint64, agent byte) {
		m := &Manifest{Version: version, WorkingDir: wd, User: user, Hostname: host, TmpNoexec: nx, NofileLimit: nofile}
		if ep != "" {
			m.Entrypoint = []string{ep, cmd}
		}
		if cmd != "" {
			m.Cmd = []string{cmd}
		}
		if env != "" {
			m.Env = []string{env, env + "x"}
		}
		if agent%3 != 0 {
			b := agent%3 == 1
			m.Agent = &b
		}
		data, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		ref, rerr := viaJSON(data)
		got, err := decode(data)
		if rerr != nil || err != nil {
			t.Fatalf("Marshal output %q: decode %v, encoding/json %v", data, err, rerr)
		}
		if !reflect.DeepEqual(got, ref) {
			t.Fatalf("decode(%q) = %+v, encoding/json gives %+v", data, got, ref)
		}
	})
}
