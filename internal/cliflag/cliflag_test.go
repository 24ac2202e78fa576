package cliflag

import (
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
