// Package fakemod is the agent tests' secure module: the real simulator
// (qtsm/sim) behind a thin transport wrapper that adds what tests of
// queueing and cancellation need: a delay and a gate before each answer,
// counters (calls, overlapping calls) and the log of decoded requests.
// Everything a request does, and every document, is the simulator's.
package fakemod

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/attestation"
	"github.com/qtenclave/enclave/qtsm/sim"
)

// ModuleID is the module's ID.
const ModuleID = "fake-module"

// Module is the simulator with test hooks. It implements qtsm.Transport.
type Module struct {
	// Delay is slept in every round trip (not interruptible, like the
	// device's ioctl).
	Delay time.Duration
	// Gate, when set, is received from before each round trip answers.
	Gate chan struct{}

	mu   sync.Mutex
	sim  *sim.Module
	busy atomic.Int32

	// Calls counts round trips; Overlaps counts round trips that started
	// while another was running (must stay 0: the device is serial).
	Calls, Overlaps atomic.Int64
	// Log records the decoded requests, in order.
	logMu sync.Mutex
	log   []qtsm.Request
}

// New returns a module whose PCRs are all zero, 0..15 locked (a fresh
// simulator, Nitro dialect).
func New() *Module {
	m := &Module{}
	m.Reset()
	return m
}

// Reset replaces the simulator with a fresh one: every PCR back to zero,
// 0..15 locked, the others not.
func (m *Module) Reset() {
	s, err := sim.New(sim.Options{Vendor: qtsm.VendorNitro, ModuleID: ModuleID})
	if err != nil {
		panic("fakemod: " + err.Error()) // a throwaway key pair cannot fail to generate
	}
	m.mu.Lock()
	m.sim = s
	m.mu.Unlock()
}

// Sim is the simulator currently behind the module.
func (m *Module) Sim() *sim.Module {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sim
}

// Requests returns the requests received so far.
func (m *Module) Requests() []qtsm.Request {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	return append([]qtsm.Request(nil), m.log...)
}

// RoundTrip implements qtsm.Transport: the hooks, then the simulator.
func (m *Module) RoundTrip(ctx context.Context, b []byte) ([]byte, error) {
	m.Calls.Add(1)
	if m.busy.Add(1) > 1 {
		m.Overlaps.Add(1)
	}
	defer m.busy.Add(-1)
	if m.Delay > 0 {
		time.Sleep(m.Delay)
	}
	if m.Gate != nil {
		<-m.Gate
	}
	if req, err := qtsm.DecodeRequest(b); err == nil {
		m.logMu.Lock()
		m.log = append(m.log, req)
		m.logMu.Unlock()
	}
	return m.Sim().RoundTrip(ctx, b)
}

// Close implements qtsm.Transport.
func (m *Module) Close() error { return m.Sim().Close() }

// Doc is what tests read from a document the module made.
type Doc struct {
	ModuleID  string
	PCRs      map[int][]byte
	Nonce     []byte
	UserData  []byte
	PublicKey []byte
}

// ParseDoc parses a document the simulator made (attestation.Parse: the
// real parser, on the real document).
func ParseDoc(b []byte) (*Doc, error) {
	d, err := attestation.Parse(b)
	if err != nil {
		return nil, err
	}
	return &Doc{ModuleID: d.ModuleID, PCRs: d.PCRs, Nonce: d.Nonce, UserData: d.UserData, PublicKey: d.PublicKey}, nil
}
