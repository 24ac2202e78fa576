// Package flatten merges the layers of a container image, each an
// uncompressed tar stream, into one filesystem tree, refusing hostile
// entries, and hands the result to a rootfs/cpio writer.
//
// Layers are applied bottom to top with Tree.Apply, following the OCI image
// spec's changeset rules:
//
//   - A whiteout DIR/.wh.NAME removes DIR/NAME of the lower layers; an
//     opaque marker DIR/.wh..wh..opq removes every lower-layer entry under
//     DIR. Neither hides entries of its own layer, whatever the tar order.
//     Other .wh..wh.* names (aufs metadata) are ignored.
//   - An entry replaces whatever the lower layers had at its path, except
//     that a directory over a directory only updates its metadata (the
//     directories merge).
//   - Hard links share an inode: a hard link keeps its content when its
//     target path is later replaced or removed (the merged filesystem of an
//     overlay mount behaves so; go-containerregistry's mutate.Extract does
//     not). Hard links to symlinks become copies of the symlink.
//   - Device nodes and FIFOs are dropped (Stats.Dropped), and so are hard
//     links to them.
//   - Mode (type, permission, setuid/setgid/sticky), uid and gid come from
//     the tar headers (symlinks are always 0777); mtimes, user and group
//     names, xattrs are not kept.
//   - Parent directories missing from a layer are created 0755 root:root.
//
// Refused, with an *Error naming the layer and the entry (errors.Is works
// with the Err* values): a name or hard-link target that is empty, has a NUL,
// a ".." component, is absolute or longer than MaxNameLen (so is a symlink
// target); an entry whose parent is a symlink (a
// write through a symlink) or not a directory; a hard link to a missing (or
// removed) path or to a directory; a whiteout of "", "." or ".."; sparse
// files and entry types other than regular file, directory, symlink, hard
// link, device and FIFO; files over 4 GiB - 1 (the newc limit).
//
// Memory holds only metadata. Regular-file contents are appended to one
// spool file, created in Options.TempDir and unlinked at once so that it
// disappears with the process; Tree.AddTo hands the cpio writer entries whose
// content is read back from the spool. Disk use is the size of all regular
// files of all layers.
package flatten
