// CRC-32C (Castagnoli, the checksum of iSCSI, ext4 and SSE4.2's crc32
// instruction), for the checksum footer of saved indexes (gmm_io, issue 13.3).
// Detects every error burst up to 32 bits (so any one damaged byte) and all but
// 2^-32 of random damage. No dependency (core); uses the SSE4.2 instruction
// when the CPU has it, a slice-by-8 table otherwise (same results).
#pragma once

#include <cstddef>
#include <cstdint>

namespace faiss_gmm {

/// Continues a CRC-32C: crc32c_extend(crc32c_extend(0, a), b) == CRC of a then b.
/// crc32c_extend(0, "123456789", 9) == 0xE3069283 (the standard check value).
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t size);

/// The portable table version (crc32c_extend uses it without SSE4.2); for tests.
uint32_t crc32c_extend_portable(uint32_t crc, const void* data, size_t size);

} // namespace faiss_gmm
