// Package vsockdev is a virtio-vsock device (the host half of AF_VSOCK
// stream sockets) for the vhost-user back-end in package vhostuser.
//
// The device owns the receive queue (0, device to guest) and the transmit
// queue (1, guest to device); the event queue belongs to QEMU. Packets carry
// a 44-byte little-endian header (src_cid u64, dst_cid u64, src_port u32,
// dst_port u32, len u32, type u16, op u16, flags u32, buf_alloc u32,
// fwd_cnt u32) followed by len bytes of payload.
//
// Connections are stream sockets keyed by (host CID, host port, guest port):
//
//   - Guest to host: the guest connects to a host CID (Config.HostCIDs,
//     default 2 and 3) and a port the host listens on (Device.Listen);
//     Listener.Accept returns the connection. A request for a port nobody
//     listens on is answered with RST (the guest sees ECONNREFUSED).
//   - Host to guest: Device.Dial sends a request from the parent CID and an
//     ephemeral port and returns once the guest answers.
//
// Each connection is a net.Conn (with deadlines, CloseRead, CloseWrite).
// Flow control follows the virtio-vsock credit scheme both ways: the device
// never sends more than the guest's buf_alloc - (tx_cnt - fwd_cnt), and
// advertises its own buffer (Config.BufAlloc) with a fwd_cnt that grows as
// the host reads, sending CREDIT_UPDATE once the guest's view of free space
// falls under half of the buffer. A guest that overruns the advertised
// buffer is reset. Close sends SHUTDOWN (after queued data) and forgets the
// connection on the guest's RST or after CloseTimeout.
//
// Packets from a source CID other than the guest's are dropped; packets to a
// CID the device does not serve, of a type other than STREAM or for unknown
// connections are answered with RST (never an RST to an RST).
package vsockdev
