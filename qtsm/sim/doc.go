// Package sim is a software secure module: the NSM/QTSM operation set with
// real semantics, behind the same qtsm.Transport a device offers, so that
// everything above the transport (qtsm.Session, the agent, attestation
// verification) runs unchanged without an enclave:
//
//	m, _ := sim.New(sim.Options{Vendor: qtsm.VendorQingtian, PCRs: measured})
//	s := qtsm.NewSession(m)
//	doc, _ := s.Attestation(ctx, qtsm.AttestationRequest{Nonce: nonce})
//	opts := m.VerifyOptions() // trusts m.RootDER(), expects m's vendor
//	opts.ExpectNonce = nonce
//	res, err := attestation.VerifyBytes(doc, opts)
//
// Semantics (those of AWS's NSM as emulated by QEMU's virtio-nsm, the only
// open implementation, plus the real module's input limits):
//
//   - 32 SHA-384 PCRs, zero at start except Options.PCRs; PCR0-15 locked at
//     start, 16-31 unlocked (a preset PCR >= 16 stays unlocked).
//     ExtendPCR sets SHA384(old || data) (pcr.Extend).
//   - ExtendPCR or LockPCR of a locked PCR: ReadOnlyIndex (QEMU's answer;
//     the protocol facts only say "error" for extend). LockPCRs(n) locks [0, n) and
//     accepts already locked PCRs.
//   - Index >= 32 or LockPCRs range > 32: InvalidIndex.
//   - user_data or nonce > 512 bytes, public_key > 1024, or a request over
//     0x1000 bytes: InputTooLarge.
//   - A request that qtsm.DecodeRequest refuses (not CBOR, unknown
//     operation, missing or mistyped field, index beyond u16):
//     InvalidOperation, which is what QEMU's device answers for every
//     request it cannot parse (the real NSM's answer is not documented).
//   - GetRandom: 256 bytes. Describe: version 1.0.0, the module ID, max_pcrs
//     32, locked PCRs in order, digest SHA384.
//   - Attestation: a COSE_Sign1 in Options.Vendor's dialect (see
//     attestation.Sign) holding the locked PCRs only, as AWS's documents do
//     ("all locked PCRs at the time of the request": PCR0-15, plus any
//     application PCR once locked), the timestamp from Options.Now and the
//     request's user_data, nonce and public_key.
//
// Documents are signed by a throwaway chain made at New: a P-384 root and
// intermediate (valid a year back and 30 years forward) and 3-hour leaves,
// re-issued as the clock (Options.Now) moves, like AWS's. Only RootDER
// anchors them: the real vendors' roots never do.
//
// RoundTrip decodes with qtsm.DecodeRequest and encodes with
// qtsm.EncodeResponse, so the wire codec is exercised exactly as with a
// device. A Module is safe for concurrent use.
package sim
