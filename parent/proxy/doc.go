// Package proxy is the parent instance's side of the enclave's egress: it
// accepts the tunnels the enclave's companion opens (proto/tunnel), checks
// each destination against both the image's attested policy and the
// operator's allowlist (proto/egress; both must allow), resolves names
// itself, dials, and joins the streams. It works on any net.Listener: the
// local emulator's vsock device under qtenclave run, AF_VSOCK on a real
// parent, loopback TCP in tests.
package proxy
