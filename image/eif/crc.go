package eif

// CRC-32 (IEEE, reflected polynomial 0xedb88320) combination: given
// crc(A), crc(B) and len(B), crcCombine returns crc(A||B) without reading A
// or B again. It works on finalised CRC values, the ones hash/crc32 returns.
//
// Appending len(B) zero bytes to A multiplies A's (pre-conditioned) register
// by x^(8*len(B)) modulo the polynomial; the conditioning terms of B cancel
// against the all-ones initial value, so crc(A||B) = crc(A)*x^(8n) ^ crc(B).

const crcPoly = 0xedb88320

// crcMulMod returns a*b modulo the CRC polynomial, both in the reflected bit
// order where bit 31 is x^0.
func crcMulMod(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		if b&1 != 0 {
			b = b>>1 ^ crcPoly
		} else {
			b >>= 1
		}
	}
	return p
}

// crcX2n[k] = x^(2^k) modulo the polynomial.
var crcX2n = func() [3 + 64]uint32 {
	var t [3 + 64]uint32
	t[0] = 1 << 30 // x^1
	for k := 1; k < len(t); k++ {
		t[k] = crcMulMod(t[k-1], t[k-1])
	}
	return t
}()

// crcShift returns x^(8*n) modulo the polynomial.
func crcShift(n uint64) uint32 {
	p := uint32(1) << 31 // x^0
	k := 3               // 8*n = n * 2^3
	for n != 0 {
		if n&1 != 0 {
			p = crcMulMod(crcX2n[k], p)
		}
		n >>= 1
		k++
	}
	return p
}

// crcCombine returns the CRC of A||B from crcA, crcB and len(B).
func crcCombine(crcA, crcB uint32, lenB uint64) uint32 {
	return crcMulMod(crcShift(lenB), crcA) ^ crcB
}
