package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/qtenclave/enclave/image"
	"github.com/qtenclave/enclave/image/eif"
	"github.com/qtenclave/enclave/internal/atomicfile"
	"github.com/qtenclave/enclave/internal/cliflag"
	"github.com/qtenclave/enclave/internal/interrupt"
	"github.com/qtenclave/enclave/proto/launch"
	"github.com/qtenclave/enclave/rootfs"
)

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
	gzip, verbose, sync     bool
	override                rootfs.Config
	launch                  *launch.Manifest // the enclave knobs; nil: none given
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
	fs.BoolVar(&c.sync, "sync", false, "fsync the image before it is renamed into place (durable across a power loss; costs about a quarter of the build's time)")
	fs.Var(&entrypoint, "entrypoint", "override the image's Entrypoint: a program, or a JSON array")
	fs.Var(&cmd, "cmd", "override the image's Cmd: a program, or a JSON array")
	fs.Var(&env, "env", "add or replace an environment variable `KEY=VALUE` (repeatable)")
	fs.StringVar(&workdir, "workdir", "", "override the image's WorkingDir")
	fs.StringVar(&user, "user", "", "override the image's User")
	var knobs launch.Manifest
	fs.StringVar(&knobs.Hostname, "hostname", "", "the enclave's hostname (launch manifest; init's default: enclave)")
	fs.BoolVar(&knobs.TmpNoexec, "tmp-noexec", false, "mount /tmp noexec (launch manifest)")
	fs.Uint64Var(&knobs.NofileLimit, "nofile", 0, "RLIMIT_NOFILE for the workload (launch manifest; init's default: 65536)")
	var stopTimeout uint
	fs.UintVar(&stopTimeout, "stop-timeout", 0, "seconds between SIGTERM and SIGKILL when the enclave is stopped (launch manifest; default 10)")
	var egressAllow, egressDeny cliflag.List
	var proxyPort uint
	fs.Var(&egressAllow, "egress-allow", "allow egress to `RULE` (host[:port], *.name, **.name, IP, CIDR; repeatable; launch manifest, measured); turns egress on")
	fs.Var(&egressDeny, "egress-deny", "deny egress to `RULE` (repeatable; deny wins)")
	fs.UintVar(&proxyPort, "egress-proxy-port", 0, "the egress HTTP proxy's port on 127.0.0.1 (default 3128)")
	var forwards cliflag.List
	fs.Var(&forwards, "egress-forward", "reach `NAME:PORT` without a proxy: the name gets a loopback address of its own in /etc/hosts (repeatable; the policy must allow it)")
	configPath := fs.String("config", "", "declarative `FILE` (YAML) with everything the launch manifest holds; flags given win, list flags add")
	var publish cliflag.List
	fs.Var(&publish, "publish", "let the parent reach the workload's TCP `PORT` on 127.0.0.1 through the same vsock port (repeatable; launch manifest)")
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
	if *configPath != "" {
		if err := applyConfigFile(fs, *configPath, &entrypoint, &cmd, &env, &workdir, &user, &knobs, &stopTimeout,
			&egressAllow, &egressDeny, &forwards, &proxyPort, &publish); err != nil {
			fmt.Fprintf(stderr, "qtenclave build: --config: %v\n", err)
			return exitUsage
		}
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
	if stopTimeout > 1<<31 {
		fmt.Fprintf(stderr, "qtenclave build: --stop-timeout %d: too long\n", stopTimeout)
		return exitUsage
	}
	knobs.StopTimeout = uint32(stopTimeout)
	if len(egressAllow) > 0 || len(egressDeny) > 0 || proxyPort != 0 || len(forwards) > 0 {
		if proxyPort > 65535 {
			fmt.Fprintf(stderr, "qtenclave build: --egress-proxy-port %d: not a port\n", proxyPort)
			return exitUsage
		}
		knobs.Egress = &launch.Egress{Allow: egressAllow, Deny: egressDeny, ProxyPort: uint16(proxyPort), Forwards: forwards}
	}
	for _, p := range publish {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			fmt.Fprintf(stderr, "qtenclave build: --publish %q: want a TCP port\n", p)
			return exitUsage
		}
		knobs.Publish = append(knobs.Publish, uint16(n))
	}
	if knobs.Hostname != "" || knobs.TmpNoexec || knobs.NofileLimit != 0 || knobs.StopTimeout != 0 || knobs.Egress != nil || knobs.Publish != nil || knobs.Agent != nil {
		c.launch = &knobs
	}
	c.override = rootfs.Config{Entrypoint: entrypoint.V, Cmd: cmd.V, Env: env, WorkingDir: workdir, User: user}

	spec := image.Spec{
		Image: c.image, Kernel: c.kernel, Append: c.appendCmdline, Arch: c.arch,
		Init: c.initBin, Agent: c.agentBin, Module: c.kmod, Override: c.override, Launch: c.launch, Gzip: c.gzip,
		Name: c.name, Version: c.version, BuildTime: c.buildTime, CustomMetadata: c.customMetadata,
		TempDir: filepath.Dir(c.output),
	}
	if c.cmdlineSet {
		spec.Cmdline = &c.cmdline
	}
	if c.verbose {
		spec.Logf = func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	}
	ctx, stop := interrupt.Context(context.Background())
	defer stop()
	m, err := build(ctx, &c, spec, stderr)
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

