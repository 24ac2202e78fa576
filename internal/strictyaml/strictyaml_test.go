package strictyaml

import (
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	type doc struct {
		Name  string   `yaml:"name"`
		Ports []uint16 `yaml:"ports"`
	}
	for _, c := range []struct {
		in  string
		err string
	}{
		{"name: a\nports: [1, 2]\n", ""},
		{"", ""},
		{"nme: a\n", "field nme not found"},
		{"ports: [70000]\n", "70000"},
		{"name: a\n---\nname: b\n", "more than one YAML document"},
		{strings.Repeat("#", 101), "more than 100"},
		{"name: [\n", "yaml"},
	} {
		var d doc
		err := Decode([]byte(c.in), 100, &d)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("Decode(%q) = %v, want %q", c.in, err, c.err)
		}
	}
}
