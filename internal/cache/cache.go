// Package cache finds the big build products that scripts/build-kernel.sh
// and scripts/build-qemu.sh keep outside the repository, in
// ${QTENCLAVE_CACHE:-$HOME/.cache/qtenclave}/<kind>/<key>/. A build in
// progress lives in <key>.build.<pid> and is never returned.
package cache

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Dir is ${QTENCLAVE_CACHE:-$HOME/.cache/qtenclave} ("" if neither is known).
func Dir() string {
	if d := os.Getenv("QTENCLAVE_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".cache", "qtenclave")
}

// Newest returns the path of file (slash-separated, relative to an entry)
// in the most recently modified finished entry of kind ("qemu", "kernel"),
// or "" when there is none.
func Newest(kind, file string) string {
	dir := Dir()
	if dir == "" {
		return ""
	}
	entries, _ := os.ReadDir(filepath.Join(dir, kind))
	var best string
	var bestTime time.Time
	for _, e := range entries {
		if !e.IsDir() || strings.Contains(e.Name(), ".build") {
			continue
		}
		p := filepath.Join(dir, kind, e.Name(), filepath.FromSlash(file))
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		if best == "" || st.ModTime().After(bestTime) {
			best, bestTime = p, st.ModTime()
		}
	}
	return best
}
