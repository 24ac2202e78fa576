// Package parent is the host side of a local enclave boot: everything QEMU's
// `-M nitro-enclave` machine needs next to it to run an EIF without the cloud.
//
// The machine exposes a vhost-user-vsock device whose data plane QEMU does
// not implement itself: it connects (as a client) to a unix socket given as
// `-chardev socket,id=c0,path=SOCK` and `vsock=c0`, and expects a vhost-user
// back-end there. The packages below, bottom up, are that back-end and the
// parent-instance services an enclave's init talks to:
//
//   - virtq: guest memory translation and split virtqueues (descriptor
//     table, available and used rings), as seen by a device.
//   - vhostuser: the vhost-user control protocol over the unix socket
//     (features, memory table with fds to mmap, vring setup, kick/call
//     eventfds), generic over a Device.
//   - vsockdev: the virtio-vsock device on top: 44-byte packet headers,
//     stream connections in both directions with credit flow control,
//     Listen (guest connects to the parent) and Dial (host connects to a
//     guest port), each connection a net.Conn.
//   - emulator: the parent instance: answers the heartbeat, receives the
//     workload's exit status, forwards host sockets to enclave ports.
//
// # Vsock services of the parent (CID 3)
//
// Heartbeat, port 9000: the enclave's init connects and writes one byte 0xB7;
// the parent answers with one byte 0xB7 (the enclave writes first).
//
// Exit status, port 9001 (kernel cmdline `qtenclave.status_port=N` in the
// guest, 0 = off): after the workload exits, init connects and writes one
// line, then closes:
//
//	EXIT <code>\n     decimal exit code 0..255
//	SIGNAL <n>\n      the workload was killed by signal n
//
// `qtenclave run` exits with <code>, or 128+n for a signal; with 123 when
// the enclave ended without reporting a status and 124 on its --timeout.
//
// # Running QEMU against it
//
// `qtenclave run` (image/cmd/qtenclave/run.go) listens on a temporary unix
// socket, serves it with emulator.Parent and starts:
//
//	qemu-system-x86_64 -M nitro-enclave,vsock=c0,id=<module id>[,parent-role=R][,parent-id=I]
//	    -chardev socket,id=c0,path=SOCK -kernel APP.eif
//	    -accel tcg -nographic -nic none -no-reboot -smp N -m MiB
//	    -L /usr/share/seabios -L /usr/share/qemu
//	    -append "reboot=t tsc_early_khz=<host kHz>"
//
// The chardev has no server=on: QEMU connects, the back-end listens. The
// machine backs guest RAM with a memfd, which SET_MEM_TABLE hands over.
// QEMU gives the back-end queues 0 (rx) and 1 (tx) and keeps the event
// queue. The guest must end with reboot(RESTART): with -no-reboot and
// reboot=t that makes QEMU exit (a power-off only halts the CPU).
package parent
