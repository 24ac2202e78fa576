package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/qtenclave/enclave/image/bootstrap"
	"github.com/qtenclave/enclave/image/eif"
	"github.com/qtenclave/enclave/internal/interrupt"
	"github.com/qtenclave/enclave/proto/launch"
	"github.com/qtenclave/enclave/rootfs"
	"github.com/qtenclave/enclave/rootfs/cpio"
)

// ToolVersion is recorded in the metadata section (BuildToolVersion).
const ToolVersion = "0.1.0"

// The kernel command lines AWS ships, used as they are. Their "nomodules"
// is not a kernel parameter (the real one is "nomodule", which would forbid
// finit_module): the kernel hands it to init as an argument, so the
// secure-module driver still loads, as on AWS. QEMU's nitro-enclave machine
// also needs reboot=t to stop cleanly; that is the launcher's business
// (-append, not measured), not the image's.
const (
	CmdlineX86   = "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on"
	CmdlineARM64 = "reboot=k panic=30 pci=off nomodules console=ttyS0 random.trust_cpu=on root=/dev/ram0"
)

// DefaultCmdline is AWS's command line for arch.
func DefaultCmdline(arch eif.Arch) string {
	if arch == eif.ArchAArch64 {
		return CmdlineARM64
	}
	return CmdlineX86
}

// Spec is everything that goes into an EIF.
type Spec struct {
	Image  string // container image reference: docker-archive:, oci:, dir: (see rootfs.Open)
	Kernel string // kernel image file (bzImage, or arm64 Image)
	// Cmdline is the kernel command line; nil: DefaultCmdline(Arch).
	Cmdline *string
	Append  string   // appended to the command line (measured)
	Arch    eif.Arch // the zero value is x86_64
	Init    string   // init binary (required)
	Agent   string   // qtsm-agent binary; "": none in the image
	Module  string   // secure-module driver file; "": none
	// Override is applied to the image config as docker run's flags are.
	Override rootfs.Config
	// Launch, when non-nil, supplies the manifest's enclave knobs
	// (hostname, tmp_noexec, nofile_limit, agent).
	Launch *launch.Manifest
	Gzip   bool // gzip the application ramdisk

	Name, Version string // metadata; "": the image reference's name and tag
	// BuildTime is the metadata's build time (see eif.BuildTime): ""
	// means SOURCE_DATE_EPOCH, else 1970.
	BuildTime string
	// CustomMetadata is a JSON file stored as CustomMetadata ("": none).
	CustomMetadata string
	Signer         *eif.Signer // nil: unsigned

	// TempDir holds the application ramdisk's spool (default os.TempDir()).
	TempDir  string
	Logf     func(format string, args ...any)
	Progress Progress // nil: none
}

// Progress is told the build's stages and counts the bytes written in
// each (qtenclave build draws it on a terminal).
type Progress interface {
	Stage(name string)
	Count(w io.Writer) io.Writer
}

type noProgress struct{}

func (noProgress) Stage(string)                {}
func (noProgress) Count(w io.Writer) io.Writer { return w }

func (s *Spec) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// Build writes the EIF that s describes to out and returns its
// measurements. Inputs are checked before anything is written; on error,
// what was written to out is incomplete and must be discarded.
func Build(ctx context.Context, out io.WriterAt, s Spec) (*eif.Measurements, error) {
	m, err := build(ctx, out, s)
	return m, interrupt.Cause(ctx, err)
}

