// Package user resolves a Docker USER specification against the image's
// /etc/passwd and /etc/group, with the semantics of Docker (runc's
// GetExecUser):
//
//   - "" is root (uid 0, gid 0).
//   - "name" or "uid": the passwd entry gives uid, primary gid and home; a
//     numeric uid with no entry runs as that uid with gid 0 and home "/"; an
//     unknown name is an error.
//   - "user:group": the group, by name or number, replaces the primary group;
//     an unknown group name is an error; a numeric gid needs no entry.
//   - Supplementary groups are the /etc/group entries that list the user by
//     name, and only when no group was given.
//
// Missing /etc/passwd or /etc/group is an error only when a name has to be
// looked up in it.
package user

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Identity is what the workload runs as.
type Identity struct {
	Name   string // user name, "" when the uid has no passwd entry
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups
	Home   string
}

// ErrUnknownUser and ErrUnknownGroup are returned for names not found.
var (
	ErrUnknownUser  = errors.New("unknown user")
	ErrUnknownGroup = errors.New("unknown group")
	ErrBadSpec      = errors.New("bad user specification")
)

// Passwd is one /etc/passwd entry.
type Passwd struct {
	Name string
	UID  uint32
	GID  uint32
	Home string
}

// Group is one /etc/group entry.
type Group struct {
	Name    string
	GID     uint32
	Members []string
}

// ParsePasswd parses /etc/passwd. Comments, blank and malformed lines are
// skipped, as libc does.
func ParsePasswd(b []byte) []Passwd {
	var out []Passwd
	each(b, func(f []string) {
		if len(f) < 7 || f[0] == "" {
			return
		}
		uid, ok1 := id(f[2])
		gid, ok2 := id(f[3])
		if !ok1 || !ok2 {
			return
		}
		out = append(out, Passwd{Name: f[0], UID: uid, GID: gid, Home: f[5]})
	})
	return out
}

// ParseGroup parses /etc/group.
func ParseGroup(b []byte) []Group {
	var out []Group
	each(b, func(f []string) {
		if len(f) < 4 || f[0] == "" {
			return
		}
		gid, ok := id(f[2])
		if !ok {
			return
		}
		g := Group{Name: f[0], GID: gid}
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				g.Members = append(g.Members, m)
			}
		}
		out = append(out, g)
	})
	return out
}

func each(b []byte, fn func([]string)) {
	s := bufio.NewScanner(bytes.NewReader(b))
	s.Buffer(make([]byte, 0, 4096), 1<<20)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fn(strings.Split(line, ":"))
	}
}

func id(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == math.MaxUint32 { // (uid_t)-1 is never valid
		return 0, false
	}
	return uint32(n), true
}

// Resolve resolves spec. passwd and group are the files' contents; nil
// means the file does not exist.
func Resolve(spec string, passwd, group []byte) (*Identity, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if hasGroup && groupPart == "" || strings.ContainsAny(spec, " \t\n\x00") {
		return nil, fmt.Errorf("%w %q", ErrBadSpec, spec)
	}
	if userPart == "" {
		if hasGroup {
			return nil, fmt.Errorf("%w %q", ErrBadSpec, spec)
		}
		userPart = "0"
	}
	who := &Identity{Home: "/"}
	entries := ParsePasswd(passwd)
	var found *Passwd
	if n, ok := id(userPart); ok {
		who.UID = n
		for i := range entries {
			if entries[i].UID == n {
				found = &entries[i]
				break
			}
		}
	} else {
		if !validName(userPart) {
			return nil, fmt.Errorf("%w %q", ErrBadSpec, spec)
		}
		for i := range entries {
			if entries[i].Name == userPart {
				found = &entries[i]
				break
			}
		}
		if found == nil {
			if passwd == nil {
				return nil, fmt.Errorf("%w %q: no /etc/passwd in the image", ErrUnknownUser, userPart)
			}
			return nil, fmt.Errorf("%w %q: no matching entry in /etc/passwd", ErrUnknownUser, userPart)
		}
		who.UID = found.UID
	}
	if found != nil {
		who.Name, who.GID = found.Name, found.GID
		if found.Home != "" {
			who.Home = found.Home
		}
	}
	groups := ParseGroup(group)
	if hasGroup {
		if n, ok := id(groupPart); ok {
			who.GID = n
			return who, nil
		}
		if !validName(groupPart) {
			return nil, fmt.Errorf("%w %q", ErrBadSpec, spec)
		}
		for _, g := range groups {
			if g.Name == groupPart {
				who.GID = g.GID
				return who, nil
			}
		}
		if group == nil {
			return nil, fmt.Errorf("%w %q: no /etc/group in the image", ErrUnknownGroup, groupPart)
		}
		return nil, fmt.Errorf("%w %q: no matching entry in /etc/group", ErrUnknownGroup, groupPart)
	}
	if found != nil {
		for _, g := range groups {
			for _, m := range g.Members {
				if m == found.Name && !contains(who.Groups, g.GID) {
					who.Groups = append(who.Groups, g.GID)
				}
			}
		}
	}
	return who, nil
}

func validName(s string) bool {
	return s != "" && !strings.ContainsAny(s, ":,/")
}

func contains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
