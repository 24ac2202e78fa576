package cliflag

import (
	"flag"
	"io"
	"reflect"
	"testing"
)

func TestArgv(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		ok   bool
	}{
		{`["/app","-x"]`, []string{"/app", "-x"}, true},
		{`[]`, []string{}, true},
		{``, []string{}, true},
		{`/bin/sh`, []string{"/bin/sh"}, true},
		{` /bin/sh `, []string{"/bin/sh"}, true},
		{`  `, []string{}, true},
		{`["/app",1]`, nil, false},
		{`[`, nil, false},
	}
	for _, tt := range tests {
		var a Argv
		err := a.Set(tt.in)
		if (err == nil) != tt.ok || (tt.ok && !reflect.DeepEqual(a.V, tt.want)) {
			t.Errorf("Argv.Set(%q) = %q, %v; want %q, ok=%v", tt.in, a.V, err, tt.want, tt.ok)
		}
	}
	var unset Argv
	if unset.V != nil || unset.String() != "" {
		t.Errorf("unset Argv = %q, want nil", unset.V)
	}
}

func TestList(t *testing.T) {
	var l List
	l.Set("A=1")
	l.Set("B=2")
	if !reflect.DeepEqual([]string(l), []string{"A=1", "B=2"}) || l.String() != "A=1,B=2" {
		t.Errorf("List = %q (%s), want [A=1 B=2]", l, l.String())
	}
}

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		wantPos []string
		wantV   bool
		ok      bool
	}{
		{[]string{"a", "-v", "b"}, []string{"a", "b"}, true, true},
		{[]string{"-v", "a"}, []string{"a"}, true, true},
		{[]string{"a", "--", "-v", "b"}, []string{"a", "-v", "b"}, false, true},
		{[]string{}, nil, false, true},
		{[]string{"a", "-bogus"}, nil, false, false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		v := fs.Bool("v", false, "")
		pos, err := Parse(fs, tt.args)
		if (err == nil) != tt.ok || (tt.ok && (!reflect.DeepEqual(pos, tt.wantPos) || *v != tt.wantV)) {
			t.Errorf("Parse(%q) = %q, -v=%v, %v; want %q, -v=%v, ok=%v", tt.args, pos, *v, err, tt.wantPos, tt.wantV, tt.ok)
		}
	}
}
