// Package qemu boots an EIF locally under QEMU's nitro-enclave machine
// (TCG, no KVM needed) with this process as the parent instance: Find
// locates QEMU, Args builds its command line, and Run starts it beside an
// emulated parent (package parent/emulator: vhost-user-vsock, heartbeat,
// exit status, log stream, port forwards) and supervises both until the
// enclave reports its exit status, stops, times out or is interrupted.
//
// qtenclave run (image/cmd/qtenclave) is this package's command line.
package qemu
