package eif

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestInspectKernel(t *testing.T) {
	bz := make([]byte, 0x1000)
	copy(bz[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(bz[0x20e:], 0x300)
	copy(bz[0x500:], "6.12.117 (qtenclave@qtenclave) #1 SMP\x00junk")

	arm := make([]byte, 3<<20)
	copy(arm[0x38:], "ARM\x64")
	// The banner straddles the scanner's 1 MiB buffer boundary.
	copy(arm[1<<20-5:], "Linux version 6.12.9-arm64 (x@y) #1\x00")

	for _, tc := range []struct {
		name string
		data []byte
		want KernelInfo
	}{
		{"bzImage", bz, KernelInfo{Format: "bzImage", Version: "6.12.117", Banner: "6.12.117 (qtenclave@qtenclave) #1 SMP"}},
		{"arm64", arm, KernelInfo{Format: "arm64 Image", Version: "6.12.9-arm64", Banner: "6.12.9-arm64 (x@y) #1"}},
		{"unknown", []byte("KERNEL"), KernelInfo{Format: "unknown"}},
		{"bzImage bad pointer", func() []byte {
			b := bytes.Clone(bz)
			binary.LittleEndian.PutUint16(b[0x20e:], 0xffff)
			return b
		}(), KernelInfo{Format: "bzImage"}},
	} {
		got := InspectKernel(bytes.NewReader(tc.data), int64(len(tc.data)))
		if got != tc.want {
			t.Errorf("InspectKernel(%s) = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
