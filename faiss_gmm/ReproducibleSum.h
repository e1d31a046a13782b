// Order-independent sums of doubles, so that EM gives bit-identical models for
// any number of ranks, threads and chunk sizes.
//
// Floating-point addition is not associative: summing the same partial
// statistics in another order (2 threads instead of 1, 3 ranks instead of 2)
// changes the last bits, and EM amplifies them over iterations. The fix here is
// the pre-rounding idea of Demmel & Nguyen ("Fast reproducible floating-point
// summation", ARITH 2013): every value is cut at fixed powers of two into
// integer "limbs" before it is added, and integers add exactly in any order.
// Limbs are stored in doubles (integers up to 2^53 are exact there), so a sum
// travels through the same double allreduce as before, still exactly.
//
// Two shapes:
//   ExactSums       any double, no truncation at all: 72 limbs of 32 bits span
//                   the whole double range. For a few values (the log-likelihood,
//                   the data moments: O(d)).
//   FixedPointSums  a value v with a scale s (a power of two, the same on every
//                   rank) is kept as v/s = l0 + l1·2^-32 + l2·2^-64 + l3·2^-96,
//                   truncated toward zero below 2^-96·s. Four limbs per value:
//                   for the K·d statistics. Truncation is a function of v and s
//                   alone, so it cannot depend on the order either.
//
// Both give sums that are a deterministic function of the multiset of values
// added. What the caller must make deterministic is the values themselves: the
// trainer adds one partial per fixed block of kReproducibleBlockRows training
// rows (blocks aligned to the global row index), computed by one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace faiss_gmm {

/// Rows per block whose statistics are computed on their own and then added
/// exactly. A block's deposit reads and writes about 6·K·(d+2) doubles, while
/// its two products cost 4·rows·K·d flops: measured (bench_reproducible_sum,
/// 2-core VM, dense responsibilities) 14 % of an E-step at 1024 rows, hence 4096.
constexpr int64_t kReproducibleBlockRows = 4096;

/// Exact sums of n doubles (no rounding until value()). Deposits are a few
/// operations; memory 72 doubles per value.
class ExactSums {
  public:
    static constexpr int kLimbs = 72;
    /// Limb j holds units of 2^(32 j + kMinExponent). The smallest subnormal
    /// 2^-1074 has its 53-bit mantissa at 2^-1126 >= 2^-1152, and the largest
    /// double's top limb plus carries stays below limb 72. (Public: the CUDA
    /// E-step deposits values on the same limbs, gpu/detail/ReproducibleKernels.cuh.)
    static constexpr int kMinExponent = -1152;
    explicit ExactSums(size_t n = 0) { resize(n); }
    void resize(size_t n);
    size_t size() const { return n_; }
    void clear();
    /// Adds values[0, size()); values must be finite.
    void add(const double* values);
    void add(size_t i, double v);
    void merge(const ExactSums& other);
    /// Adds integer limbs (kLimbs per value, value-major, in units of limb j)
    /// computed elsewhere (a GPU): exact while each is below 2^52 in magnitude.
    void add_limbs(const int64_t* limbs);
    /// The exact sums rounded to double (a deterministic function of the
    /// exact sums: the same bits whatever the order of the additions).
    double value(size_t i) const;
    /// The limbs, for an allreduce (sum); call normalize() after one.
    std::vector<double>& limbs() { return limbs_; }
    void normalize();

  private:
    size_t n_ = 0;
    int64_t pending_ = 0; // additions since the last normalize()
    std::vector<double> limbs_; // value-major: limbs_[i * kLimbs + j]
};

/// Sums of n doubles on fixed grids, one scale (a power of two) per value.
/// Exact for values that are multiples of 2^-96·scale; others are truncated
/// toward zero there (relative error 2^-96 of the scale per value added).
/// The integer limb holds |sum| / scale up to 2^53: scale is meant to bound
/// one row's contribution, and the total is then bounded by the row count.
class FixedPointSums {
  public:
    static constexpr int kLimbs = 4;
    FixedPointSums() = default;
    explicit FixedPointSums(size_t n) { resize(n); }
    void resize(size_t n);
    size_t size() const { return n_; }
    /// Zero sums (the limbs are zeroed when next read or added to, but by add_limbs() and values()).
    void clear();
    /// Values [begin, end) use scale 2^exponent.
    void set_scale(size_t begin, size_t end, int exponent);
    void add(const double* values);
    /// Adds values[0, count) to the sums [begin, begin + count). Call done()
    /// once after the segments of one partial (it counts toward the carries).
    void add_segment(size_t begin, const double* values, size_t count);
    void done();
    void merge(const FixedPointSums& other);
    /// Adds limbs computed elsewhere (a GPU) on this object's grids: the first nlimbs limbs
    /// (1 to kLimbs; the others add 0), limb-major like limbs(), as 32-bit integers of
    /// either sign (a GPU's balanced limbs, gpu/detail/ReproducibleLimbs.h). Any 32-bit
    /// integer is below 2^32 in magnitude, so this counts as one partial (done()). int32,
    /// not doubles or int64: 12 bytes per value for the GPU to download, and int32 →
    /// double converts in vector instructions (int64 → double does not before AVX-512).
    void add_limbs(const int32_t* limbs, int nlimbs);
    double value(size_t i) const;
    /// out[0, end − begin) = value(begin .. end − 1), the same bits, in one pass (no search for
    /// each value's scale: StatsAccumulator::result reads every value once per EM iteration).
    void values(size_t begin, size_t end, double* out) const;
    std::vector<double>& limbs() { return materialized(); }
    void normalize();

  private:
    /// The limbs, zeroed first where clear() only marked them zero.
    std::vector<double>& materialized();
    size_t n_ = 0;
    int64_t pending_ = 0;
    /// Limbs [live_, kLimbs) of every value are zero without being stored (their memory is
    /// stale). clear() only sets live_ = 0: the next add_limbs() writes its limbs in place of
    /// adding them and leaves the ones it was not given unwritten (a GPU gives 3 of the 4), and
    /// values() then reads and carries only the live ones. This spares a pass that would zero
    /// 32 bytes per value first, then a quarter of the writes and reads (a GPU call's accumulator
    /// is cleared once per EM iteration and then takes whole limb arrays). Other uses store the
    /// zeros first (materialized()).
    int live_ = kLimbs;
    /// Runs of values sharing one scale, in order, covering [0, n_): a few (one per
    /// set_scale()), where a scale per value would add two doubles to the four limbs.
    struct Run {
        size_t begin, end;
        double scale, inv_scale;
    };
    std::vector<Run> runs_;
    std::vector<double> limbs_; // limb-major: limbs_[j * n_ + i], so add() vectorizes
};

/// The exponent e of the smallest power of two 2^e >= bound (0 for bounds <= 1
/// that are not positive, so a zero bound still gives a usable scale).
int scale_exponent_for(double bound);

} // namespace faiss_gmm
