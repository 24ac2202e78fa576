// Package cpio writes deterministic newc ("070701") cpio archives, the
// format of Linux initramfs images and of EIF ramdisk sections.
//
// The same entries always give the same bytes, whatever the order they were
// added in and whatever the host's clock, time zone, umask or user:
//
//   - Records are sorted by path in tree order (components compared
//     bytewise, a directory immediately followed by its subtree), so a parent
//     always precedes its children. Missing parent directories are created
//     with mode DefaultDirMode (0755), owned by root (uid 0, gid 0).
//   - Every record has the same mtime, Options.MTime (seconds since the
//     epoch; 0 by default; SourceDateEpoch reads $SOURCE_DATE_EPOCH).
//   - Inode numbers are 1, 2, 3... in output order; hard links share the
//     inode of the first of them in output order, which is the one that
//     carries the data (the others have size 0, as the kernel's and GNU
//     cpio's readers expect). nlink is the number of names of an inode for
//     files and 2 + the number of subdirectories for directories.
//   - dev major/minor are 0; rdev is set only for device nodes.
//   - The archive ends with a TRAILER!!! record (the kernel's unpacker
//     forgets hard-link inodes at each trailer, so archives can be
//     concatenated, e.g. the bootstrap and application ramdisks).
//   - With Options.Gzip the archive is gzip-compressed at the fixed level
//     GzipLevel with an empty header (no name, mtime 0, OS 255). The
//     compressed bytes depend on Go's compress/flate, which may change
//     between Go releases; the uncompressed archive does not.
//
// Writing is streaming: Add records metadata only (memory grows with the
// number of entries, not their size) and Close writes the archive, opening
// each regular file's content with Entry.Open at that moment and copying it
// through a fixed-size buffer. Close checks that every content source
// yields exactly Entry.Size bytes.
//
// Usage:
//
//	epoch, err := cpio.SourceDateEpoch()
//	w := cpio.NewWriter(out, cpio.Options{MTime: epoch}) // Gzip: true to compress
//	w.Add(cpio.Dir("dev", 0o755))
//	w.Add(cpio.CharDev("dev/console", 0o600, 5, 1))
//	init, err := cpio.HostFile("init", 0o755, "bin/init") // content read in Close
//	w.Add(init)
//	w.Add(cpio.File("etc/hostname", 0o644, []byte("enclave\n")))
//	w.Add(cpio.HardLink("bin/init2", "init"))
//	if err := w.Close(); err != nil { ... } // out holds the whole archive
//
// An error about an entry is a *cpio.Error naming it (errors.Is with
// ErrBadName, ErrDuplicate, ErrBadEntry); Close does not close out.
//
// Record encoding is github.com/u-root/u-root/pkg/cpio's newc writer; this
// package adds ordering, parents, inodes, hard links, validation, streaming
// content and compression.
package cpio
