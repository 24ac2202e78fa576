// Package vsockports names the vsock addresses an enclave and its parent
// agree on, and the heartbeat's byte: the boot contract's numbers, in one
// place for init (which dials them) and the parent (which listens). It
// depends on nothing.
//
// The enclave reaches its parent at ParentCID. It says it has booted on
// Heartbeat (it writes HeartbeatByte, the parent writes it back), reports
// the workload's exit status on Status (proto/status) and, when the kernel
// command line asks for it, sends its log stream on Log (proto/logstream)
// and takes the parent's stop request on its own port Control
// (proto/control). The companion opens egress tunnels to the parent's
// Egress port (proto/tunnel).
// The kernel command line can move each (init/cmdline).
package vsockports

// The parent instance's context ID, as the enclave sees it.
const ParentCID = 3

// Ports on the parent.
const (
	Heartbeat = 9000
	Status    = 9001
	Log       = 9002
	// Egress takes the enclave's egress tunnels (proto/tunnel).
	Egress = 9004
)

// Control is the enclave's own port for the parent's requests (stop):
// init listens on it.
const Control = 9003

// HeartbeatByte is the heartbeat, both ways.
const HeartbeatByte = 0xB7
