package user

import (
	"errors"
	"os"
	"reflect"
	"testing"
)

func TestResolve(t *testing.T) {
	passwd, err := os.ReadFile("testdata/passwd")
	if err != nil {
		t.Fatal(err)
	}
	group, err := os.ReadFile("testdata/group")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spec string
		want Identity
	}{
		{"", Identity{Name: "root", UID: 0, GID: 0, Home: "/root"}},
		{"root", Identity{Name: "root", UID: 0, GID: 0, Home: "/root"}},
		{"app", Identity{Name: "app", UID: 1000, GID: 1000, Groups: []uint32{27, 1001}, Home: "/home/app"}},
		{"1000", Identity{Name: "app", UID: 1000, GID: 1000, Groups: []uint32{27, 1001}, Home: "/home/app"}},
		{"app:staff", Identity{Name: "app", UID: 1000, GID: 50, Home: "/home/app"}},
		{"app:50", Identity{Name: "app", UID: 1000, GID: 50, Home: "/home/app"}},
		{"app:4242", Identity{Name: "app", UID: 1000, GID: 4242, Home: "/home/app"}},
		{"1000:1000", Identity{Name: "app", UID: 1000, GID: 1000, Home: "/home/app"}},
		{"4242", Identity{UID: 4242, GID: 0, Home: "/"}},
		{"4242:4243", Identity{UID: 4242, GID: 4243, Home: "/"}},
		{"4242:staff", Identity{UID: 4242, GID: 50, Home: "/"}},
		{"nobody", Identity{Name: "nobody", UID: 65534, GID: 65534, Home: "/nonexistent"}},
		{"nohome", Identity{Name: "nohome", UID: 1002, GID: 1002, Home: "/"}},
	} {
		got, err := Resolve(tc.spec, passwd, group)
		if err != nil {
			t.Errorf("Resolve(%q) error %v", tc.spec, err)
			continue
		}
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("Resolve(%q) = %+v, want %+v", tc.spec, *got, tc.want)
		}
	}
}

func TestResolveWithoutFiles(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want Identity
	}{
		{"", Identity{Home: "/"}},
		{"0", Identity{Home: "/"}},
		{"1000", Identity{UID: 1000, Home: "/"}},
		{"1000:2000", Identity{UID: 1000, GID: 2000, Home: "/"}},
	} {
		got, err := Resolve(tc.spec, nil, nil)
		if err != nil || !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("Resolve(%q, no files) = %+v, %v, want %+v", tc.spec, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		spec string
		want error
	}{
		{"app", ErrUnknownUser},
		{"1000:staff", ErrUnknownGroup},
	} {
		if _, err := Resolve(tc.spec, nil, nil); !errors.Is(err, tc.want) {
			t.Errorf("Resolve(%q, no files) = %v, want %v", tc.spec, err, tc.want)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	passwd, _ := os.ReadFile("testdata/passwd")
	group, _ := os.ReadFile("testdata/group")
	for _, tc := range []struct {
		spec string
		want error
	}{
		{"ghost", ErrUnknownUser},
		{"app:ghosts", ErrUnknownGroup},
		{"ghost:staff", ErrUnknownUser},
		{"app:", ErrBadSpec},
		{":staff", ErrBadSpec},
		{"a b", ErrBadSpec},
		{"app:a,b", ErrBadSpec},
		{"4294967295", ErrUnknownUser}, // (uid_t)-1 is not a uid: looked up as a name
	} {
		if got, err := Resolve(tc.spec, passwd, group); !errors.Is(err, tc.want) {
			t.Errorf("Resolve(%q) = %+v, %v, want %v", tc.spec, got, err, tc.want)
		}
	}
}

func TestParseSkipsMalformed(t *testing.T) {
	p := ParsePasswd([]byte("# comment\n\nok:x:1:2::/h:/bin/sh\nshort:x:1\nbad:x:u:2::/h:/bin/sh\n:x:3:3::/:/bin/sh\n"))
	if want := []Passwd{{"ok", 1, 2, "/h"}}; !reflect.DeepEqual(p, want) {
		t.Errorf("ParsePasswd = %+v, want %+v", p, want)
	}
	g := ParseGroup([]byte("g:x:5:a, b,,c\nbad:x:y:\nshort:x\n"))
	if want := []Group{{"g", 5, []string{"a", "b", "c"}}}; !reflect.DeepEqual(g, want) {
		t.Errorf("ParseGroup = %+v, want %+v", g, want)
	}
}

func FuzzResolve(f *testing.F) {
	passwd, _ := os.ReadFile("testdata/passwd")
	group, _ := os.ReadFile("testdata/group")
	f.Add("app", passwd, group)
	f.Add("1000:staff", passwd, group)
	f.Add("x:y", []byte("x:x:1:1::/:/bin/sh\n"), []byte("y:x:2:x\n"))
	f.Fuzz(func(t *testing.T, spec string, passwd, group []byte) {
		who, err := Resolve(spec, passwd, group)
		if err != nil {
			return
		}
		if who.Home == "" {
			t.Errorf("Resolve(%q) gave an empty home", spec)
		}
		if who.UID == ^uint32(0) || who.GID == ^uint32(0) {
			t.Errorf("Resolve(%q) gave id -1: %+v", spec, who)
		}
	})
}
