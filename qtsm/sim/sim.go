package sim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/attestation"
	"github.com/qtenclave/enclave/qtsm/pcr"
)

// Options configure a simulated module.
type Options struct {
	// Vendor is the dialect of attestation documents (default Nitro).
	Vendor qtsm.Vendor
	// ModuleID defaults to one generated in the vendor's style.
	ModuleID string
	// PCRs are preset values (e.g. PCR0-2 measurements of an image), 48
	// bytes each. PCR0-15 start locked whether preset or not; a preset PCR
	// at 16 or above starts unlocked.
	PCRs map[int][]byte
	// Rand supplies module IDs, GetRandom bytes and certificate serials;
	// default crypto/rand. (Go's crypto ignores a custom reader for key
	// generation, so keys are always fresh.)
	Rand io.Reader
	// Now is the module's clock (document timestamps, leaf validity);
	// default time.Now.
	Now func() time.Time
}

// Answers a real module gives that the simulator copies.
const (
	// MaxRequest is the largest request accepted (NSM_REQUEST_MAX_SIZE).
	MaxRequest = 0x1000
	// RandomSize is the size of one GetRandom answer (QEMU's
	// NSM_RND_BUF_SIZE).
	RandomSize = 256
	// LockedAtStart is how many PCRs (0..LockedAtStart-1) start locked.
	LockedAtStart = pcr.FirstApp
)

// Module is a software secure module. It implements qtsm.Transport: wrap it
// in qtsm.NewSession. It is safe for concurrent use.
type Module struct {
	vendor   qtsm.Vendor
	moduleID string
	rand     io.Reader
	now      func() time.Time
	ca       *CA

	mu     sync.Mutex
	pcrs   [pcr.Count][]byte
	locked [pcr.Count]bool
	leaf   *Leaf
	closed bool
}

var _ qtsm.Transport = (*Module)(nil)

// New returns a module with PCRs zero except opts.PCRs, PCR0-15 locked, and
// a new throwaway certificate chain.
func New(opts Options) (*Module, error) {
	m := &Module{vendor: opts.Vendor, moduleID: opts.ModuleID, rand: opts.Rand, now: opts.Now}
	if m.vendor == qtsm.VendorUnknown {
		m.vendor = qtsm.VendorNitro
	}
	if m.vendor != qtsm.VendorNitro && m.vendor != qtsm.VendorQingtian {
		return nil, fmt.Errorf("sim: unknown vendor %d", m.vendor)
	}
	if m.rand == nil {
		m.rand = rand.Reader
	}
	if m.now == nil {
		m.now = time.Now
	}
	for i := range m.pcrs {
		m.pcrs[i] = pcr.Zero()
		m.locked[i] = i < LockedAtStart
	}
	for i, v := range opts.PCRs {
		if i < 0 || i >= pcr.Count {
			return nil, fmt.Errorf("sim: preset PCR index %d out of range [0,%d)", i, pcr.Count)
		}
		if len(v) != pcr.Size {
			return nil, fmt.Errorf("sim: preset PCR%d is %d bytes, want %d", i, len(v), pcr.Size)
		}
		m.pcrs[i] = bytes.Clone(v)
	}
	if m.moduleID == "" {
		id, err := m.generateID()
		if err != nil {
			return nil, err
		}
		m.moduleID = id
	}
	if len(m.moduleID) > attestation.MaxModuleID {
		return nil, fmt.Errorf("sim: module ID is %d bytes, limit %d", len(m.moduleID), attestation.MaxModuleID)
	}
	ca, err := NewCA(m.rand, m.now(), "qtenclave-sim "+m.vendor.String())
	if err != nil {
		return nil, err
	}
	m.ca = ca
	return m, nil
}

