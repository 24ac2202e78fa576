package rootfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/qtenclave/enclave/internal/atomicfile"
	"github.com/qtenclave/enclave/internal/interrupt"
	"github.com/qtenclave/enclave/proto/launch"
	"github.com/qtenclave/enclave/proto/workload"
	"github.com/qtenclave/enclave/rootfs/cpio"
	"github.com/qtenclave/enclave/rootfs/flatten"
)

// MountPoints are the directories always present under rootfs/ (where init
// mounts devtmpfs, proc, sysfs and tmpfs), with the permissions used when
// the image lacks them.
var MountPoints = []struct {
	Name string
	Perm uint32
}{
	{"dev", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"run", 0o755}, {"tmp", 0o1777}, {"var", 0o755},
}

// Stats describe a written ramdisk.
type Stats struct {
	flatten.Stats       // the image's filesystem (under rootfs/)
	ArchiveBytes  int64 // bytes written to the output
}

// WriteRamdisk streams img's application ramdisk to w (see the package
// documentation for the layout) and returns the launch manifest it holds.
// On error, what was written to w is incomplete and must be discarded.
func WriteRamdisk(ctx context.Context, w io.Writer, img *Image, opts Options) (*launch.Manifest, *Stats, error) {
	m, err := Manifest(img, opts)
	if err != nil {
		return nil, nil, err
	}
	st, err := WriteRamdiskManifest(ctx, w, img, m, opts)
	if err != nil {
		return nil, nil, err
	}
	return m, st, nil
}

// WriteRamdiskManifest is WriteRamdisk with the launch manifest the caller
// already made with Manifest (from the same img and opts).
func WriteRamdiskManifest(ctx context.Context, w io.Writer, img *Image, m *launch.Manifest, opts Options) (*Stats, error) {
	r, err := PrepareRamdisk(ctx, img, m, opts)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.WriteTo(ctx, w)
}

// Ramdisk is an application ramdisk made in two phases, so that a caller
// can overlap the first with other work: PrepareRamdisk reads and applies
// every layer (to a spool file) and checks the result the way init will;
// WriteTo streams the archive. Close releases the spool.
type Ramdisk struct {
	img  *Image
	m    *launch.Manifest
	opts Options
	tree *flatten.Tree
}

// PrepareRamdisk is the first phase: the layers applied and checked.
func PrepareRamdisk(ctx context.Context, img *Image, m *launch.Manifest, opts Options) (*Ramdisk, error) {
	r, err := prepare(ctx, img, m, opts)
	// Work cut short by ctx says why it stopped (interrupted by SIGTERM),
	// not which read noticed.
	return r, interrupt.Cause(ctx, err)
}

func prepare(ctx context.Context, img *Image, m *launch.Manifest, opts Options) (*Ramdisk, error) {
	tree, err := flatten.New(flatten.Options{TempDir: opts.TempDir})
	if err != nil {
		return nil, err
	}
	r := &Ramdisk{img: img, m: m, opts: opts, tree: tree}
	if err := r.apply(ctx); err != nil {
		tree.Close()
		return nil, err
	}
	return r, nil
}

func (r *Ramdisk) apply(ctx context.Context) error {
	tree, img, m := r.tree, r.img, r.m
	for _, l := range img.layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		r.opts.logf("rootfs: applying %v", l.id)
		if err := applyLayer(ctx, tree, l); err != nil {
			return fmt.Errorf("rootfs: %s: %w", img.ref, err)
		}
	}
	for _, mp := range MountPoints {
		if _, err := tree.MkdirAll(mp.Name, mp.Perm); err != nil {
			return err
		}
	}
	if m.WorkingDir != "" {
		if _, err := tree.MkdirAll(m.WorkingDir, 0o755); err != nil {
			return err
		}
	}
	// The image is checked the way init will check it at boot (the same
	// code: proto/workload), so that a missing program, an unknown USER or
	// a WORKDIR that is a file fails here, with init's message, not in the
	// enclave.
	if _, err := workload.Prepare(m, treeFiles{tree}, ""); err != nil {
		var we *workload.Error
		if errors.As(err, &we) {
			return fmt.Errorf("%w: %v (init would end the boot with status %d, reason %s)",
				ErrWorkload, err, we.Status().Code, we.Reason)
		}
		return fmt.Errorf("%w: %v", ErrWorkload, err)
	}
	return nil
}

// Close releases the spool.
func (r *Ramdisk) Close() error { return r.tree.Close() }

