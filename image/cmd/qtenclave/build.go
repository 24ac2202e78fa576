package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/qtenclave/enclave/image/bootstrap"
	"github.com/qtenclave/enclave/image/eif"
	"github.com/qtenclave/enclave/internal/atomicfile"
	"github.com/qtenclave/enclave/internal/cliflag"
	"github.com/qtenclave/enclave/rootfs"
	"github.com/qtenclave/enclave/rootfs/cpio"
)

// toolVersion is recorded in the metadata section (BuildToolVersion).
const toolVersion = "0.1.0"

// Kernel command lines shipped by AWS (SPEC §1), used as they are. Their
// "nomodules" is not a kernel parameter (the real one is "nomodule", which
// would forbid finit_module): the kernel hands it to init as an argument, so
// the secure-module driver still loads, as on AWS. QEMU's nitro-enclave
// machine also needs reboot=t to stop cleanly; that is the launcher's
// business (`-append`, not measured), not the image's.
const (
	cmdlineX86   = "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on"
	cmdlineARM64 = "reboot=k panic=30 pci=off nomodules console=ttyS0 random.trust_cpu=on root=/dev/ram0"
)

// defaultCmdline is AWS's command line for arch.
func defaultCmdline(arch eif.Arch) string {
	if arch == eif.ArchAArch64 {
		return cmdlineARM64
	}
	return cmdlineX86
}

func init() {
	register("build", command{
		summary: "build an EIF from a container image (docker-archive:, oci:, dir:)",
		run:     runBuild,
	})
}

const buildUsage = `--image REF --kernel FILE -o OUT.eif [flags]

Builds an enclave image: kernel, cmdline, metadata, the bootstrap ramdisk
(init, qtsm-agent, the secure-module driver, /dev/console) and the
application ramdisk made from REF (docker-archive:PATH, oci:DIR[:TAG] or
dir:PATH), then prints the measurements as nitro-cli does. The output is
written to a temporary file next to OUT and renamed when complete.

--init and --agent default to "init" and "qtsm-agent" next to the qtenclave
binary, then in ./bin (where "make build" puts them).

The build is reproducible: the same inputs give the same bytes. Times come
from --build-time / SOURCE_DATE_EPOCH (metadata) and SOURCE_DATE_EPOCH
(ramdisk mtimes, default 0), never from the clock.
`

type buildConfig struct {
	image, kernel, output   string
	cmdline, appendCmdline  string
	cmdlineSet              bool
	kmod, initBin, agentBin string
	noAgent                 bool
	signKey, signCert       string
	arch                    eif.Arch
	name, version           string
	buildTime               string
	customMetadata          string
	gzip, verbose           bool
	override                rootfs.Config
}

