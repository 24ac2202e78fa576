// Package cliflag holds the flag types shared by the commands (qtenclave,
// rootfs/cmd/mkimage, rootfs/cmd/ramdisk).
package cliflag

import (
	"encoding/json"
	"flag"
	"fmt"
	"strings"
)

// Parse parses flags placed before, between or after the positional
// arguments ("--" ends flag parsing) and returns the positional ones.
func Parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag.Parse consumed a "--" iff the argument before rest is "--".
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// List is a repeatable string flag (-env A=1 -env B=2).
type List []string

func (l *List) String() string { return strings.Join(*l, ",") }

// Set appends a value.
func (l *List) Set(s string) error { *l = append(*l, s); return nil }

// Argv is an argv flag: a JSON array (["/app","-x"]), or one plain string
// taken as a single element; "" gives an empty, non-nil argv (a reset, like
// docker run --entrypoint ""). Unset, its value is nil.
type Argv struct{ V []string }

func (a *Argv) String() string {
	if a == nil || a.V == nil {
		return ""
	}
	b, _ := json.Marshal(a.V)
	return string(b)
}

// Set parses the value (surrounding blanks are ignored).
func (a *Argv) Set(s string) error {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		a.V = []string{}
	case strings.HasPrefix(s, "["):
		var v []string
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return fmt.Errorf("not a JSON array of strings: %v", err)
		}
		if v == nil {
			v = []string{}
		}
		a.V = v
	default:
		a.V = []string{s}
	}
	return nil
}
