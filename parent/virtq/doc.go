// Package virtq implements the device side of virtio split virtqueues over
// guest memory that the device process can address: a Memory translates
// guest physical addresses (used in descriptors) and front-end user
// addresses (used by vhost-user for the rings themselves) into byte slices,
// and a Queue pops descriptor chains from the available ring and returns
// them on the used ring.
//
// Everything the guest writes is untrusted: ring indexes, descriptor
// addresses, lengths and next links are checked, a chain that loops, points
// outside guest memory, uses indirect descriptors (not negotiated) or puts a
// device-readable buffer after a device-writable one is refused with an
// error and never causes a panic.
//
// Not supported (the device must not offer them): VIRTIO_RING_F_EVENT_IDX,
// VIRTIO_RING_F_INDIRECT_DESC, packed rings. The host must be little-endian
// or big-endian with the ring words converted (handled), and ring index
// words are accessed atomically so a guest running concurrently sees a
// consistent used ring.
//
// Package virtqtest has a driver (guest) side over plain byte slices for
// tests.
package virtq
