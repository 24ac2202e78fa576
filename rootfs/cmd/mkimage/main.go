// Command mkimage builds a container image without Docker: each argument is
// a layer, bottom first — a directory (packed deterministically by
// rootfs/dirtar, owners root unless -keep-owners) or a tar file (taken as
// is) — written as an OCI image layout (-o DIR) and/or a docker save
// tarball (-docker-archive FILE).
//
//	mkimage -o out/layout -tag demo -entrypoint '["/app"]' -env MODE=demo ./rootfs
//	qtenclave build ... oci:out/layout:demo
//
// Timestamps are $SOURCE_DATE_EPOCH (default 0): the same inputs give the
// same digests.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/qtenclave/enclave/internal/cliflag"
	"github.com/qtenclave/enclave/rootfs/cpio"
	"github.com/qtenclave/enclave/rootfs/dirtar"
	"github.com/qtenclave/enclave/rootfs/ocilayout"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		out        = fs.String("o", "", "write an OCI image layout to this directory")
		dockerOut  = fs.String("docker-archive", "", "write a docker save tarball to this file")
		tag        = fs.String("tag", "latest", "name of the image in the layout (org.opencontainers.image.ref.name) or docker tag")
		platform   = fs.String("platform", "linux/amd64", "image platform os/arch[/variant]")
		workdir    = fs.String("workdir", "", "working directory")
		user       = fs.String("user", "", "user (name, uid, uid:gid)")
		keepOwners = fs.Bool("keep-owners", false, "keep host uid/gid of directory layers (default root)")
		entrypoint cliflag.Argv
		cmd        cliflag.Argv
		env        cliflag.List
	)
	fs.Var(&entrypoint, "entrypoint", `entrypoint: JSON array ["/app","-x"] or one string`)
	fs.Var(&cmd, "cmd", `command: JSON array or one string`)
	fs.Var(&env, "env", "KEY=VALUE (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: mkimage [flags] -o DIR | -docker-archive FILE LAYER...")
		fmt.Fprintln(stderr, "  LAYER is a directory or a tar file, bottom layer first")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 || (*out == "" && *dockerOut == "") {
		fs.Usage()
		return 2
	}
	p, err := v1.ParsePlatform(*platform)
	if err != nil || p.OS == "" || p.Architecture == "" {
		fmt.Fprintf(stderr, "mkimage: -platform %q is not os/arch\n", *platform)
		return 2
	}
	epoch, err := cpio.SourceDateEpoch()
	if err != nil {
		fmt.Fprintf(stderr, "mkimage: %v\n", err)
		return 2
	}
	var layers []ocilayout.Layer
	for _, a := range fs.Args() {
		fi, err := os.Stat(a)
		if err != nil {
			fmt.Fprintf(stderr, "mkimage: layer %v\n", err)
			return 1
		}
		if fi.IsDir() {
			layers = append(layers, ocilayout.DirLayer(a, dirtar.Options{KeepOwners: *keepOwners}))
		} else {
			layers = append(layers, ocilayout.FileLayer(a))
		}
	}
	cfg := ocilayout.Config{
		Entrypoint: entrypoint.V, Cmd: cmd.V, Env: env, WorkingDir: *workdir, User: *user,
		OS: p.OS, Architecture: p.Architecture, Variant: p.Variant,
	}
	img, err := ocilayout.Build(cfg, layers, ocilayout.Options{Created: epoch})
	if err != nil {
		fmt.Fprintf(stderr, "mkimage: %v\n", err)
		return 1
	}
	digest, err := img.Digest()
	if err != nil {
		fmt.Fprintf(stderr, "mkimage: %v\n", err)
		return 1
	}
	if *out != "" {
		if err := ocilayout.WriteLayout(*out, *tag, img); err != nil {
			fmt.Fprintf(stderr, "mkimage: %v\n", err)
			return 1
		}
		ref := "oci:" + *out
		if *tag != "" {
			ref += ":" + *tag
		}
		fmt.Fprintf(stdout, "%s %s\n", ref, digest)
	}
	if *dockerOut != "" {
		var tags []string
		if *tag != "" {
			t := *tag
			if !strings.Contains(t, ":") {
				t = "mkimage:" + t
			}
			tags = append(tags, t)
		}
		if err := ocilayout.WriteDockerArchive(*dockerOut, img, tags...); err != nil {
			os.Remove(*dockerOut)
			fmt.Fprintf(stderr, "mkimage: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "docker-archive:%s %s\n", *dockerOut, digest)
	}
	return 0
}
