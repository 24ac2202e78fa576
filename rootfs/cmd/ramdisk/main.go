// Command ramdisk writes the application ramdisk of an image, the same way
// `qtenclave build` does, for inspection and benchmarks:
//
//	ramdisk -o app.cpio [-platform linux/amd64] [-gzip] oci:out/layout:demo
//
// The launch manifest and statistics go to stderr. The mtime is
// $SOURCE_DATE_EPOCH (default 0).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/qtenclave/enclave/internal/cliflag"
	"github.com/qtenclave/enclave/internal/interrupt"
	"github.com/qtenclave/enclave/rootfs"
	"github.com/qtenclave/enclave/rootfs/cpio"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ramdisk", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		out      = fs.String("o", "", "output file (\"-\" for stdout)")
		platform = fs.String("platform", "", "platform to pick from an index and to require (linux/amd64, linux/arm64)")
		gz       = fs.Bool("gzip", false, "gzip the ramdisk")
		tmpdir   = fs.String("tmpdir", "", "directory for the spool file (default: the output's)")
		workdir  = fs.String("workdir", "", "override the working directory")
		user     = fs.String("user", "", "override the user")
		verbose  = fs.Bool("v", false, "log progress")
		keep     = fs.Bool("dir-keep-owners", false, "dir: references keep host uid/gid")
		entry    cliflag.Argv
		cmd      cliflag.Argv
		env      cliflag.List
	)
	fs.Var(&entry, "entrypoint", `override the entrypoint: JSON array or one string ("" resets)`)
	fs.Var(&cmd, "cmd", `override the command: JSON array or one string`)
	fs.Var(&env, "env", "add or replace KEY=VALUE (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ramdisk -o FILE [flags] docker-archive:PATH | oci:DIR[:TAG] | dir:PATH")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 || *out == "" {
		fs.Usage()
		return 2
	}
	mtime, err := cpio.SourceDateEpoch()
	if err != nil {
		fmt.Fprintf(stderr, "ramdisk: %v\n", err)
		return 2
	}
	opts := rootfs.Options{
		Platform:      *platform,
		Override:      rootfs.Config{Entrypoint: entry.V, Cmd: cmd.V, Env: env, WorkingDir: *workdir, User: *user},
		MTime:         mtime,
		Gzip:          *gz,
		TempDir:       *tmpdir,
		DirKeepOwners: *keep,
	}
	if *verbose {
		opts.Logf = func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	}
	ctx, stop := interrupt.Context(context.Background())
	defer stop()

	img, err := rootfs.Open(fs.Arg(0), opts)
	if err != nil {
		fmt.Fprintf(stderr, "ramdisk: %v\n", err)
		return 1
	}
	defer img.Close()
	var st *rootfs.Stats
	var m interface{ Marshal() ([]byte, error) }
	if *out == "-" {
		mm, s, err := rootfs.WriteRamdisk(ctx, stdout, img, opts)
		if err != nil {
			fmt.Fprintf(stderr, "ramdisk: %v\n", err)
			return 1
		}
		m, st = mm, s
	} else {
		mm, s, err := rootfs.WriteRamdiskFile(ctx, *out, img, opts)
		if err != nil {
			fmt.Fprintf(stderr, "ramdisk: %v\n", err)
			return 1
		}
		m, st = mm, s
	}
	js, _ := m.Marshal()
	fmt.Fprintf(stderr, "launch.json: %s", js)
	fmt.Fprintf(stderr, "ramdisk: %d bytes; %d layers, %d files (%d bytes), %d hard links, %d dirs, %d symlinks, %d dropped, %d whiteouts\n",
		st.ArchiveBytes, st.Layers, st.Files, st.Bytes, st.HardLinks, st.Dirs, st.Symlinks, st.Dropped, st.Whiteouts)
	return 0
}
