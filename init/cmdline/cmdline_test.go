package cmdline

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	def := Defaults()
	for _, tc := range []struct {
		name, in string
		want     Knobs
		warnings int
	}{
		{"empty", "", def, 0},
		{"aws line", "reboot=k panic=30 pci=off nomodules console=ttyS0 random.trust_cpu=on\n", def, 0},
		{"heartbeat override", "console=ttyS0 qtenclave.heartbeat=1:9999", Knobs{true, 1, 9999, 9001, 0, 0, false}, 0},
		{"heartbeat off", "qtenclave.heartbeat=off", Knobs{false, 3, 9000, 9001, 0, 0, false}, 0},
		{"status off", "qtenclave.status_port=0", Knobs{true, 3, 9000, 0, 0, 0, false}, 0},
		{"status port", "qtenclave.status_port=7000 qtenclave.debug=1", Knobs{true, 3, 9000, 7000, 0, 0, true}, 0},
		{"log stream", "qtenclave.log_port=9002", Knobs{true, 3, 9000, 9001, 9002, 0, false}, 0},
		{"log stream off again", "qtenclave.log_port=9002 qtenclave.log_port=0", def, 0},
		{"bad log port", "qtenclave.log_port=-1", def, 1},
		{"control port", "qtenclave.control_port=9003", Knobs{true, 3, 9000, 9001, 0, 9003, false}, 0},
		{"debug bare", "qtenclave.debug", Knobs{true, 3, 9000, 9001, 0, 0, false}, 0},
		{"quoted", `foo="a b" qtenclave.heartbeat="3:9000" qtenclave.debug=on`, Knobs{true, 3, 9000, 9001, 0, 0, true}, 0},
		{"last wins", "qtenclave.debug=1 qtenclave.debug=0", def, 0},
		{"bad heartbeat", "qtenclave.heartbeat=3", def, 1},
		{"bad cid", "qtenclave.heartbeat=x:9000", def, 1},
		{"port zero", "qtenclave.heartbeat=3:0", def, 1},
		{"port overflow", "qtenclave.status_port=4294967296", def, 1},
		{"bad debug", "qtenclave.debug=maybe", def, 1},
		{"unknown", "qtenclave.bogus=1 qtenclave.heartbeat=4:1", Knobs{true, 4, 1, 9001, 0, 0, false}, 1},
	} {
		got, warns := Parse(tc.in)
		if got != tc.want {
			t.Errorf("%s: Parse(%q) = %+v, want %+v", tc.name, tc.in, got, tc.want)
		}
		if len(warns) != tc.warnings {
			t.Errorf("%s: Parse(%q) warnings = %q, want %d", tc.name, tc.in, warns, tc.warnings)
		}
		for _, w := range warns {
			if !strings.Contains(w, "qtenclave.") {
				t.Errorf("%s: warning %q does not name the parameter", tc.name, w)
			}
		}
	}
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  a  b\tc\n", []string{"a", "b", "c"}},
		{`x="1 2" y`, []string{"x=1 2", "y"}},
		{`"a b"`, []string{"a b"}},
		{`""`, []string{""}},
		{`a="unterminated b`, []string{"a=unterminated b"}},
	} {
		if got := Split(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Split(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("reboot=k panic=30 console=ttyS0 qtenclave.heartbeat=3:9000 qtenclave.status_port=9001 qtenclave.debug=1")
	f.Add(`qtenclave.heartbeat="off" "qtenclave.debug=1"`)
	f.Fuzz(func(t *testing.T, in string) {
		k, _ := Parse(in)
		if k.Heartbeat && k.HeartbeatPort == 0 {
			t.Errorf("Parse(%q) enabled heartbeat on port 0", in)
		}
		for _, p := range Split(in) {
			if strings.ContainsAny(p, "\"") {
				t.Errorf("Split(%q) kept a quote in %q", in, p)
			}
		}
	})
}