func build(ctx context.Context, out io.WriterAt, s Spec) (*eif.Measurements, error) {
	if s.Init == "" {
		return nil, errors.New("build: no init binary")
	}
	prog := s.Progress
	if prog == nil {
		prog = noProgress{}
	}
	kernel, kinfo, err := openKernel(s.Kernel)
	if err != nil {
		return nil, err
	}
	defer kernel.Close()
	s.logf("kernel: %s %s", kinfo.Format, kinfo.Version)

	cmdline, err := s.cmdline()
	if err != nil {
		return nil, err
	}
	mtime, err := cpio.SourceDateEpoch()
	if err != nil {
		return nil, err
	}
	boot := bootstrap.Options{
		Init: s.Init, Agent: s.Agent, Module: s.Module,
		Arch: s.Arch, CheckArch: true, MTime: mtime,
	}
	if _, err := bootstrap.Entries(boot); err != nil { // fail before writing anything
		return nil, err
	}

	ropts := rootfs.Options{
		Platform: Platform(s.Arch), Override: s.Override, Launch: s.Launch, MTime: mtime, Gzip: s.Gzip,
		TempDir: s.TempDir, Logf: s.Logf,
	}
	img, err := rootfs.Open(s.Image, ropts)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	manifest, err := rootfs.Manifest(img, ropts)
	if err != nil {
		return nil, err
	}
	meta, err := Metadata(img, kinfo, s)
	if err != nil {
		return nil, err
	}

	ropts.Logf = s.Logf
	// The application ramdisk's first phase (reading and applying every
	// layer) runs while the kernel, command line, metadata and bootstrap
	// ramdisk are written and hashed: it is mostly copying, they are
	// mostly hashing, and two cores do both at once.
	pctx, cancel := context.WithCancel(ctx)
	var app *rootfs.Ramdisk
	var appErr error
	prepared := make(chan struct{})
	go func() {
		defer close(prepared)
		app, appErr = rootfs.PrepareRamdisk(pctx, img, manifest, ropts)
	}()
	defer func() {
		cancel() // an earlier section failed: stop applying layers
		<-prepared
		if app != nil {
			app.Close()
		}
	}()
	w := eif.NewWriter(out, eif.Options{Arch: s.Arch, Signer: s.Signer})
	sections := []struct {
		stage string
		write func() error
	}{
		{"kernel", func() error {
			if err := w.WriteKernel(kernel); err != nil {
				return fmt.Errorf("kernel: %w", err)
			}
			return nil
		}},
		{"command line", func() error { return w.WriteCmdline(cmdline) }},
		{"metadata", func() error { return w.WriteMetadata(meta) }},
		{"bootstrap ramdisk", func() error {
			return ramdiskSection(w, prog, func(sw io.Writer) error { return bootstrap.Write(sw, boot) })
		}},
		{"application ramdisk", func() error {
			<-prepared
			if appErr != nil {
				return appErr
			}
			return ramdiskSection(w, prog, func(sw io.Writer) error {
				_, err := app.WriteTo(ctx, sw)
				return err
			})
		}},
	}
	for _, sec := range sections {
		prog.Stage(sec.stage)
		if err := sec.write(); err != nil {
			w.Close()
			return nil, err
		}
	}
	prog.Stage("finishing (signature, header)")
	return w.Close()
}

// ramdiskSection writes one ramdisk section with fill.
func ramdiskSection(w *eif.Writer, prog Progress, fill func(io.Writer) error) error {
	sw, err := w.CreateSection(eif.SectionRamdisk)
	if err != nil {
		return err
	}
	if err := fill(prog.Count(sw)); err != nil {
		return err
	}
	return sw.Close()
}

// openKernel opens and inspects the kernel image.
func openKernel(path string) (*os.File, eif.KernelInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, eif.KernelInfo{}, fmt.Errorf("kernel: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, eif.KernelInfo{}, fmt.Errorf("kernel: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, eif.KernelInfo{}, fmt.Errorf("kernel: %s is not a regular file", path)
	}
	return f, eif.InspectKernel(f, st.Size()), nil
}

// cmdline is the command line s asks for.
func (s *Spec) cmdline() (string, error) {
	c := DefaultCmdline(s.Arch)
	if s.Cmdline != nil {
		c = *s.Cmdline
	}
	if s.Append != "" {
		c = strings.TrimSpace(c + " " + s.Append)
	}
	if err := eif.CheckCmdline(c); err != nil {
		return "", err
	}
	return c, nil
}

// Platform is the container platform of an image for arch.
func Platform(arch eif.Arch) string {
	if arch == eif.ArchAArch64 {
		return "linux/arm64"
	}
	return "linux/amd64"
}

// dockerInfo is what the metadata records about the source image: only
// what comes from the image itself (never host paths), so that the same
// image gives the same metadata wherever it is stored.
type dockerInfo struct {
	Platform string        `json:"Platform,omitempty"`
	Layers   int           `json:"Layers"`
	Config   rootfs.Config `json:"Config"`
}

// Metadata is the metadata section for img built with kernel k as s says.
func Metadata(img *rootfs.Image, k eif.KernelInfo, s Spec) (*eif.Metadata, error) {
	name, version := img.Name(), img.Tag()
	if s.Name != "" {
		name = s.Name
	}
	if s.Version != "" {
		version = s.Version
	}
	bt, err := eif.BuildTime(s.BuildTime)
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
			BuildToolVersion: ToolVersion,
			OperatingSystem:  "Linux",
			KernelVersion:    k.Version,
		},
		DockerInfo: di,
	}
	if s.CustomMetadata != "" {
		b, err := os.ReadFile(s.CustomMetadata)
		if err != nil {
			return nil, fmt.Errorf("metadata: %w", err)
		}
		if m.CustomMetadata, err = eif.CanonicalJSON(b); err != nil {
			return nil, fmt.Errorf("metadata: %s: %w", s.CustomMetadata, err)
		}
	}
	return m, nil
}

// FindBinary finds one of the project's binaries (init, qtsm-agent) next
// to the running executable, then in ./bin (where make build puts them).
func FindBinary(name string) (string, error) {
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
