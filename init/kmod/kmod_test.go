package kmod

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type fakeLoader struct {
	calls []string
	flags []int
	errs  map[string]error
}

func (f *fakeLoader) LoadModule(path string, flags int) error {
	f.calls = append(f.calls, path)
	f.flags = append(f.flags, flags)
	return f.errs[path]
}

func existsIn(files ...string) func(string) bool {
	return func(p string) bool {
		for _, f := range files {
			if f == p {
				return true
			}
		}
		return false
	}
}

func TestLoadAll(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
		errs  map[string]error
		want  []string // "path outcome flags"
	}{
		{"none present (built in)", nil, nil, nil},
		{"plain nsm", []string{"/nsm.ko"}, nil, []string{"/nsm.ko loaded 0"}},
		{"xz preferred after plain", []string{"/nsm.ko.xz", "/nsm.ko"}, nil, []string{"/nsm.ko loaded 0"}},
		{"compressed", []string{"/nsm.ko.xz", "/qtsm.ko.zst"}, nil, []string{"/nsm.ko.xz loaded 4", "/qtsm.ko.zst loaded 4"}},
		{"gz", []string{"/qtsm.ko.gz"}, nil, []string{"/qtsm.ko.gz loaded 4"}},
		{"already loaded", []string{"/nsm.ko"}, map[string]error{"/nsm.ko": unix.EEXIST}, []string{"/nsm.ko already loaded 0"}},
		{"failure", []string{"/nsm.ko.xz"}, map[string]error{"/nsm.ko.xz": unix.EOPNOTSUPP}, []string{"/nsm.ko.xz failed 4"}},
	} {
		l := &fakeLoader{errs: tc.errs}
		res := LoadAll(l, existsIn(tc.files...), "/", Names)
		var got []string
		for i, r := range res {
			got = append(got, r.Path+" "+r.Outcome.String()+" "+string(rune('0'+l.flags[i])))
			if (r.Outcome == Failed) != (r.Err != nil) {
				t.Errorf("%s: result %+v: error iff failed", tc.name, r)
			}
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: LoadAll = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestLoadAllHints(t *testing.T) {
	for _, tc := range []struct {
		path string
		err  error
		hint string
	}{
		{"/nsm.ko", unix.ENOSYS, "without module support"},
		{"/nsm.ko.xz", unix.EOPNOTSUPP, "cannot decompress"},
		{"/nsm.ko", unix.ENOEXEC, "another kernel"},
	} {
		l := &fakeLoader{errs: map[string]error{tc.path: tc.err}}
		res := LoadAll(l, existsIn(tc.path), "/", []string{"nsm"})
		if len(res) != 1 || !errors.Is(res[0].Err, tc.err) || !strings.Contains(res[0].Err.Error(), tc.hint) {
			t.Errorf("LoadAll(%s failing %v) = %+v, want error with %q", tc.path, tc.err, res, tc.hint)
		}
	}
}

func TestWaitDevice(t *testing.T) {
	var polls atomic.Int32
	appearing := func(p string) bool {
		return p == "/dev/nsm" && polls.Add(1) > 3
	}
	got, err := WaitDevice(context.Background(), appearing, []string{"/dev/qtsm", "/dev/nsm"}, time.Second, time.Millisecond)
	if err != nil || got != "/dev/nsm" {
		t.Errorf("WaitDevice(appearing) = %q, %v, want /dev/nsm", got, err)
	}
	start := time.Now()
	_, err = WaitDevice(context.Background(), existsIn(), []string{"/dev/nsm"}, 30*time.Millisecond, 5*time.Millisecond)
	if !errors.Is(err, ErrNoDevice) {
		t.Errorf("WaitDevice(absent) = %v, want ErrNoDevice", err)
	}
	if el := time.Since(start); el < 30*time.Millisecond || el > time.Second {
		t.Errorf("WaitDevice(absent, 30ms) took %v", el)
	}
	// Zero timeout: one check, no wait.
	start = time.Now()
	if _, err := WaitDevice(context.Background(), existsIn(), []string{"/dev/nsm"}, 0, 0); !errors.Is(err, ErrNoDevice) || time.Since(start) > 10*time.Millisecond {
		t.Errorf("WaitDevice(timeout 0) = %v after %v", err, time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := WaitDevice(ctx, existsIn(), []string{"/dev/nsm"}, time.Second, time.Millisecond); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitDevice(cancelled) = %v", err)
	}
}

func TestFlags(t *testing.T) {
	for p, want := range map[string]int{"/nsm.ko": 0, "/nsm.ko.xz": unix.MODULE_INIT_COMPRESSED_FILE, "/a.ko.zst": 4, "/a.ko.gz": 4} {
		if got := Flags(p); got != want {
			t.Errorf("Flags(%s) = %d, want %d", p, got, want)
		}
	}
}

func TestSysLoadMissing(t *testing.T) {
	// The real loader reports a missing file before any system call.
	if err := (Sys{}).LoadModule(t.TempDir()+"/nsm.ko", 0); !errors.Is(err, unix.ENOENT) {
		t.Errorf("LoadModule(missing) = %v, want ENOENT", err)
	}
	if !Exists("/") || Exists(t.TempDir()+"/nope") {
		t.Error("Exists is wrong")
	}
}
