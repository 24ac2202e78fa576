// Package eif reads, writes, validates, measures and signs Enclave Image
// Format (EIF) v4 files, the boot images of AWS Nitro Enclaves (and of QEMU's
// nitro-enclave machine).
//
// # Layout
//
// An EIF is a 548-byte big-endian header followed by sections. Each section
// is a 12-byte section header (type, flags, data size) and its data. The
// header holds the file offset of every section header, every data size and
// a CRC-32 (IEEE) over header bytes [0,544) followed by every section header
// and data, in section-table order. This package writes the reference
// order — kernel, cmdline, metadata, ramdisk..., signature — contiguously, and
// reads any order AWS and QEMU accept (see [NewFile] for the rules).
//
// # Measurements
//
// PCRn = SHA384(zero48 || SHA384(content)) over section data only:
// PCR0 = kernel || cmdline || all ramdisks, PCR1 = kernel || cmdline ||
// ramdisk[0] (the bootstrap ramdisk), PCR2 = ramdisk[1:] (the application),
// PCR8 = SHA384(zero48 || SHA384(DER of the signing certificate)).
//
// # Streaming
//
// [Writer] makes one pass over its inputs: every byte is written to the
// output, added to the CRC and hashed for the PCRs while it streams, so the
// memory used does not depend on the size of the ramdisks. Section sizes need
// not be known in advance: each section header is written once its data is
// complete and the file header is written last, at offset 0 of the output
// (an [io.WriterAt], typically an *os.File). Because the CRC covers the
// header first but the header is only known at the end, the CRC of the
// sections is computed while streaming and combined with the header's CRC
// afterwards (the zlib crc32_combine construction).
//
// Hashing for PCR0 runs on its own goroutine, in parallel with hashing for
// PCR1/PCR2, the CRC and the write, so that building an image costs about
// one SHA-384 pass on two cores. [File.Verify] uses the same machinery.
//
// # Signing
//
// A signed EIF carries a signature section: a CBOR array with one map
// {"signing_certificate": PEM, "signature": COSE_Sign1} whose byte strings are
// encoded as CBOR arrays of unsigned integers (Rust serde's Vec<u8>). The
// COSE_Sign1 is untagged and signs {"register_index": 0, "register_value":
// PCR0}. See [Signer] and [ParseSignature].
package eif