// build finds the binaries and the signer, then writes the EIF through a
// temporary file renamed into place when complete.
func build(ctx context.Context, c *buildConfig, spec image.Spec, stderr io.Writer) (*eif.Measurements, error) {
	var err error
	if spec.Init == "" {
		if spec.Init, err = image.FindBinary("init"); err != nil {
			return nil, err
		}
	}
	if spec.Agent == "" && !c.noAgent {
		if spec.Agent, err = image.FindBinary("qtsm-agent"); err != nil {
			return nil, fmt.Errorf("%w (or --no-agent)", err)
		}
	}
	if c.signKey != "" {
		if spec.Signer, err = eif.LoadSigner(c.signCert, c.signKey); err != nil {
			return nil, err
		}
	}
	prog := newProgress(stderr)
	defer prog.close()
	spec.Progress = prog
	var m *eif.Measurements
	// No fsync by default: like go build's output (and our ramdisks), an
	// image is a reproducible build product, rebuilt after a crash rather
	// than made durable at the cost of writing it twice; --sync asks for it.
	err = atomicfile.Write(c.output, atomicfile.Options{Sync: c.sync}, func(f *os.File) error {
		m, err = image.Build(ctx, f, spec)
		return err
	})
	if err != nil {
		return nil, err
	}
	if c.verbose {
		fmt.Fprintf(stderr, "wrote %s\n", c.output)
	}
	return m, nil
}

// applyConfigFile takes what --config's file sets and the command line
// does not: a flag given wins, a list flag adds to the file's list.
func applyConfigFile(fs *flag.FlagSet, path string, entrypoint, cmd *cliflag.Argv, env *cliflag.List, workdir, user *string,
	knobs *launch.Manifest, stopTimeout *uint, allow, deny, forwards *cliflag.List, proxyPort *uint, publish *cliflag.List) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	fc, err := image.ParseBuildConfig(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["entrypoint"] && fc.Entrypoint != nil {
		entrypoint.V = fc.Entrypoint
	}
	if !set["cmd"] && fc.Cmd != nil {
		cmd.V = fc.Cmd
	}
	*env = append(append(cliflag.List{}, fc.Env...), *env...)
	if !set["workdir"] && fc.WorkingDir != "" {
		*workdir = fc.WorkingDir
	}
	if !set["user"] && fc.User != "" {
		*user = fc.User
	}
	if !set["hostname"] {
		knobs.Hostname = fc.Hostname
	}
	if !set["tmp-noexec"] {
		knobs.TmpNoexec = fc.TmpNoexec
	}
	if !set["nofile"] {
		knobs.NofileLimit = fc.NofileLimit
	}
	if !set["stop-timeout"] {
		*stopTimeout = uint(fc.StopTimeout)
	}
	knobs.Agent = fc.Agent
	if fc.Egress != nil && len(fc.Egress.Allow)+len(fc.Egress.Deny)+len(fc.Egress.Forwards) == 0 && fc.Egress.ProxyPort == 0 {
		fc.Egress.ProxyPort = launch.DefaultProxyPort // an egress section, even empty, opens egress
	}
	if e := fc.Egress; e != nil {
		*allow = append(append(cliflag.List{}, e.Allow...), *allow...)
		*deny = append(append(cliflag.List{}, e.Deny...), *deny...)
		*forwards = append(append(cliflag.List{}, e.Forwards...), *forwards...)
		if !set["egress-proxy-port"] {
			*proxyPort = uint(e.ProxyPort)
		}
	}
	var ports cliflag.List
	for _, p := range fc.Publish {
		ports = append(ports, strconv.Itoa(int(p)))
	}
	*publish = append(ports, *publish...)
	return nil
}
