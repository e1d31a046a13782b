#include "ReproducibleSum.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "ParallelRanges.h"

namespace faiss_gmm {

namespace {

constexpr double kTwo32 = 4294967296.0;       // 2^32
constexpr double kTwoM32 = 1.0 / 4294967296.0; // 2^-32
/// Limbs receive values below 2^32 per addition: after 2^20 additions they are
/// below 2^52, so a merge of two such states stays below 2^53 (exact).
constexpr int64_t kAdditionsBeforeCarry = int64_t(1) << 20;
/// Limbs per piece of the large passes on threads (256 KiB, ~25 µs of memory traffic, against
/// ~1 µs to hand a piece to a polling worker of the pool, ParallelRanges.h): at K = 1024, d = 128
/// spherical (532K limbs) add_limbs() makes 16 pieces, which the GPU's EM iteration (~2 ms per
/// million rows) waits for (bench/results/gpu_reproducible_sums.md, run 8).
constexpr int64_t kLimbsPerPiece = int64_t(1) << 15;
/// Values per piece of values() (~2 ns each in vector lanes: ~16 µs a piece): result() at
/// K = 1024, d = 128 makes 16 pieces too.
constexpr int64_t kValuesPerPiece = int64_t(1) << 13;
constexpr int kExactMinExponent = ExactSums::kMinExponent;

/// Carries limbs[0..count) (stride apart) upward so that all but the top one
/// lie in [0, 2^32): a canonical form of the same exact value.
inline void carry_up(double* limbs, int count, size_t stride) {
    for (int j = 0; j + 1 < count; j++) {
        double& l = limbs[size_t(j) * stride];
        const double c = std::floor(l * kTwoM32);
        l -= c * kTwo32;
        limbs[size_t(j + 1) * stride] += c;
    }
}

} // namespace

int scale_exponent_for(double bound) {
    if (!(bound > 0)) return 0;
    if (!std::isfinite(bound)) throw std::invalid_argument("scale_exponent_for: the bound is not finite");
    int e = 0;
    const double m = std::frexp(bound, &e); // bound = m · 2^e, m in [0.5, 1)
    return m == 0.5 ? e - 1 : e;
}

// ---- ExactSums ----

void ExactSums::resize(size_t n) {
    n_ = n;
    limbs_.assign(n * kLimbs, 0.0);
    pending_ = 0;
}

void ExactSums::clear() {
    std::fill(limbs_.begin(), limbs_.end(), 0.0);
    pending_ = 0;
}

void ExactSums::add(size_t i, double v) {
    if (v == 0) return;
    if (!std::isfinite(v)) throw std::invalid_argument("ExactSums: a value to add is not finite");
    int e = 0;
    const double m = std::frexp(v, &e);             // v = m · 2^e, 0.5 <= |m| < 1
    const double mantissa = std::ldexp(m, 53);      // an integer, |mantissa| < 2^53
    const int p = e - 53 - kExactMinExponent;       // v = mantissa · 2^(p + kExactMinExponent)
    const int limb = p >> 5;
    const double x = std::ldexp(mantissa, p & 31);  // exact: 53 bits shifted, below 2^85
    const double a = std::trunc(x * kTwoM32);
    const double b = std::trunc(a * kTwoM32);
    double* l = limbs_.data() + i * kLimbs + limb;
    l[0] += x - a * kTwo32; // each part below 2^32 in magnitude, exact
    l[1] += a - b * kTwo32;
    l[2] += b;
    if (++pending_ >= kAdditionsBeforeCarry) normalize();
}

void ExactSums::add(const double* values) {
    for (size_t i = 0; i < n_; i++) add(i, values[i]);
}

void ExactSums::normalize() {
    for (size_t i = 0; i < n_; i++) carry_up(limbs_.data() + i * kLimbs, kLimbs, 1);
    pending_ = 0;
}

void ExactSums::merge(const ExactSums& other) {
    if (other.n_ != n_) throw std::invalid_argument("ExactSums::merge: sizes differ");
    normalize();
    for (size_t t = 0; t < limbs_.size(); t++) limbs_[t] += other.limbs_[t];
    normalize();
}

void ExactSums::add_limbs(const int64_t* limbs) {
    normalize(); // every limb below 2^32, so one addition below 2^52 stays exact
    for (size_t t = 0; t < limbs_.size(); t++) limbs_[t] += double(limbs[t]);
    normalize();
}

double ExactSums::value(size_t i) const {
    double l[kLimbs];
    std::copy(limbs_.begin() + i * kLimbs, limbs_.begin() + (i + 1) * kLimbs, l);
    carry_up(l, kLimbs, 1);
    // Now every limb but the top one is in [0, 2^32), and the top one carries
    // the sign: a negative sum is turned into its magnitude first, so that the
    // limbs are not a huge negative top plus large positive lower limbs.
    const bool negative = l[kLimbs - 1] < 0;
    if (negative) {
        for (double& v : l) v = -v;
        carry_up(l, kLimbs, 1);
    }
    double r = 0;
    for (int j = kLimbs - 1; j >= 0; j--) r += std::ldexp(l[j], 32 * j + kExactMinExponent);
    return negative ? -r : r;
}

// ---- FixedPointSums ----

namespace {

/// A value's limbs l0..l3 (units of its grid) combined from the smallest and rounded once, once
/// in canonical form (limbs 1..3 in [0, 2^32)).
inline double combined(double l0, double l1, double l2, double l3) {
    return l0 + (l1 + (l2 + l3 * kTwoM32) * kTwoM32) * kTwoM32;
}

/// The value of any limbs: put in canonical form (carries from limb 3 up to limb 0, as
/// normalize()), then combined. The definition the vector lanes below reproduce.
inline double grid_value(double l0, double l1, double l2, double l3) {
    double c = std::floor(l3 * kTwoM32);
    l3 -= c * kTwo32;
    l2 += c;
    c = std::floor(l2 * kTwoM32);
    l2 -= c * kTwo32;
    l1 += c;
    c = std::floor(l1 * kTwoM32);
    l1 -= c * kTwo32;
    l0 += c;
    return combined(l0, l1, l2, l3);
}

/// 1.5 · 2^84: (v + kRoundTo2p32) − kRoundTo2p32 is v rounded to the nearest multiple of 2^32
/// for |v| < 2^83 (the sum lands in [2^84, 2^85), where the doubles are those multiples).
constexpr double kRoundTo2p32 = 0x1.8p84;
/// 2^31 − 1/2: for an integer x, x − kBelowHalf2p32 is never a multiple of 2^32 plus 2^31 (no
/// ties), and rounds to the nearest multiple of 2^32 as 2^32 · floor(x · 2^-32).
constexpr double kBelowHalf2p32 = 2147483647.5;
/// The bits of 2^51: limbs 1..3 below it in magnitude keep every step of
/// grid_value_of_small_limbs exact (the carries are then below 2^20).
constexpr uint64_t kSmallLimbBits = uint64_t(1023 + 51) << 52;
/// The sign bit of a double's bits.
constexpr uint64_t kSignBit = uint64_t(1) << 63;

inline uint64_t bits_of(double x) {
    uint64_t u;
    std::memcpy(&u, &x, sizeof u);
    return u;
}

/// 2^32 · floor(x · 2^-32) for an integer-valued x below 2^52 − 2^32 in magnitude: x − (2^31 − 1/2)
/// (exact: a half-integer below 2^52) rounded to the nearest multiple of 2^32, with no ties. Never
/// −0. One rounding, in vector lanes (see below).
inline double multiple_of_2p32_below(double x) {
    return ((x - kBelowHalf2p32) + kRoundTo2p32) - kRoundTo2p32;
}

/// grid_value() for limbs 1..3 below 2^51 in magnitude, the same bits, in arithmetic the
/// vectorizer takes at the baseline SSE2 (floor is a library call without SSE4.1, double ↔ int64
/// has no vector instruction before AVX-512, and GCC will not if-convert a comparison of doubles
/// under -ftrapping-math), with one rounding per carry in its chain of dependent operations:
/// a = multiple_of_2p32_below(x), the carry times 2^32. Every step is exact (integers and
/// half-integers below 2^52, products by powers of two), so each limb and carry equals
/// grid_value's but for the sign of a zero, which cannot reach the result: limbs 1 and 2 and the
/// carries end never −0 here (−0 + +0 = +0), as grid_value's limbs 1..3 end never −0, so the
/// combined sum is −0 in neither, and a signed zero added to a non-zero value or scaled by a power
/// of two changes no other bits. (Round-to-nearest mode, as everywhere.)
inline double grid_value_of_small_limbs(double l0, double l1, double l2, double l3) {
    double a = multiple_of_2p32_below(l3);
    l3 -= a;
    l2 += a * kTwoM32;
    a = multiple_of_2p32_below(l2);
    l2 -= a;
    l1 += a * kTwoM32;
    a = multiple_of_2p32_below(l1);
    l1 -= a;
    l0 += a * kTwoM32;
    return combined(l0, l1, l2, l3);
}

/// Whether limbs 1..live − 1 of values [first, first + count) are all below 2^51 in magnitude:
/// |l| < 2^51 iff (bits(l) without its sign) − bits(2^51) borrows, i.e. has its sign bit set.
bool small_limbs(const double* limbs, size_t n, int live, size_t first, size_t count) {
    uint64_t small = kSignBit;
    for (int j = 1; j < live; j++) {
        const double* l = limbs + size_t(j) * n + first;
#pragma omp simd reduction(& : small)
        for (size_t i = 0; i < count; i++) small &= (bits_of(l[i]) & ~kSignBit) - kSmallLimbBits;
    }
    return small & kSignBit;
}

/// normalize() for values [first, first + count): carries limb live − 1 → … → 1 → 0 in place, so
/// that limbs 1.. lie in [0, 2^32) and limb 0 (the integer part) keeps the sign. In vector lanes
/// while limbs 1.. are below 2^51 (a carry of up to 2^19 keeps them below 2^52 − 2^32, exact),
/// by std::floor otherwise; the same limbs but for the sign of a zero limb, which values() does
/// not read (see grid_value_of_small_limbs).
void carry_limbs(double* limbs, size_t n, int live, size_t first, size_t count) {
    const bool lanes = small_limbs(limbs, n, live, first, count);
    for (int j = live - 1; j >= 1; j--) {
        double* __restrict lo = limbs + size_t(j) * n + first;
        double* __restrict hi = lo - n;
        if (lanes) {
#pragma omp simd
            for (size_t i = 0; i < count; i++) {
                const double a = multiple_of_2p32_below(lo[i]);
                lo[i] -= a;
                hi[i] += a * kTwoM32;
            }
        } else {
            for (size_t i = 0; i < count; i++) {
                const double c = std::floor(lo[i] * kTwoM32);
                lo[i] -= c * kTwo32;
                hi[i] += c;
            }
        }
    }
}

/// out[0, count) = the values first .. first + count − 1 of limb-major limbs (n per limb), times
/// scale, of which the first kLive limbs are stored (the others are zero: a GPU's 3): in vector
/// lanes (~2.3 ns a value with 4 limbs on the dev VM's SSE2, the range check included, against
/// ~6.5 for the scalar carries with a branch and int64 conversions) while every limb 1..3 is
/// below 2^51 (as sums of up to 2^19 additions of 32-bit limbs are), else by grid_value() (limbs
/// set through limbs()). bench/results/reproducible_sum.md has the figures.
template <int kLive>
void grid_values(const double* limbs, size_t n, size_t first, size_t count, double scale, double* out) {
    const double* l[FixedPointSums::kLimbs] = {};
    for (int j = 0; j < kLive; j++) l[j] = limbs + size_t(j) * n + first;
    const auto limb = [&](int j, size_t i) { return j < kLive ? l[j][i] : 0.0; };
    // |l| < 2^51 iff (bits(l) without its sign) − bits(2^51) borrows, i.e. has its sign bit set.
    uint64_t small = kSignBit;
#pragma omp simd reduction(& : small)
    for (size_t i = 0; i < count; i++) {
        for (int j = 1; j < kLive; j++) small &= (bits_of(l[j][i]) & ~kSignBit) - kSmallLimbBits;
        out[i] = grid_value_of_small_limbs(limb(0, i), limb(1, i), limb(2, i), limb(3, i)) * scale;
    }
    if (small & kSignBit) return;
    for (size_t i = 0; i < count; i++) out[i] = grid_value(limb(0, i), limb(1, i), limb(2, i), limb(3, i)) * scale;
}

} // namespace

void FixedPointSums::resize(size_t n) {
    n_ = n;
    runs_.clear();
    if (n > 0) runs_.push_back(Run{0, n, 1.0, 1.0});
    limbs_.assign(n * kLimbs, 0.0);
    pending_ = 0;
    live_ = kLimbs;
}

void FixedPointSums::clear() {
    live_ = 0;
    pending_ = 0;
}

std::vector<double>& FixedPointSums::materialized() {
    if (live_ < kLimbs) {
        double* zeros = limbs_.data() + size_t(live_) * n_;
        parallel_ranges(int64_t(kLimbs - live_) * int64_t(n_), kLimbsPerPiece, [&](int64_t a, int64_t b) {
            std::fill(zeros + a, zeros + b, 0.0);
        });
        live_ = kLimbs;
    }
    return limbs_;
}

void FixedPointSums::set_scale(size_t begin, size_t end, int exponent) {
    if (begin > end || end > n_) throw std::out_of_range("FixedPointSums::set_scale: range outside the sums");
    if (begin == end) return;
    // The runs before begin and after end keep their scales (cut at begin / end).
    std::vector<Run> runs;
    for (const Run& r : runs_) {
        if (r.begin < begin) runs.push_back(Run{r.begin, std::min(r.end, begin), r.scale, r.inv_scale});
    }
    runs.push_back(Run{begin, end, std::ldexp(1.0, exponent), std::ldexp(1.0, -exponent)});
    for (const Run& r : runs_) {
        if (r.end > end) runs.push_back(Run{std::max(r.begin, end), r.end, r.scale, r.inv_scale});
    }
    runs_ = std::move(runs);
}

void FixedPointSums::add(const double* values) {
    add_segment(0, values, n_);
    done();
}

void FixedPointSums::done() {
    if (++pending_ >= kAdditionsBeforeCarry) normalize();
}

void FixedPointSums::add_segment(size_t begin, const double* values, size_t count) {
    if (begin + count > n_) throw std::out_of_range("FixedPointSums::add_segment: past the end of the sums");
    materialized();
    const size_t end = begin + count;
    for (const Run& r : runs_) {
        const size_t b = std::max(begin, r.begin), e = std::min(end, r.end);
        if (b >= e) continue;
        double* __restrict l0 = limbs_.data() + b;
        double* __restrict l1 = l0 + n_;
        double* __restrict l2 = l1 + n_;
        double* __restrict l3 = l2 + n_;
        const double* __restrict v = values + (b - begin);
        const double inv = r.inv_scale;
        // q − trunc(q) is exact, and so are the scalings by powers of two: every
        // limb receives an exact integer, and what is left below 2^-96 is dropped.
#pragma omp simd
        for (size_t i = 0; i < e - b; i++) {
            double q = v[i] * inv;
            const double t0 = std::trunc(q);
            q = (q - t0) * kTwo32;
            const double t1 = std::trunc(q);
            q = (q - t1) * kTwo32;
            const double t2 = std::trunc(q);
            q = (q - t2) * kTwo32;
            l0[i] += t0;
            l1[i] += t1;
            l2[i] += t2;
            l3[i] += std::trunc(q);
        }
    }
}

void FixedPointSums::normalize() {
    pending_ = 0;
    // Each value on its own: pieces on threads (an MPI fit normalizes every limb twice per EM
    // iteration, in flat() and from_flat()). The limbs not live are zero: nothing to carry.
    if (live_ <= 1) return;
    double* limbs = limbs_.data();
    parallel_ranges(int64_t(n_), kValuesPerPiece, [&](int64_t a, int64_t b) {
        carry_limbs(limbs, n_, live_, size_t(a), size_t(b - a));
    });
}

void FixedPointSums::merge(const FixedPointSums& other) {
    if (other.n_ != n_) throw std::invalid_argument("FixedPointSums::merge: sizes differ");
    if (other.live_ == 0) return;
    normalize();
    materialized();
    for (size_t t = 0; t < size_t(other.live_) * n_; t++) limbs_[t] += other.limbs_[t];
    normalize();
}

void FixedPointSums::add_limbs(const int32_t* limbs, int nlimbs) {
    if (nlimbs < 1 || nlimbs > kLimbs) {
        throw std::invalid_argument("FixedPointSums::add_limbs: " + std::to_string(nlimbs) +
                                    " limbs per value, expected 1 to " + std::to_string(kLimbs));
    }
    // Exact additions (integers below 2^32 each), so any split gives the same limbs. Threads
    // for large sums (full covariances: K·d(d+1)/2 values, 8.4M at K = 1024, d = 128): the pass
    // is memory-bound (bench/results/gpu_reproducible_sums.md). Limbs not live (zero, not
    // stored: after clear()) are written instead of added to, and the ones not given stay so.
    const int64_t given = int64_t(nlimbs) * int64_t(n_);
    const int64_t added = int64_t(std::min(live_, nlimbs)) * int64_t(n_);
    double* sums = limbs_.data();
    parallel_ranges(given, kLimbsPerPiece, [&](int64_t a, int64_t b) {
        const int64_t m = std::clamp(added, a, b);
        for (int64_t t = a; t < m; t++) sums[t] += double(limbs[t]);
        for (int64_t t = m; t < b; t++) sums[t] = double(limbs[t]);
    });
    live_ = std::max(live_, nlimbs);
    done();
}

double FixedPointSums::value(size_t i) const {
    // The run holding i: the last one that begins at or before it.
    const auto run = std::upper_bound(runs_.begin(), runs_.end(), i,
                                      [](size_t v, const Run& r) { return v < r.begin; }) - 1;
    double l[kLimbs];
    for (int j = 0; j < kLimbs; j++) l[j] = j < live_ ? limbs_[size_t(j) * n_ + i] : 0.0;
    return grid_value(l[0], l[1], l[2], l[3]) * run->scale;
}

void FixedPointSums::values(size_t begin, size_t end, double* out) const {
    if (begin > end || end > n_) throw std::out_of_range("FixedPointSums::values: range outside the sums");
    if (live_ == 0) {
        std::fill(out, out + (end - begin), 0.0); // grid_value of zeros: +0
        return;
    }
    // Each value on its own (no carries between values), so pieces on threads give the same bits.
    // The runs are disjoint and in order (set_scale): each piece walks them from its first value's
    // run instead of searching per value.
    parallel_ranges(int64_t(end - begin), kValuesPerPiece, [&](int64_t a, int64_t b) {
        const size_t first = begin + size_t(a), last = begin + size_t(b);
        auto run = std::upper_bound(runs_.begin(), runs_.end(), first,
                                    [](size_t v, const Run& r) { return v < r.begin; }) - 1;
        for (size_t i = first; i < last; ++run) {
            const size_t stop = std::min(last, run->end);
            const size_t count = stop - i;
            double* o = out + (i - begin);
            switch (live_) {
                case 1: grid_values<1>(limbs_.data(), n_, i, count, run->scale, o); break;
                case 2: grid_values<2>(limbs_.data(), n_, i, count, run->scale, o); break;
                case 3: grid_values<3>(limbs_.data(), n_, i, count, run->scale, o); break;
                default: grid_values<4>(limbs_.data(), n_, i, count, run->scale, o); break;
            }
            i = stop;
        }
    });
}

} // namespace faiss_gmm