// WriteTo is the second phase: the archive streamed to w. On error, what
// was written to w is incomplete and must be discarded.
func (r *Ramdisk) WriteTo(ctx context.Context, w io.Writer) (*Stats, error) {
	st, err := r.write(ctx, w)
	return st, interrupt.Cause(ctx, err)
}

func (r *Ramdisk) write(ctx context.Context, w io.Writer) (*Stats, error) {
	tree, img, m, opts := r.tree, r.img, r.m, r.opts
	manifestJSON, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	cmd, env := m.LegacyFiles()
	cw := &countWriter{ctx: ctx, w: w}
	aw := cpio.NewWriter(cw, cpio.Options{MTime: opts.MTime, Gzip: opts.Gzip})
	perm, uid, gid := tree.Root()
	if err := aw.Add(cpio.Entry{Name: launch.RootfsDir, Mode: cpio.TypeDir | perm, UID: uid, GID: gid}); err != nil {
		return nil, err
	}
	fst, err := tree.AddTo(aw, launch.RootfsDir)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %s: %w", img.ref, err)
	}
	if fst.Dropped > 0 {
		opts.logf("rootfs: dropped %d device nodes and FIFOs", fst.Dropped)
	}
	for _, f := range []cpio.Entry{
		cpio.File(launch.CmdPath, 0o644, cmd),
		cpio.File(launch.EnvPath, 0o644, env),
		cpio.File(launch.ManifestPath, 0o644, manifestJSON),
	} {
		if err := aw.Add(f); err != nil {
			return nil, err
		}
	}
	if err := aw.Close(); err != nil {
		return nil, fmt.Errorf("rootfs: %s: write ramdisk: %w", img.ref, err)
	}
	return &Stats{Stats: fst, ArchiveBytes: cw.n}, nil
}

func applyLayer(ctx context.Context, tree *flatten.Tree, l layerSource) error {
	rc, err := l.open()
	if err != nil {
		return fmt.Errorf("%v: open: %w", l.id, err)
	}
	defer rc.Close()
	if err := tree.Apply(l.id, &ctxReader{ctx: ctx, r: rc}); err != nil {
		// A blob that is not what its digests say explains any parse
		// error it causes: check it (Close drains and verifies) and say so.
		if cerr := rc.Close(); errors.Is(cerr, ErrDigest) && ctx.Err() == nil {
			return fmt.Errorf("%v: %w", l.id, cerr)
		}
		return err
	}
	// Drain what follows the tar's end blocks so that a digest-verifying
	// reader gets to check the whole blob.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("%v: read: %w", l.id, err)
	}
	if err := rc.Close(); err != nil {
		return fmt.Errorf("%v: %w", l.id, err)
	}
	return nil
}

// WriteRamdiskFile writes the ramdisk to path through a temporary file in
// the same directory, renamed into place (mode 0644) only on success: on
// error no file is left behind. The spool goes to the same directory unless
// opts.TempDir is set.
func WriteRamdiskFile(ctx context.Context, path string, img *Image, opts Options) (*launch.Manifest, *Stats, error) {
	var (
		m  *launch.Manifest
		st *Stats
	)
	dir := filepath.Dir(path)
	if opts.TempDir == "" {
		opts.TempDir = dir
	}
	err := WriteFileAtomic(path, 0o644, func(w io.Writer) error {
		var err error
		m, st, err = WriteRamdisk(ctx, w, img, opts)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return m, st, nil
}

// WriteFileAtomic calls write with a temporary file next to path, then
// sets its permissions to perm and renames it to path. If write or any step
// fails, the temporary file is removed and path is untouched. No fsync: like
// go build, a build product is rewritten after a crash rather than made
// durable at twice the I/O cost.
func WriteFileAtomic(path string, perm os.FileMode, write func(io.Writer) error) error {
	return atomicfile.Write(path, atomicfile.Options{Perm: perm}, func(f *os.File) error { return write(f) })
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

type countWriter struct {
	ctx context.Context
	w   io.Writer
	n   int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ErrWorkload is an image in which init could not start the workload.
var ErrWorkload = errors.New("rootfs: the workload cannot start in this image")

// treeFiles is the flattened image as workload.Files.
type treeFiles struct{ *flatten.Tree }

func (f treeFiles) MkdirAll(name string, perm fs.FileMode) error {
	_, err := f.Tree.MkdirAll(name, uint32(perm.Perm()))
	return err
}
