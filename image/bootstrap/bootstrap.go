// Package bootstrap builds the bootstrap ramdisk, the first ramdisk of an
// EIF (measured in PCR1 with the kernel and cmdline). It holds what the
// kernel and our init need before the switch into the application's root:
//
//	/dev            directory 0755
//	/dev/console    character device 5:1, 0600 (the kernel opens it for
//	                init's stdio before devtmpfs is mounted)
//	/init           our PID 1, 0755
//	/qtsm-agent     the secure-module agent, 0755 (optional); init makes it
//	                runnable after the switch root (see init/doc.go, step 7)
//	/nsm.ko         the secure-module driver, 0644 (optional); a compressed
//	                module keeps its extension: /nsm.ko.xz, /nsm.ko.zst,
//	                /nsm.ko.gz; a Qingtian driver file named qtsm.ko* keeps
//	                its name — init (init/kmod) loads whichever is present
//
// Everything is owned by root with fixed modes and the archive is written by
// rootfs/cpio, so the same input files always give the same bytes (only the
// files' contents are taken from the host). The archive is not compressed by
// default: the kernel decompresses gzip, but an uncompressed ramdisk keeps
// the measured bytes independent of the compressor's version.
package bootstrap

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/qtenclave/enclave/image/eif"
	"github.com/qtenclave/enclave/rootfs/cpio"
)

// Paths inside the bootstrap ramdisk (relative to its root).
const (
	DevDir      = "dev"
	ConsolePath = "dev/console"
	InitPath    = "init"
	AgentPath   = "qtsm-agent"
	// ModuleBase is the module's name without extension; the file is
	// ModuleBase + one of ModuleExtensions (or QtsmModuleBase + extension
	// for a file given as qtsm.ko*).
	ModuleBase     = "nsm"
	QtsmModuleBase = "qtsm"
)

// ModuleExtensions are the module file name endings accepted, in the order
// init should try them.
var ModuleExtensions = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// Options name the host files that go into the ramdisk.
type Options struct {
	// Init is the host path of the init binary (required).
	Init string
	// Agent is the host path of qtsm-agent; empty leaves it out.
	Agent string
	// Module is the host path of the secure-module driver (nsm.ko,
	// nsm.ko.xz...); empty leaves it out (the kernel may have it built in).
	Module string
	// Arch, when set (CheckArch), makes Entries check that Init and Agent
	// are ELF executables for that architecture.
	Arch      eif.Arch
	CheckArch bool
	// MTime is every record's mtime (seconds since the epoch, default 0).
	MTime int64
	// Gzip compresses the archive.
	Gzip bool
}

// ModuleName returns the in-ramdisk name of the module file at hostPath:
// "nsm" (or "qtsm" when the file is named qtsm.*) plus its extension (.ko,
// .ko.xz, .ko.zst or .ko.gz).
func ModuleName(hostPath string) (string, error) {
	base := filepath.Base(hostPath)
	for i := len(ModuleExtensions) - 1; i >= 0; i-- {
		if ext := ModuleExtensions[i]; strings.HasSuffix(base, ext) && len(base) > len(ext) {
			if strings.TrimSuffix(base, ext) == QtsmModuleBase {
				return QtsmModuleBase + ext, nil
			}
			return ModuleBase + ext, nil
		}
	}
	return "", fmt.Errorf("bootstrap: module %s: want a file ending in %s", hostPath, strings.Join(ModuleExtensions, ", "))
}

// Entries returns the ramdisk's entries.
func Entries(opts Options) ([]cpio.Entry, error) {
	if opts.Init == "" {
		return nil, errors.New("bootstrap: no init binary")
	}
	entries := []cpio.Entry{
		cpio.Dir(DevDir, 0o755),
		cpio.CharDev(ConsolePath, 0o600, 5, 1),
	}
	add := func(name, host string, perm uint32, exe bool) error {
		if exe && opts.CheckArch {
			if err := checkELF(host, opts.Arch); err != nil {
				return err
			}
		}
		e, err := cpio.HostFile(name, perm, host)
		if err != nil {
			return fmt.Errorf("bootstrap: %s: %w", name, err)
		}
		entries = append(entries, e)
		return nil
	}
	if err := add(InitPath, opts.Init, 0o755, true); err != nil {
		return nil, err
	}
	if opts.Agent != "" {
		if err := add(AgentPath, opts.Agent, 0o755, true); err != nil {
			return nil, err
		}
	}
	if opts.Module != "" {
		name, err := ModuleName(opts.Module)
		if err != nil {
			return nil, err
		}
		if err := add(name, opts.Module, 0o644, false); err != nil {
			return nil, err
		}
	}
	return entries, nil
}

// Write writes the bootstrap ramdisk to w.
func Write(w io.Writer, opts Options) error {
	entries, err := Entries(opts)
	if err != nil {
		return err
	}
	if err := cpio.WriteArchive(w, cpio.Options{MTime: opts.MTime, Gzip: opts.Gzip}, entries...); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	return nil
}

// checkELF checks that path is a statically linked ELF executable for arch.
func checkELF(path string, arch eif.Arch) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("bootstrap: %s is not an ELF executable: %w", path, err)
	}
	defer f.Close()
	want := elf.EM_X86_64
	if arch == eif.ArchAArch64 {
		want = elf.EM_AARCH64
	}
	if f.Machine != want {
		return fmt.Errorf("bootstrap: %s is built for %v, the image is %v", path, f.Machine, arch)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("bootstrap: %s is an ELF %v, not an executable", path, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("bootstrap: %s is dynamically linked; the bootstrap ramdisk has no libc (build it with CGO_ENABLED=0)", path)
		}
	}
	return nil
}