func runBuild(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("build", buildUsage, stderr)
	var c buildConfig
	var arch, workdir, user string
	var entrypoint, cmd cliflag.Argv
	var env cliflag.List
	fs.StringVar(&c.image, "image", "", "container image `REF`: docker-archive:PATH, oci:DIR[:TAG] or dir:PATH")
	fs.StringVar(&c.kernel, "kernel", os.Getenv("QTENCLAVE_KERNEL"), "kernel image `FILE` (bzImage or arm64 Image; default $QTENCLAVE_KERNEL)")
	fs.StringVar(&c.output, "o", "", "output `FILE` (.eif)")
	fs.StringVar(&c.output, "output", "", "same as -o")
	fs.Func("cmdline", "kernel command line (default: AWS's)", func(s string) error {
		c.cmdline, c.cmdlineSet = s, true
		return nil
	})
	fs.StringVar(&c.appendCmdline, "append", "", "text appended to the kernel command line (measured)")
	fs.StringVar(&c.kmod, "kmod", "", "secure-module driver `FILE` (nsm.ko, nsm.ko.xz...) put at /nsm.ko*")
	fs.StringVar(&c.initBin, "init", "", "init `BINARY` (default: init next to qtenclave, else ./bin/init)")
	fs.StringVar(&c.agentBin, "agent", "", "qtsm-agent `BINARY` (default: qtsm-agent next to qtenclave, else ./bin/qtsm-agent)")
	fs.BoolVar(&c.noAgent, "no-agent", false, "leave qtsm-agent out of the image")
	fs.StringVar(&c.signKey, "sign-key", "", "PEM ECDSA private `KEY` to sign the image (with --sign-cert)")
	fs.StringVar(&c.signKey, "private-key", "", "same as --sign-key (nitro-cli's name)")
	fs.StringVar(&c.signCert, "sign-cert", "", "PEM signing `CERTIFICATE` (PCR8)")
	fs.StringVar(&c.signCert, "signing-certificate", "", "same as --sign-cert (nitro-cli's name)")
	fs.StringVar(&arch, "arch", "x86_64", "image architecture: x86_64 or aarch64")
	fs.StringVar(&c.name, "name", "", "image name for the metadata (default: from REF)")
	fs.StringVar(&c.version, "version", "", "image version for the metadata (default: the tag, else latest)")
	fs.StringVar(&c.buildTime, "build-time", "", "metadata build time: RFC 3339, seconds since the epoch or \"now\" (default $SOURCE_DATE_EPOCH, else 1970-01-01T00:00:00Z)")
	fs.StringVar(&c.customMetadata, "metadata", "", "JSON `FILE` stored as CustomMetadata")
	fs.BoolVar(&c.gzip, "gzip", false, "gzip the application ramdisk")
	fs.BoolVar(&c.verbose, "v", false, "log the steps on stderr")
	fs.Var(&entrypoint, "entrypoint", "override the image's Entrypoint: a program, or a JSON array")
	fs.Var(&cmd, "cmd", "override the image's Cmd: a program, or a JSON array")
	fs.Var(&env, "env", "add or replace an environment variable `KEY=VALUE` (repeatable)")
	fs.StringVar(&workdir, "workdir", "", "override the image's WorkingDir")
	fs.StringVar(&user, "user", "", "override the image's User")
	pos, err := cliflag.Parse(fs, args)
	if err != nil {
		return usageExit(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "qtenclave build: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	if c.image == "" || c.output == "" || c.kernel == "" {
		fmt.Fprintln(stderr, "qtenclave build: --image, --kernel and -o are required (build a kernel with scripts/build-kernel.sh)")
		return exitUsage
	}
	if (c.signKey == "") != (c.signCert == "") {
		fmt.Fprintln(stderr, "qtenclave build: --sign-key and --sign-cert go together")
		return exitUsage
	}
	if c.noAgent && c.agentBin != "" {
		fmt.Fprintln(stderr, "qtenclave build: --agent and --no-agent exclude each other")
		return exitUsage
	}
	if c.arch, err = eif.ParseArch(arch); err != nil {
		fmt.Fprintf(stderr, "qtenclave build: %v\n", err)
		return exitUsage
	}
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			fmt.Fprintf(stderr, "qtenclave build: --env %q is not KEY=VALUE\n", kv)
			return exitUsage
		}
	}
	c.override = rootfs.Config{Entrypoint: entrypoint.V, Cmd: cmd.V, Env: env, WorkingDir: workdir, User: user}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	m, err := build(ctx, &c, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "qtenclave build: %v\n", err)
		return exitFailed
	}
	if err := writeJSON(stdout, measurementsDoc{m}); err != nil {
		fmt.Fprintf(stderr, "qtenclave build: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// defaultBinary finds name next to the running executable, then in ./bin.
func defaultBinary(name string) (string, error) {
	var tried []string
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		tried = append(tried, filepath.Join(filepath.Dir(exe), name))
	}
	tried = append(tried, filepath.Join("bin", name))
	for _, p := range tried {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("no %s binary found (tried %s); run `make build` or pass its path", name, strings.Join(tried, ", "))
}

// imageName derives the metadata name and version from a reference.
func imageName(ref string) (name, version string) {
	version = "latest"
	for _, p := range []string{rootfs.DirPrefix, rootfs.OCIPrefix, rootfs.DockerArchivePrefix} {
		if rest, ok := strings.CutPrefix(ref, p); ok {
			path := rest
			switch p {
			case rootfs.OCIPrefix:
				if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.Contains(rest[i+1:], "/") {
					path, version = rest[:i], rest[i+1:]
				}
			case rootfs.DockerArchivePrefix:
				if i := strings.IndexByte(rest, ':'); i >= 0 {
					path = rest[:i]
					if j := strings.LastIndexByte(rest, ':'); j > i && !strings.Contains(rest[j+1:], "/") {
						version = rest[j+1:]
					}
				}
			}
			base := filepath.Base(filepath.Clean(path))
			for _, ext := range []string{".tar.gz", ".tgz", ".tar"} {
				base = strings.TrimSuffix(base, ext)
			}
			return base, version
		}
	}
	return ref, version
}

// build writes the image and returns its measurements.
func build(ctx context.Context, c *buildConfig, stderr io.Writer) (*eif.Measurements, error) {
	logf := func(format string, args ...any) {
		if c.verbose {
			fmt.Fprintf(stderr, format+"\n", args...)
		}
	}
	var err error
	if c.initBin == "" {
		if c.initBin, err = defaultBinary("init"); err != nil {
			return nil, err
		}
	}
	if c.agentBin == "" && !c.noAgent {
		if c.agentBin, err = defaultBinary("qtsm-agent"); err != nil {
			return nil, fmt.Errorf("%w (or --no-agent)", err)
		}
	}
	kernel, err := os.Open(c.kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	defer kernel.Close()
	kst, err := kernel.Stat()
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	if !kst.Mode().IsRegular() {
		return nil, fmt.Errorf("kernel: %s is not a regular file", c.kernel)
	}
	kinfo := eif.InspectKernel(kernel, kst.Size())
	logf("kernel: %s %s", kinfo.Format, kinfo.Version)

	cmdline := c.cmdline
	if !c.cmdlineSet {
		cmdline = defaultCmdline(c.arch)
	}
	if c.appendCmdline != "" {
		cmdline = strings.TrimSpace(cmdline + " " + c.appendCmdline)
	}
	if err := eif.CheckCmdline(cmdline); err != nil {
		return nil, err
	}

	var signer *eif.Signer
	if c.signKey != "" {
		if signer, err = eif.LoadSigner(c.signCert, c.signKey); err != nil {
			return nil, err
		}
	}

	mtime, err := cpio.SourceDateEpoch()
	if err != nil {
		return nil, err
	}
	boot := bootstrap.Options{
		Init: c.initBin, Agent: c.agentBin, Module: c.kmod,
		Arch: c.arch, CheckArch: true, MTime: mtime,
	}
	if _, err := bootstrap.Entries(boot); err != nil { // fail before writing anything
		return nil, err
	}

	platform := "linux/amd64"
	if c.arch == eif.ArchAArch64 {
		platform = "linux/arm64"
	}
	outDir := filepath.Dir(c.output)
	ropts := rootfs.Options{
		Platform: platform, Override: c.override, MTime: mtime, Gzip: c.gzip,
		TempDir: outDir, Logf: logf,
	}
	img, err := rootfs.Open(c.image, ropts)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	if _, err := rootfs.Manifest(img, ropts); err != nil {
		return nil, err
	}

	meta, err := metadata(c, img, kinfo)
	if err != nil {
		return nil, err
	}

	prog := newProgress(stderr)
	defer prog.close()
	ropts.Logf = func(format string, args ...any) {
		prog.setStage("application ramdisk: " + fmt.Sprintf(format, args...))
		logf(format, args...)
	}

	var m *eif.Measurements
	err = atomicfile.Write(c.output, atomicfile.Options{Sync: true}, func(f *os.File) error {
		w := eif.NewWriter(f, eif.Options{Arch: c.arch, Signer: signer})
		if err := writeSections(ctx, w, kernel, cmdline, meta, boot, img, ropts, prog); err != nil {
			w.Close()
			return err
		}
		prog.setStage("finishing (signature, header, sync)")
		m, err = w.Close()
		return err
	})
	if err != nil {
		return nil, err
	}
	logf("wrote %s", c.output)
	return m, nil
}

func writeSections(ctx context.Context, w *eif.Writer, kernel io.Reader, cmdline string, meta *eif.Metadata,
	boot bootstrap.Options, img *rootfs.Image, ropts rootfs.Options, prog *progress) error {
	prog.setStage("kernel")
	if err := w.WriteKernel(kernel); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	if err := w.WriteCmdline(cmdline); err != nil {
		return err
	}
	if err := w.WriteMetadata(meta); err != nil {
		return err
	}
	prog.setStage("bootstrap ramdisk")
	sw, err := w.CreateSection(eif.SectionRamdisk)
	if err != nil {
		return err
	}
	if err := bootstrap.Write(prog.counter(sw), boot); err != nil {
		return err
	}
	if err := sw.Close(); err != nil {
		return err
	}
	prog.setStage("application ramdisk")
	if sw, err = w.CreateSection(eif.SectionRamdisk); err != nil {
		return err
	}
	if _, _, err := rootfs.WriteRamdisk(ctx, prog.counter(sw), img, ropts); err != nil {
		return err
	}
	return sw.Close()
}

// dockerInfo is what the metadata records about the source image: only
// what comes from the image itself (never host paths), so that the same
// image gives the same metadata wherever it is stored.
type dockerInfo struct {
	Platform string        `json:"Platform,omitempty"`
	Layers   int           `json:"Layers"`
	Config   rootfs.Config `json:"Config"`
}

func metadata(c *buildConfig, img *rootfs.Image, k eif.KernelInfo) (*eif.Metadata, error) {
	name, version := imageName(c.image)
	if c.name != "" {
		name = c.name
	}
	if c.version != "" {
		version = c.version
	}
	bt, err := eif.BuildTime(c.buildTime)
	if err != nil {
		return nil, err
	}
	di, err := json.Marshal(dockerInfo{Platform: img.Platform(), Layers: img.Layers(), Config: img.Config()})
	if err != nil {
		return nil, err
	}
	m := &eif.Metadata{
		ImageName:    name,
		ImageVersion: version,
		BuildMetadata: eif.BuildMetadata{
			BuildTime:        bt,
			BuildTool:        "qtenclave",
			BuildToolVersion: toolVersion,
			OperatingSystem:  "Linux",
			KernelVersion:    k.Version,
		},
		DockerInfo: di,
	}
	if c.customMetadata != "" {
		b, err := os.ReadFile(c.customMetadata)
		if err != nil {
			return nil, fmt.Errorf("metadata: %w", err)
		}
		if m.CustomMetadata, err = eif.CanonicalJSON(b); err != nil {
			return nil, fmt.Errorf("metadata: %s: %w", c.customMetadata, err)
		}
	}
	return m, nil
}
