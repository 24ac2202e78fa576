// Package agent is qtsm-agent's server: it owns the secure-module device (or
// the simulator) and serves it to any number of local applications, in any
// language, as an HTTP/1.1 JSON API on a Unix socket (see API.md beside this
// file; the wire types are in package agent/api, a Go client in
// agent/client).
//
// The pieces:
//
//   - Listen creates the socket with its mode and group, appearing
//     atomically at its path once it accepts connections.
//   - Policy: read-only operations are open to every peer that can connect;
//     extending and locking PCRs need uid 0 or a configured group, decided on
//     the peer's kernel credentials (SO_PEERCRED, SO_PEERGROUPS) captured
//     when it connected.
//   - The queue: requests reach the device one at a time, FIFO per peer
//     process and round-robin across processes, so one chatty process
//     cannot starve the others. The request holding the device runs on its
//     own handler goroutine (no hand-off to a worker) and then passes the
//     device on. The queue is bounded (503 Busy beyond it) and every request
//     has a deadline (504 Timeout).
//   - Cancellation: a request whose client has disconnected or whose
//     deadline has passed before it reaches the head of the queue is never
//     sent to the device. One already sent runs to completion, since the
//     device cannot abandon it, and its answer is discarded: an ExtendPCR or
//     LockPCR that was sent is applied even if its client never sees the
//     answer (read the PCR to find out). The device call runs inline on the
//     request's goroutine; if the deadline passes during it, a watchdog
//     answers 504 on the raw connection and closes it.
//   - Arguments are validated before they reach the device: attestation
//     user_data and nonce <= 512 bytes, public_key <= 1024, extend and lock
//     only for PCRs 16..31, every encoded request within the device's 4 KiB.
//   - The HTTP server is the agent's own connection loop around net/http's
//     request parser and the same handler (conn.go says why): one request
//     at a time per connection on that connection's goroutine, pipelining,
//     keep-alive, Expect: 100-continue, header and body read timeouts,
//     8 KiB of headers, 64 KiB of body, so slow or malformed clients are
//     cut off without holding up the others. A client that hangs up while
//     its request waits in the queue takes the request out of it.
//   - Shutdown stops accepting, lets in-flight requests finish, then closes
//     the device.
package agent
