// Package device is the secure module's character-device transport with no
// message encoding: the raw-message ioctl of /dev/nsm and /dev/qtsm, and
// each vendor's numbers. Package qtsm builds its Device (and so Session) on
// it; init uses it directly for its one GetRandom without linking the CBOR
// codec. Both get the same, single copy of the unsafe part: the buffers'
// addresses handed to the kernel and kept alive across the call.
package device

// IoctlRaw is the raw-message ioctl, the same for both vendors:
// _IOWR(0x0A, 0, struct nsm_raw{u64 req_addr, req_len, resp_addr, resp_len}).
const IoctlRaw = 0xC0200A00

// Buffer sizes. Nitro's are those of the Linux driver (drivers/misc/nsm.c).
// Qingtian's are those of Huawei's library; its ioctl is assumed to be
// NSM's (UNVERIFIED on hardware, like the rest of QTSM's transport).
const (
	NitroMaxRequest     = 0x1000
	NitroMaxResponse    = 0x3000
	QingtianMaxRequest  = 0x1000
	QingtianMaxResponse = 0x6000
)
