// Package fakemod is a small software secure module for the agent's tests:
// a qtsm.Transport that decodes requests, keeps 32 SHA-384 PCRs (0..15
// locked) and answers as the device would. Its "attestation document" is an
// unsigned COSE_Sign1-shaped CBOR array whose payload map carries the nonce,
// user_data and public_key, so tests can tie an answer to its request. The
// real simulator is package qtsm/sim; this fake adds hooks (delay, a gate,
// counters) that tests of queueing and cancellation need.
package fakemod

import (
	"context"
	"crypto/rand"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/qtenclave/enclave/qtsm"
	"github.com/qtenclave/enclave/qtsm/pcr"
)

// Module is the fake device.
type Module struct {
	// Delay is slept in every round trip (not interruptible, like the
	// device's ioctl).
	Delay time.Duration
	// Gate, when set, is received from before each round trip answers.
	Gate chan struct{}

	mu     sync.Mutex
	pcrs   [pcr.Count][]byte
	locked [pcr.Count]bool
	closed bool
	busy   atomic.Int32

	// Calls counts round trips; Overlaps counts round trips that started
	// while another was running (must stay 0: the device is serial).
	Calls, Overlaps atomic.Int64
	// Log records the decoded requests, in order.
	logMu sync.Mutex
	log   []qtsm.Request
}

// New returns a fake module with PCRs 0..15 locked at zero.
func New() *Module {
	m := &Module{}
	m.Reset()
	return m
}

// Reset puts every PCR back to zero, 0..15 locked, the others not.
func (m *Module) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.pcrs {
		m.pcrs[i] = pcr.Zero()
		m.locked[i] = i < pcr.FirstApp
	}
}

// Requests returns the requests received so far.
func (m *Module) Requests() []qtsm.Request {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	return append([]qtsm.Request(nil), m.log...)
}

// Doc is the payload of the fake attestation document.
type Doc struct {
	ModuleID  string         `cbor:"module_id"`
	PCRs      map[int][]byte `cbor:"pcrs"`
	Nonce     []byte         `cbor:"nonce"`
	UserData  []byte         `cbor:"user_data"`
	PublicKey []byte         `cbor:"public_key"`
}

// ParseDoc decodes a document made by the fake.
func ParseDoc(b []byte) (*Doc, error) {
	var arr []cbor.RawMessage
	if err := cbor.Unmarshal(b, &arr); err != nil {
		return nil, err
	}
	if len(arr) != 4 {
		return nil, qtsm.ErrMalformed
	}
	var payload []byte
	if err := cbor.Unmarshal(arr[2], &payload); err != nil {
		return nil, err
	}
	var d Doc
	if err := cbor.Unmarshal(payload, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// RoundTrip implements qtsm.Transport.
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
	req, err := qtsm.DecodeRequest(b)
	if err != nil {
		return qtsm.EncodeResponse(qtsm.ErrorResponse{Code: qtsm.CodeInvalidArgument})
	}
	m.logMu.Lock()
	m.log = append(m.log, req)
	m.logMu.Unlock()
	return qtsm.EncodeResponse(m.answer(req))
}

func fail(c qtsm.Code) qtsm.Response { return qtsm.ErrorResponse{Code: c} }

func (m *Module) answer(req qtsm.Request) qtsm.Response {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fail(qtsm.CodeInternalError)
	}
	switch r := req.(type) {
	case qtsm.DescribeRequest:
		var locked []uint16
		for i, l := range m.locked {
			if l {
				locked = append(locked, uint16(i))
			}
		}
		return qtsm.DescribeResponse{Description: qtsm.Description{VersionMajor: 1, ModuleID: "fake-module",
			MaxPCRs: pcr.Count, LockedPCRs: locked, Digest: "SHA384"}}
	case qtsm.DescribePCRRequest:
		if int(r.Index) >= pcr.Count {
			return fail(qtsm.CodeInvalidIndex)
		}
		return qtsm.DescribePCRResponse{Lock: m.locked[r.Index], Data: append([]byte(nil), m.pcrs[r.Index]...)}
	case qtsm.ExtendPCRRequest:
		if int(r.Index) >= pcr.Count {
			return fail(qtsm.CodeInvalidIndex)
		}
		if m.locked[r.Index] {
			return fail(qtsm.CodeReadOnlyIndex)
		}
		m.pcrs[r.Index] = pcr.Extend(m.pcrs[r.Index], r.Data)
		return qtsm.ExtendPCRResponse{Data: append([]byte(nil), m.pcrs[r.Index]...)}
	case qtsm.LockPCRRequest:
		if int(r.Index) >= pcr.Count {
			return fail(qtsm.CodeInvalidIndex)
		}
		if m.locked[r.Index] {
			return fail(qtsm.CodeReadOnlyIndex)
		}
		m.locked[r.Index] = true
		return qtsm.LockPCRResponse{}
	case qtsm.LockPCRsRequest:
		if int(r.Range) > pcr.Count {
			return fail(qtsm.CodeInvalidIndex)
		}
		for i := range int(r.Range) {
			m.locked[i] = true
		}
		return qtsm.LockPCRsResponse{}
	case qtsm.AttestationRequest:
		if len(r.Nonce) > qtsm.MaxNonce || len(r.UserData) > qtsm.MaxUserData || len(r.PublicKey) > qtsm.MaxPublicKey {
			return fail(qtsm.CodeInputTooLarge)
		}
		d := Doc{ModuleID: "fake-module", PCRs: map[int][]byte{}, Nonce: r.Nonce, UserData: r.UserData, PublicKey: r.PublicKey}
		for i := range pcr.Count {
			d.PCRs[i] = m.pcrs[i]
		}
		payload, err := cbor.Marshal(d)
		if err != nil {
			return fail(qtsm.CodeInternalError)
		}
		doc, err := cbor.Marshal([]any{[]byte{0xa1, 0x01, 0x38, 0x22}, map[int]int{}, payload, make([]byte, 96)})
		if err != nil {
			return fail(qtsm.CodeInternalError)
		}
		return qtsm.AttestationResponse{Document: doc}
	case qtsm.GetRandomRequest:
		b := make([]byte, 256)
		rand.Read(b)
		return qtsm.GetRandomResponse{Random: b}
	}
	return fail(qtsm.CodeInvalidOperation)
}

// Close implements qtsm.Transport.
func (m *Module) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}
