package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/qtenclave/enclave/agent/api"
	"github.com/qtenclave/enclave/agent/client"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/attestation"
	"github.com/qtenclave/enclave/qtsm/pcr"
	"github.com/qtenclave/enclave/qtsm/sim"
)

func newSim(t testing.TB, vendor qtsm.Vendor) *sim.Module {
	t.Helper()
	m, err := sim.New(sim.Options{Vendor: vendor, PCRs: map[int][]byte{0: pcr.Measure([]byte("eif"))}})
	if err != nil {
		t.Fatalf("sim.New(%v) = %v", vendor, err)
	}
	return m
}

// TestIntegrationSimulator runs every operation, success and error paths,
// through the real socket against the simulator of both vendors, compares
// with the simulator's own state and verifies the attestation documents.
func TestIntegrationSimulator(t *testing.T) {
	for _, vendor := range []qtsm.Vendor{qtsm.VendorNitro, qtsm.VendorQingtian} {
		t.Run(vendor.String(), func(t *testing.T) {
			m := newSim(t, vendor)
			a := startAgent(t, qtsm.NewSession(m), "", nil)
			c := a.client()
			ctx := context.Background()

			d, err := c.Describe(ctx)
			if err != nil || d.ModuleID != m.ModuleID() || d.MaxPCRs != 32 || d.Digest != "SHA384" || len(d.LockedPCRs) != 16 {
				t.Errorf("Describe() = %+v, %v, want module %s, 32 PCRs, 16 locked", d, err, m.ModuleID())
			}
			l, err := c.DescribePCRs(ctx)
			if err != nil || len(l) != 32 {
				t.Fatalf("DescribePCRs() = %d PCRs, %v", len(l), err)
			}
			for _, p := range l {
				v, locked := m.PCR(p.Index)
				if !bytes.Equal(p.Value, v) || p.Locked != locked {
					t.Errorf("PCR%d = %x locked %v, simulator has %x locked %v", p.Index, p.Value, p.Locked, v, locked)
				}
			}
			v, err := c.ExtendPCR(ctx, 16, []byte{1, 2, 3})
			if want := pcr.Extend(pcr.Zero(), []byte{1, 2, 3}); err != nil || !bytes.Equal(v, want) {
				t.Errorf("ExtendPCR(16) = %x, %v, want %x", v, err, want)
			}
			if err := c.LockPCR(ctx, 16); err != nil {
				t.Errorf("LockPCR(16) = %v", err)
			}
			if _, err := c.ExtendPCR(ctx, 16, []byte{1}); !errors.Is(err, qtsm.ErrReadOnlyIndex) {
				t.Errorf("ExtendPCR(16) after lock = %v, want ReadOnlyIndex", err)
			}
			if err := c.LockPCR(ctx, 16); !errors.Is(err, qtsm.ErrReadOnlyIndex) {
				t.Errorf("LockPCR(16) again = %v, want ReadOnlyIndex", err)
			}
			if _, err := c.ExtendPCR(ctx, 4, []byte{1}); !errors.Is(err, qtsm.ErrInvalidIndex) {
				t.Errorf("ExtendPCR(4) = %v, want InvalidIndex (agent allows 16..31 only)", err)
			}
			if err := c.LockPCRs(ctx, 20); err != nil {
				t.Errorf("LockPCRs(20) = %v", err)
			}
			if _, locked := m.PCR(19); !locked {
				t.Errorf("simulator PCR19 unlocked after LockPCRs(20)")
			}

			nonce := []byte("fresh nonce")
			doc, err := c.Attestation(ctx, qtsm.AttestationRequest{Nonce: nonce, UserData: []byte("ud"), PublicKey: []byte("pk")})
			if err != nil {
				t.Fatalf("Attestation() = %v", err)
			}
			opts := m.VerifyOptions()
			opts.ExpectNonce, opts.ExpectUserData, opts.ExpectPublicKey = nonce, []byte("ud"), []byte("pk")
			opts.ExpectPCRs = map[int][]byte{16: v}
			if _, err := attestation.VerifyBytes(doc, opts); err != nil {
				t.Errorf("VerifyBytes(agent's document) = %v", err)
			}
			// The JSON form carries the same kind of document in base64.
			_, _, b := rawDo(t, a.socket, "POST", "/v1/attestation", map[string]string{"Content-Type": "application/json"}, []byte(`{"nonce":"AQI="}`))
			var ar api.AttestationResponse
			if err := json.Unmarshal(b, &ar); err != nil {
				t.Fatalf("JSON attestation answer %s: %v", b, err)
			}
			opts.ExpectNonce, opts.ExpectUserData, opts.ExpectPublicKey = []byte{1, 2}, nil, nil
			if _, err := attestation.VerifyBytes(ar.Document, opts); err != nil {
				t.Errorf("VerifyBytes(JSON document) = %v", err)
			}
			for _, req := range []qtsm.AttestationRequest{
				{Nonce: make([]byte, 513)}, {UserData: make([]byte, 513)}, {PublicKey: make([]byte, 1025)},
			} {
				if _, err := c.Attestation(ctx, req); !errors.Is(err, qtsm.ErrInputTooLarge) {
					t.Errorf("Attestation(oversized) = %v, want InputTooLarge", err)
				}
			}
			// Largest allowed inputs pass.
			if _, err := c.Attestation(ctx, qtsm.AttestationRequest{Nonce: make([]byte, 512), UserData: make([]byte, 512), PublicKey: make([]byte, 1024)}); err != nil {
				t.Errorf("Attestation(maximal inputs) = %v", err)
			}
			r, err := c.GetRandom(ctx)
			if err != nil || len(r) != sim.RandomSize {
				t.Errorf("GetRandom() = %d bytes, %v, want %d", len(r), err, sim.RandomSize)
			}
			if r, err := c.Random(ctx, api.MaxRandom); err != nil || len(r) != api.MaxRandom {
				t.Errorf("Random(%d) = %d bytes, %v", api.MaxRandom, len(r), err)
			}
			if _, err := c.Health(ctx); err != nil {
				t.Errorf("Health() = %v", err)
			}
			// After Close the device refuses; the agent says so.
			m.Close()
			if _, err := c.Describe(ctx); err == nil || !errors.Is(err, client.ErrDevice) {
				t.Errorf("Describe() on a closed simulator = %v, want DeviceError", err)
			}
		})
	}
}