// generateID makes a module ID in the vendor's style:
// i-<17 hex>-enc<16 hex> (AWS) or <uuid>.enc-<16 hex> (Qingtian).
func (m *Module) generateID() (string, error) {
	var b [33]byte
	if _, err := io.ReadFull(m.rand, b[:]); err != nil {
		return "", fmt.Errorf("sim: module ID: %w", err)
	}
	h := hex.EncodeToString(b[:])
	if m.vendor == qtsm.VendorQingtian {
		b[6] = b[6]&0x0f | 0x40 // UUID version 4
		b[8] = b[8]&0x3f | 0x80 // variant
		u := hex.EncodeToString(b[:16])
		return fmt.Sprintf("%s-%s-%s-%s-%s.enc-%s", u[:8], u[8:12], u[12:16], u[16:20], u[20:32], h[32:48]), nil
	}
	return fmt.Sprintf("i-%s-enc%s", h[:17], h[40:56]), nil
}

// RootDER returns the throwaway root certificate that anchors the module's
// documents.
func (m *Module) RootDER() []byte { return bytes.Clone(m.ca.RootDER) }

// Root returns the root as an attestation.Root, for Options.Roots.
func (m *Module) Root() attestation.Root {
	return attestation.Root{Vendor: m.vendor, Cert: m.ca.Root()}
}

// VerifyOptions returns attestation options that trust this module's root
// and expect its vendor; set the rest (Expect*, AllowDebug, ...) as needed.
func (m *Module) VerifyOptions() attestation.Options {
	return attestation.Options{Roots: []attestation.Root{m.Root()}, Vendor: m.vendor}
}

// Vendor returns the module's dialect.
func (m *Module) Vendor() qtsm.Vendor { return m.vendor }

// ModuleID returns the module's ID.
func (m *Module) ModuleID() string { return m.moduleID }

// Close makes every later RoundTrip fail with qtsm.ErrClosed.
func (m *Module) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// RoundTrip decodes one request with qtsm.DecodeRequest, executes it, and
// returns the answer encoded with qtsm.EncodeResponse: a result, or an
// Error response with the name the module would give. A Go error means the
// transport itself failed (closed module, ended context), as with a device.
func (m *Module) RoundTrip(ctx context.Context, req []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	resp, err := m.handle(req)
	if err != nil {
		return nil, err
	}
	b, err := qtsm.EncodeResponse(resp)
	if err != nil {
		return nil, fmt.Errorf("sim: encode %s answer: %w", resp.Op(), err)
	}
	return b, nil
}

func errorResponse(c qtsm.Code) qtsm.ErrorResponse {
	return qtsm.ErrorResponse{Code: c, Name: c.String()}
}

// handle executes one request. Error choices follow QEMU's virtio-nsm (the
// only open implementation of the NSM) where it is specific:
//   - request larger than MaxRequest: InputTooLarge;
//   - undecodable or unknown request: InvalidOperation (QEMU answers every
//     request it cannot parse so; the real NSM is not documented);
//   - PCR index >= 32 (LockPCRs range > 32): InvalidIndex;
//   - ExtendPCR or LockPCR of a locked PCR: ReadOnlyIndex;
//   - user_data or nonce > 512 bytes, public_key > 1024: InputTooLarge (the
//     real NSM's limits; QEMU does not check them).
//
// LockPCRs over already locked PCRs succeeds, as in QEMU.
func (m *Module) handle(b []byte) (qtsm.Response, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, qtsm.ErrClosed
	}
	return m.execute(b), nil
}

