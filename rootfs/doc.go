// Package rootfs turns a container image into an enclave's application
// ramdisk, without a Docker daemon, deterministically and safely.
//
// # Use
//
//	img, err := rootfs.Open("oci:./layout:latest", rootfs.Options{Platform: "linux/amd64"})
//	if err != nil { ... }
//	defer img.Close()
//	m, stats, err := rootfs.WriteRamdiskFile(ctx, "app.cpio", img, opts)
//	// or rootfs.WriteRamdisk(ctx, w, img, opts) to any io.Writer
//	// m is the launch manifest written into the ramdisk; rootfs.Manifest(img, opts)
//	// computes it without writing anything.
//
// The same Options value can be passed to Open and to WriteRamdisk.
//
// # Image references
//
//   - docker-archive:PATH — a `docker save` tarball holding one image
//     (docker-archive:PATH:REPO:TAG picks one of several).
//   - oci:DIR or oci:DIR:TAG — an OCI image layout; TAG is matched against
//     the org.opencontainers.image.ref.name annotation of index.json's
//     manifests; without TAG the layout must hold exactly one manifest. The
//     part after the last ':' is a TAG only when it contains no '/'.
//   - dir:PATH — a plain directory used as the whole filesystem, packed by
//     rootfs/dirtar. Owners are root (uid/gid 0) unless
//     Options.DirKeepOwners; permission bits, symlinks and hard links are
//     kept; device nodes, FIFOs and sockets are left out; PATH's own mode is
//     not used (rootfs/ is 0755 root). The image config is empty: the
//     command comes from Options.Override.
//
// Layers are checked as they stream, before anything built from them is
// written: in an OCI layout each blob, whatever its media type, against
// its manifest descriptor's digest and size; in a layout and a
// docker-archive, each layer's uncompressed content against the config's
// rootfs.diff_ids (which must list one per layer). A mismatch is ErrDigest,
// naming the layer and both digests. A blob is decompressed as its media
// type says (tar, gzip, zstd); bytes that say otherwise (gzip bytes under a
// zstd type) are ErrCompression: the media type is part of what the
// manifest digest covers, so the blob is refused rather than guessed at.
//
// When a reference resolves to an image index (multi-platform image), the
// manifest for Options.Platform ("linux/amd64" or "linux/arm64", the EIF's
// architecture) is chosen; with an empty Platform the index must hold a
// single image. If Platform is set and the image config names another
// OS/architecture, Open fails with ErrPlatform.
//
// # Ramdisk layout
//
// The ramdisk is a newc cpio archive written by package rootfs/cpio (sorted,
// fixed mtime Options.MTime, sequential inodes; optional gzip), laid out as
// nitro-cli lays it out:
//
//	rootfs/            the image's filesystem (layers flattened)
//	rootfs/{dev,proc,sys,run,tmp,var}   always present (created if missing:
//	                   0755, proc and sys 0555, tmp 01777; an image's own
//	                   entry is kept as is)
//	cmd                legacy argv, one element per line (launch.Manifest.LegacyFiles)
//	env                legacy environment, one KEY=VALUE per line
//	launch.json        the manifest (launch.Manifest.Marshal)
//
// cmd, env and launch.json are mode 0644, owner root. A missing WorkingDir is
// created in rootfs/ as a 0755 root directory, as `docker run -w` does.
//
// # Launch manifest
//
// Entrypoint, Cmd, Env, WorkingDir and User come from the image config, then
// Options.Override applies docker run's rules: a non-nil Override.Entrypoint
// replaces the image's Entrypoint and clears the image's Cmd unless
// Override.Cmd is non-nil too; a non-nil Override.Cmd replaces Cmd; each
// Override.Env entry replaces the image's entry with the same key in place or
// is appended; a non-empty WorkingDir or User replaces the image's. PATH is
// set to launch.DefaultPath when the resulting Env has none. The enclave
// options (Hostname, TmpNoexec, NofileLimit, Agent) are copied from
// Options.Launch when it is non-nil. The manifest is validated
// (launch.Manifest.Validate) before anything is written.
//
// # Flattening and safety
//
// Layers are applied bottom to top by package rootfs/flatten: whiteouts
// (.wh.NAME) and opaque directories (.wh..wh..opq) hide lower layers' files;
// hard links are kept as hard links and keep their content when their target
// path is replaced or removed in a later layer; device nodes and FIFOs are
// dropped (counted in Stats.Dropped); uid, gid and permission bits, setuid,
// setgid and sticky included, come from the layers. Nothing of the host
// (clock, time zone, umask, user) reaches the output. A hostile layer — an
// entry with a ".." component or an absolute path, an entry under a symlink
// (write-through), a hard link outside the root or to a missing target, a
// whiteout of "." or ".." — fails the build with a *flatten.Error naming the
// layer (index and digest) and the entry; errors.Is works with the
// flatten.Err* values.
//
// Nothing is ever written to the host filesystem except the output and a
// spool file: the ramdisk is streamed into the cpio writer.
// WriteRamdiskFile writes a temporary file next to the output and renames it
// into place only on success, so a failure leaves no partial output.
//
// # Memory and disk
//
// Sorted output needs the whole tree before the first byte is written, and a
// layer is a compressed stream without random access. The first pass reads
// each layer once, keeps only metadata in memory (a few hundred bytes per
// path) and appends every regular file's content to an unlinked spool file
// in Options.TempDir (the output's directory for WriteRamdiskFile, else
// os.TempDir()); the second pass writes the archive in sorted order, reading
// the winning contents back from the spool. Peak memory therefore grows with
// the number of files, not their size; disk use is the total uncompressed
// size of the layers' regular files, released when WriteRamdisk returns.
package rootfs
