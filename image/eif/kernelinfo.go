package eif

import (
	"bytes"
	"encoding/binary"
	"io"
)

// KernelInfo describes a kernel image.
type KernelInfo struct {
	Format  string `json:"Format"`            // "bzImage", "arm64 Image" or "unknown"
	Version string `json:"Version,omitempty"` // e.g. "6.12.117"; empty if not found
	// Banner is the full version string when found (bzImage: the setup
	// header's kernel_version, e.g. "6.12.117 (user@host) #1 SMP ...").
	Banner string `json:"Banner,omitempty"`
}

// InspectKernel identifies an x86 bzImage (setup header "HdrS", whose
// kernel_version field points at the version string) or an arm64 Image
// ("ARM\x64" at 0x38, version from the "Linux version " banner in its first
// 64 MiB). It reads only what it needs.
func InspectKernel(r io.ReaderAt, size int64) KernelInfo {
	var hdr [0x240]byte
	n, _ := r.ReadAt(hdr[:], 0)
	b := hdr[:n]
	switch {
	case len(b) >= 0x210 && string(b[0x202:0x206]) == "HdrS":
		info := KernelInfo{Format: "bzImage"}
		if p := int64(binary.LittleEndian.Uint16(b[0x20e:])); p != 0 && p+0x200 < size {
			var s [256]byte
			k, _ := r.ReadAt(s[:], p+0x200)
			info.Banner = cString(s[:k])
			info.Version = firstWord(info.Banner)
		}
		return info
	case len(b) >= 0x3c && string(b[0x38:0x3c]) == "ARM\x64":
		info := KernelInfo{Format: "arm64 Image"}
		info.Banner = findBanner(io.NewSectionReader(r, 0, min(size, 64<<20)))
		info.Version = firstWord(info.Banner)
		return info
	}
	return KernelInfo{Format: "unknown"}
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			return string(b[:i])
		}
	}
	return string(b)
}

func firstWord(s string) string {
	if i := bytes.IndexByte([]byte(s), ' '); i >= 0 {
		return s[:i]
	}
	return s
}

// findBanner scans for "Linux version X" and returns "X ...".
func findBanner(r io.Reader) string {
	const marker = "Linux version "
	buf := make([]byte, 1<<20)
	keep := 0
	for {
		n, err := io.ReadFull(r, buf[keep:])
		data := buf[:keep+n]
		if i := bytes.Index(data, []byte(marker)); i >= 0 {
			rest := data[i+len(marker):]
			if len(rest) > 200 || err != nil {
				return cString(rest[:min(len(rest), 200)])
			}
			// Not enough after the marker yet: shift and read more.
			copy(buf, data[i:])
			keep = len(data) - i
			if n == 0 {
				return cString(rest)
			}
			continue
		}
		if err != nil {
			return ""
		}
		keep = min(len(marker), len(data))
		copy(buf, data[len(data)-keep:])
	}
}