func (m *Module) execute(b []byte) qtsm.Response {
	if len(b) > MaxRequest {
		return errorResponse(qtsm.CodeInputTooLarge)
	}
	req, err := qtsm.DecodeRequest(b)
	if err != nil {
		return errorResponse(qtsm.CodeInvalidOperation)
	}
	switch r := req.(type) {
	case qtsm.DescribeRequest:
		locked := []uint16{}
		for i, l := range m.locked {
			if l {
				locked = append(locked, uint16(i))
			}
		}
		return qtsm.DescribeResponse{Description: qtsm.Description{
			VersionMajor: 1, ModuleID: m.moduleID, MaxPCRs: pcr.Count, LockedPCRs: locked, Digest: "SHA384",
		}}
	case qtsm.GetRandomRequest:
		out := make([]byte, RandomSize)
		if _, err := io.ReadFull(m.rand, out); err != nil {
			return errorResponse(qtsm.CodeInternalError)
		}
		return qtsm.GetRandomResponse{Random: out}
	case qtsm.DescribePCRRequest:
		if int(r.Index) >= pcr.Count {
			return errorResponse(qtsm.CodeInvalidIndex)
		}
		return qtsm.DescribePCRResponse{Lock: m.locked[r.Index], Data: bytes.Clone(m.pcrs[r.Index])}
	case qtsm.ExtendPCRRequest:
		if int(r.Index) >= pcr.Count {
			return errorResponse(qtsm.CodeInvalidIndex)
		}
		if m.locked[r.Index] {
			return errorResponse(qtsm.CodeReadOnlyIndex)
		}
		m.pcrs[r.Index] = pcr.Extend(m.pcrs[r.Index], r.Data)
		return qtsm.ExtendPCRResponse{Data: bytes.Clone(m.pcrs[r.Index])}
	case qtsm.LockPCRRequest:
		if int(r.Index) >= pcr.Count {
			return errorResponse(qtsm.CodeInvalidIndex)
		}
		if m.locked[r.Index] {
			return errorResponse(qtsm.CodeReadOnlyIndex)
		}
		m.locked[r.Index] = true
		return qtsm.LockPCRResponse{}
	case qtsm.LockPCRsRequest:
		if int(r.Range) > pcr.Count {
			return errorResponse(qtsm.CodeInvalidIndex)
		}
		for i := range int(r.Range) {
			m.locked[i] = true
		}
		return qtsm.LockPCRsResponse{}
	case qtsm.AttestationRequest:
		if len(r.UserData) > qtsm.MaxUserData || len(r.Nonce) > qtsm.MaxNonce || len(r.PublicKey) > qtsm.MaxPublicKey {
			return errorResponse(qtsm.CodeInputTooLarge)
		}
		doc, err := m.attest(r)
		if err != nil {
			return errorResponse(qtsm.CodeInternalError)
		}
		return qtsm.AttestationResponse{Document: doc}
	}
	return errorResponse(qtsm.CodeInvalidOperation)
}

// attest builds and signs a document. Like AWS's module (and QEMU's), the
// document carries the locked PCRs only: PCR0-15 from the start, plus any
// application PCR once locked. Called with m.mu held.
func (m *Module) attest(r qtsm.AttestationRequest) ([]byte, error) {
	now := m.now()
	if m.leaf == nil || now.Before(m.leaf.Cert.NotBefore) || now.After(m.leaf.Cert.NotAfter.Add(-LeafLifetime/6)) {
		leaf, err := m.ca.NewLeaf(now)
		if err != nil {
			return nil, err
		}
		m.leaf = leaf
	}
	d := &attestation.Document{
		ModuleID:        m.moduleID,
		Digest:          "SHA384",
		TimestampMillis: uint64(now.UnixMilli()),
		PCRs:            map[int][]byte{},
		Certificate:     m.leaf.DER,
		CABundle:        m.ca.Bundle(),
		PublicKey:       r.PublicKey,
		UserData:        r.UserData,
		Nonce:           r.Nonce,
	}
	for i, l := range m.locked {
		if l {
			d.PCRs[i] = m.pcrs[i]
		}
	}
	return attestation.Sign(d, m.leaf.Key, attestation.SignOptions{Vendor: m.vendor, Rand: m.rand})
}

// PCR returns PCR i's value and lock state (for tests; no request needed).
func (m *Module) PCR(i int) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i < 0 || i >= pcr.Count {
		return nil, false
	}
	return bytes.Clone(m.pcrs[i]), m.locked[i]
}

// LockedPCRs returns the locked PCR indexes in order.
func (m *Module) LockedPCRs() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []int
	for i, l := range m.locked {
		if l {
			out = append(out, i)
		}
	}
	return slices.Clip(out)
}
