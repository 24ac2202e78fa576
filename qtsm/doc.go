// Package qtsm talks to the enclave secure module: Huawei Qingtian's QTSM
// (/dev/qtsm) and AWS Nitro's NSM (/dev/nsm), which share one message schema.
//
// The layers, bottom up:
//
//   - Messages (message.go): typed requests and responses, encoded as CBOR
//     externally tagged enums exactly as the vendors' Rust/C libraries do.
//   - Transport (transport.go, device_linux.go): something that exchanges one
//     encoded request for one encoded response — the real device via its raw
//     ioctl (the ioctl itself and the vendors' numbers are package device,
//     which init shares without linking the CBOR codec), the simulator in
//     package sim, or anything else.
//   - Session (session.go): validates arguments, serialises calls, maps error
//     responses to *Error, retries GetRandom while the module starts, and
//     honours context deadlines. Session implements Module, the interface the
//     agent's client shares, so callers can swap one for the other.
//
// Attestation documents are parsed and verified by package attestation; PCR
// arithmetic is in package pcr.
package qtsm
