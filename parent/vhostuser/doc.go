// Package vhostuser is the back-end side of QEMU's vhost-user protocol over a
// unix socket: QEMU (the front-end) connects, negotiates features, shares
// guest memory as file descriptors to mmap, and hands over virtqueues with
// an eventfd to kick the device and one to signal the guest. The device
// itself (what the queues carry) is a Device; package vsockdev implements
// virtio-vsock.
//
// Message layout (native byte order, version 1): request u32, flags u32
// (bits 0-1 version, bit 2 reply, bit 3 need-reply), size u32, payload.
// File descriptors travel as SCM_RIGHTS with the header.
//
// Supported: GET/SET_FEATURES, GET/SET_PROTOCOL_FEATURES (MQ, REPLY_ACK,
// CONFIG), SET_OWNER, RESET_OWNER, RESET_DEVICE, SET_MEM_TABLE,
// SET_VRING_NUM/ADDR/BASE/KICK/CALL/ERR/ENABLE, GET_VRING_BASE,
// GET_QUEUE_NUM, GET_CONFIG, GET_MAX_MEM_SLOTS; SET_LOG_BASE/SET_LOG_FD and
// SET_BACKEND_REQ_FD are accepted and their descriptors closed. Not offered:
// LOG_SHMFD (no migration), CONFIGURE_MEM_SLOTS, INBAND_NOTIFICATIONS,
// BACKEND_REQ, STATUS, INFLIGHT_SHMFD.
//
// Ring life cycle: a ring runs once it has a size, addresses, guest memory,
// a kick descriptor (or the no-fd flag: then it is polled) and, when
// VHOST_USER_F_PROTOCOL_FEATURES was negotiated, SET_VRING_ENABLE 1. It is
// stopped by GET_VRING_BASE (which reports the next available index), by
// disabling it, and around a new memory table (then restarted).
package vhostuser
