// Package image builds enclave images: Build turns a container image
// reference, a kernel, init, qtsm-agent and the secure-module driver into
// an EIF (package image/eif) and returns its measurements. The steps, in
// order: the kernel is inspected (format, version), the command line is
// settled (DefaultCmdline unless given), the bootstrap ramdisk's inputs are
// checked, the image is opened (rootfs.Open) and its launch manifest made
// once (rootfs.Manifest), the metadata is made (Metadata), then the
// sections are streamed into the EIF writer: kernel, command line,
// metadata, bootstrap ramdisk (image/bootstrap), application ramdisk
// (rootfs.WriteRamdiskManifest).
//
// The same inputs give the same bytes: nothing in an EIF comes from the
// clock, the host's users, paths or umask.
//
// qtenclave build (image/cmd/qtenclave) is this package's command line.
package image
