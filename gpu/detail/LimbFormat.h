// The device format of the CUDA E-step's reproducible sums (ReproducibleLimbs.h has the design)
// as plain integer and double arithmetic, on the host and the device: a block partial on its
// grid as two integers (grid_limbs), and the cut of their sums into the three 32-bit limbs that
// FixedPointSums::add_limbs takes (cut_limbs). Host code too, so that
// tests/test_reproducible_sum.cpp checks the arithmetic without a GPU.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define FAISS_GMM_HOST_DEVICE __host__ __device__
#else
#define FAISS_GMM_HOST_DEVICE
#endif

namespace faiss_gmm::gpu::detail {

/// Integers per value on the device (hi, lo) and 32-bit limbs per value downloaded (L0, L1, L2).
constexpr int kDeviceLimbs = 2;
constexpr int kHostLimbs = 3;
/// Largest |v/s| of one partial: rows each below the grid's scale give at most the partial's
/// rows (4096 for a block, 65536 for a full-covariance group of 16); 64x headroom over that for
/// bounds that hold only roughly (the trainer's second-moment bound can be 4x short).
constexpr double kMaxPartialOverScale = 4194304.0; // 2^22
/// Rows of one reproducible piece (EStepCuda::accumulate_reproducible cuts longer calls on unit
/// boundaries): at most 2^12 partials of at least 4096 rows per value, so that the device's
/// integers cannot wrap (cut_limbs).
constexpr int64_t kMaxPieceRows = int64_t(1) << 24;

/// q = v / s (v on a grid of scale s) truncated toward zero to a multiple of 2^-64, as
/// q = (l[0] + l[1]·2^-40)·2^-24 with l[0] = trunc(q·2^24) (|l[0]| < 2^46) and |l[1]| < 2^40, both
/// of q's sign. Exact: q·2^24, x − trunc(x) (same sign, below 1: no rounding, unlike x − floor(x)
/// for a tiny negative x) and its scaling. False (and zeros) when q is not finite or
/// |q| ≥ kMaxPartialOverScale: the caller's grid cannot hold it.
FAISS_GMM_HOST_DEVICE inline bool grid_limbs(double q, long long l[kDeviceLimbs]) {
    if (!(fabs(q) < kMaxPartialOverScale)) { // (NaN too)
        l[0] = l[1] = 0;
        return false;
    }
    const double x = q * 16777216.0; // 2^24
    const double h = trunc(x);
    l[0] = (long long)h;
    l[1] = (long long)trunc((x - h) * 1099511627776.0); // 2^40
    return true;
}

/// The sums of at most 2^12 grid_limbs pairs (|hi| < 2^58, |lo| < 2^52: no wrap), i.e.
/// T = hi·2^40 + lo in units of 2^-64, cut as T = L0·2^64 + L1·2^32 + L2 with L1, L2 in
/// [−2^31, 2^31): each the low 32 bits of what is left, read as signed, so that the rest
/// carries upward exactly. out = {L0, L1, L2}. False when L0 does not fit 32 bits (|Σ q| ≥ 2^31:
/// the partials' bounds did not hold).
FAISS_GMM_HOST_DEVICE inline bool cut_limbs(long long hi, long long lo, int32_t out[kHostLimbs]) {
    const int32_t l2 = int32_t(uint32_t(uint64_t(lo)));
    const long long r = (lo - l2) >> 32;              // T = (hi·2^8 + r)·2^32 + L2, |r| ≤ 2^20
    const long long a = hi >> 24, b = hi & 0xFFFFFF;  // hi = a·2^24 + b (arithmetic shift), 0 ≤ b < 2^24
    const long long m = b * 256 + r;                  // hi·2^8 + r = a·2^32 + m, |m| < 2^33
    const int32_t l1 = int32_t(uint32_t(uint64_t(m)));
    const long long l0 = a + ((m - l1) >> 32);
    out[0] = int32_t(l0);
    out[1] = l1;
    out[2] = l2;
    return l0 >= -2147483647LL - 1 && l0 <= 2147483647LL;
}

} // namespace faiss_gmm::gpu::detail
