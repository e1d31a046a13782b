// The sufficient statistics of one E-step. They are sums over rows, so chunks,
// threads, GPUs and processes combine by adding them (add(), or an allreduce of
// the flat() view). Nothing here depends on FAISS.
#pragma once

#include <cstdint>
#include <vector>

#include "GmmParams.h"
#include "ReproducibleSum.h"

namespace faiss_gmm {

struct GmmModel;

/// Statistics of rows x_n (in the E-step's frame) under the E-step's model, with
/// responsibilities r_nk = p(k | x_n):
struct SufficientStats {
    int64_t K = 0;
    int64_t d = 0;
    CovarianceType covariance_type = CovarianceType::Spherical;

    double n = 0;                ///< number of rows accumulated
    double loglik = 0;           ///< Σ_n log p(x_n)
    std::vector<double> nk;      ///< K:      N_k = Σ_n r_nk
    std::vector<double> sum_x;   ///< K * d:  Σ_n r_nk x_n
    /// Second moment about the E-step model's means μ_k (not the new ones, which
    /// avoids the cancellation of Σ r x² − N μ² in the M-step):
    ///   spherical: K entries      Σ_n r_nk ‖x_n − μ_k‖²
    ///   diagonal:  K * d entries  Σ_n r_nk (x_nj − μ_kj)²
    ///   full:      K * d(d+1)/2   Σ_n r_nk (x_ni − μ_ki)(x_nj − μ_kj), i <= j, the upper
    ///              triangle packed row by row (sq_index); half the memory of K·d²
    std::vector<double> sum_sq;

    /// Second-moment values per component: 1, d, or d(d+1)/2 (full).
    static int64_t nsq_of(CovarianceType type, int64_t d) {
        return type == CovarianceType::Spherical ? 1 : type == CovarianceType::Diagonal ? d : d * (d + 1) / 2;
    }
    /// Full: where (i, j), i <= j, of a component's second moment is in its packed triangle.
    static int64_t sq_index(int64_t i, int64_t j, int64_t d) { return i * d - i * (i - 1) / 2 + (j - i); }

    SufficientStats() = default;
    SufficientStats(int64_t K, int64_t d, CovarianceType type, bool with_second_moments = true) {
        reset(K, d, type, with_second_moments);
    }
    /// Zeroed statistics of this shape. with_second_moments = false leaves sum_sq empty:
    /// a partial whose second moments go to a StatsAccumulator component by component
    /// (add_second_moment), not held K·d(d+1)/2 at a time.
    void reset(int64_t K, int64_t d, CovarianceType type, bool with_second_moments = true);
    /// reset() without the zeros: this shape, the values left as they were (new ones zero), for
    /// a caller that writes every value (StatsAccumulator::result) and need not pay a pass first.
    void resize(int64_t K, int64_t d, CovarianceType type, bool with_second_moments = true);
    void clear(); ///< zero every value, keep the shape
    /// Adds other (same shape, else std::invalid_argument).
    void add(const SufficientStats& other);

    /// All values in one array (n, loglik, nk, sum_x, sum_sq), for reductions
    /// (MPI_Allreduce, NCCL, host sums); from_flat() is the inverse.
    std::vector<double> flat() const;
    void from_flat(const double* values, size_t count);
};

/// SufficientStats summed so that the result does not depend on the order of
/// the partials (threads, chunks, ranks): see ReproducibleSum.h. N_k, Σ r x and
/// the second moments go to fixed-point grids scaled by per-row bounds (set by
/// set_row_bounds() before the first add(), the same on every rank); the
/// log-likelihood to an exact sum; the row count is an integer and adds exactly.
class StatsAccumulator {
  public:
    StatsAccumulator() = default;
    /// with_second_moments = false holds N_k and Σ r x only (add_second_moment and add_limbs
    /// are refused; result() leaves sum_sq empty): walk 1 of the trainer's two walks for full
    /// covariances (EStep::begin_listing), whose second moments are summed a group of
    /// components at a time, each group in an accumulator of its own.
    StatsAccumulator(int64_t K, int64_t d, CovarianceType type, bool with_second_moments = true);
    int64_t K() const { return K_; }
    int64_t d() const { return d_; }
    CovarianceType covariance_type() const { return type_; }
    bool with_second_moments() const { return with_sq_; }
    /// Bounds of one row's contribution: |x_j| <= x_bound for the rows as the
    /// E-step sees them, and r·(second-moment term) <= sq_bound. They only place
    /// the grids (2^-96 of the bound per value added is what truncation drops);
    /// a larger value still adds exactly while the total stays below 2^53 bounds.
    void set_row_bounds(double x_bound, double sq_bound);
    /// The grids' exponents set_row_bounds() chose (scale 2^e): N_k's is 0, then
    /// Σ r x's and the second moments'. For a backend that computes limbs itself.
    int x_exponent() const { return x_exp_; }
    int sq_exponent() const { return sq_exp_; }
    void clear();
    /// Adds a partial (same shape). Its values must be finite.
    void add(const SufficientStats& partial);
    /// Adds a partial's row count, log-likelihood, N_k and Σ r x; its sum_sq is not
    /// read (it may be empty: SufficientStats::reset without second moments).
    void add_first_moments(const SufficientStats& partial);
    /// Adds one component's second moment (SufficientStats::nsq_of values, as in
    /// sum_sq), e.g. over one reproducible block: the same grids as add(), so the sums
    /// stay a function of the values added, whatever their order or grouping.
    void add_second_moment(int64_t k, const double* values);
    void merge(const StatsAccumulator& other);
    /// Adds sums computed elsewhere as limbs (a GPU: the CUDA E-step's
    /// accumulate_reproducible): `rows` rows, the log-likelihood as
    /// ExactSums::kLimbs integer limbs (each below 2^52), and nk, sum_x, sum_sq on
    /// this accumulator's grids as FixedPointSums::add_limbs() takes them (the first
    /// value_nlimbs limbs, limb-major, 32-bit integers).
    void add_limbs(int64_t rows, const int64_t* loglik_limbs, const int32_t* value_limbs, int value_nlimbs);
    /// Values on the fixed-point grids (K + K·d + K·nsq): the length of one limb of add_limbs().
    size_t nvalues() const { return values_.size(); }
    /// The limbs of all sums, for an allreduce (sum); then from_flat().
    std::vector<double> flat();
    void from_flat(const std::vector<double>& values);
    /// The sums, rounded to double (the same bits whatever the order of add()).
    void result(SufficientStats& out) const;

  private:
    void check_shape(const SufficientStats& partial, const char* what) const;
    void add_first_moment_segments(const SufficientStats& partial);
    int64_t K_ = 0, d_ = 0;
    CovarianceType type_ = CovarianceType::Spherical;
    bool with_sq_ = true;
    double n_ = 0;          // a row count: integers add exactly in double
    ExactSums loglik_{1};   // the log-likelihood's magnitude has no useful bound
    FixedPointSums values_; // nk (K), sum_x (K·d), sum_sq (K or K·d)
    int x_exp_ = 0, sq_exp_ = 0; // the grids of sum_x and sum_sq (set_row_bounds)
};

/// Float64 brute-force E-step, straight from GmmModel::log_joint: the reference
/// the fast backends are tested against. Rows are used as x − center (center may
/// be nullptr). O(n·K·d) in double; meant for tests and small inputs.
void reference_estep(
        const GmmModel& model,
        const float* center,
        int64_t n,
        const float* x,
        SufficientStats& stats);

} // namespace faiss_gmm
