// Package dirtar packs a host directory into a deterministic tar stream, a
// container image layer.
//
// Entries are written in lexical walk order (filepath.WalkDir), named
// relative to the root ("etc/", "etc/passwd"), with a fixed mtime
// (Options.MTime), no user or group names, no access or change times and no
// xattrs. Permission bits (setuid, setgid and sticky included) come from the
// files; owners are root unless Options.KeepOwners. Files sharing an inode
// become hard links to the first of them. Symlinks are stored, never
// followed. Device nodes, FIFOs and sockets are skipped (counted in the
// result). The root directory itself is not an entry, so that packing a
// private (0700) temporary directory does not make an image's / private.
package dirtar

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Options control the packing.
type Options struct {
	// MTime is every entry's modification time in seconds (default 0).
	MTime int64
	// KeepOwners keeps the files' uid and gid instead of 0.
	KeepOwners bool
}

// Result counts what was packed.
type Result struct {
	Entries int // entries written
	Skipped int // device nodes, FIFOs and sockets left out
}

// Write packs the directory root into w as a tar stream (with the two zero
// blocks that end it).
func Write(w io.Writer, root string, opts Options) (Result, error) {
	var res Result
	// The root itself may be a symbolic link (Nix's result, Bazel's
	// output links): it is followed, as tar -C follows it. Links inside
	// the tree stay links.
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		return res, err
	}
	fi, err := os.Stat(root)
	if err != nil {
		return res, err
	}
	if !fi.IsDir() {
		return res, fmt.Errorf("dirtar: %s is not a directory", root)
	}
	tw := tar.NewWriter(w)
	mtime := time.Unix(opts.MTime, 0).UTC()
	type key struct{ dev, ino uint64 }
	links := map[key]string{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		name := filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		hdr := &tar.Header{
			Name:    name,
			Mode:    unixPerm(fi.Mode()),
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		if opts.KeepOwners && st != nil {
			hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
		}
		switch m := fi.Mode(); {
		case m.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case m&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		case m.IsRegular():
			if st != nil && st.Nlink > 1 {
				k := key{uint64(st.Dev), uint64(st.Ino)}
				if first, ok := links[k]; ok {
					hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
					break
				}
				links[k] = name
			}
			hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
		default:
			res.Skipped++
			return nil
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("dirtar: %s: %w", p, err)
		}
		res.Entries++
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			if err := copyFile(tw, p, hdr.Size); err != nil {
				return fmt.Errorf("dirtar: %s: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	return res, tw.Close()
}

// copyFile copies exactly size bytes of the regular file p, without
// following a symlink swapped in since the walk saw it.
func copyFile(w io.Writer, p string, size int64) error {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return err
	}
	if n != size {
		return errors.New("file shrank while packing")
	}
	return nil
}

// unixPerm converts Go's permission and special bits to Unix mode bits.
func unixPerm(m fs.FileMode) int64 {
	v := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}

// Open returns the tar stream of root as a reader, produced by a goroutine
// as it is read. Closing the reader early stops the goroutine.
func Open(root string, opts Options) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		_, err := Write(pw, root, opts)
		pw.CloseWithError(err)
	}()
	return pr
}
