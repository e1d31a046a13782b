#include "em_steps.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "ReproducibleSum.h"
#include "kmeans_init.h"

namespace faiss_gmm::em {

namespace {

/// Copies the given rows of src, in its own element type, into `out`.
VectorBlock copy_rows(const VectorSource& src, const std::vector<int64_t>& rows, std::vector<uint8_t>& out) {
    const size_t row_bytes = size_t(src.d()) * element_size(src.type());
    out.resize(rows.size() * row_bytes);
    std::vector<uint8_t> scratch;
    for (size_t i = 0; i < rows.size(); i++) {
        VectorBlock b = src.read(rows[i], 1, scratch);
        std::copy(b.row(0), b.row(0) + row_bytes, out.data() + i * row_bytes);
    }
    return VectorBlock{out.data(), src.type(), int64_t(rows.size()), src.d()};
}

/// This rank's part of the data moments, summed so that the totals do not depend
/// on threads, chunks or ranks: per block of kReproducibleBlockRows rows, Σ x_j
/// and Σ x_j² in double, added exactly (sums: 2d values, Σ x then Σ x²), and the
/// per-dimension minimum and maximum. Checks every value is finite, naming the
/// first bad row and column.
struct LocalMoments {
    ExactSums sums;
    std::vector<double> min, max;
};

LocalMoments local_moments(const BlockAlignedRows& rows, int64_t d) {
    const int64_t R = kReproducibleBlockRows;
    if (rows.block_rows() % R != 0) { // (calls must start on these blocks too)
        throw std::logic_error("data_moments: the rows' blocks are not a multiple of kReproducibleBlockRows");
    }
    const int nt = omp_get_max_threads();
    std::vector<LocalMoments> per_thread(static_cast<size_t>(nt));
    for (LocalMoments& m : per_thread) {
        m.sums.resize(size_t(2 * d));
        m.min.assign(d, INFINITY);
        m.max.assign(d, -INFINITY);
    }
    std::vector<uint8_t> scratch;
    std::string error;
    for (int64_t c = 0; c < rows.ncalls(); c++) {
        const VectorBlock call = rows.call(c, scratch);
        const int64_t nblocks = (call.n + R - 1) / R;
#pragma omp parallel num_threads(nt)
        {
            LocalMoments& m = per_thread[size_t(omp_get_thread_num())];
            std::vector<float> row(d);
            std::vector<double> block(size_t(2 * d));
#pragma omp for schedule(dynamic, 1)
            for (int64_t b = 0; b < nblocks; b++) {
                const VectorBlock blk = call.slice(b * R, std::min(R, call.n - b * R));
                std::fill(block.begin(), block.end(), 0.0);
                for (int64_t i = 0; i < blk.n; i++) {
                    blk.row_to_float(i, row.data());
                    for (int64_t j = 0; j < d; j++) {
                        block[j] += row[j];
                        block[d + j] += double(row[j]) * row[j];
                        m.min[j] = std::min<double>(m.min[j], row[j]);
                        m.max[j] = std::max<double>(m.max[j], row[j]);
                    }
                }
                try {
                    // Sums in double of finite floats cannot overflow, so a non-finite
                    // sum means a NaN or infinite value (or a float64 beyond float32's
                    // range) in this block: only then is it scanned, to name the row.
                    bool finite = true;
                    for (double v : block) finite &= std::isfinite(v);
                    if (!finite) check_finite(blk, rows.first_global_row(c) + b * R);
                    m.sums.add(block.data());
                } catch (const std::exception& ex) {
#pragma omp critical
                    if (error.empty()) error = ex.what();
                }
            }
        }
        if (!error.empty()) throw std::invalid_argument(error);
    }
    LocalMoments total = std::move(per_thread[0]);
    for (size_t t = 1; t < per_thread.size(); t++) {
        total.sums.merge(per_thread[t].sums);
        for (int64_t j = 0; j < d; j++) {
            total.min[j] = std::min(total.min[j], per_thread[t].min[j]);
            total.max[j] = std::max(total.max[j], per_thread[t].max[j]);
        }
    }
    return total;
}

/// The moment sums of all ranks' rows: Σ x_j (d values) then Σ x_j², and the
/// global minimum and maximum per dimension (every rank the same bits).
std::vector<double> global_moment_sums(Communicator& comm, LocalMoments& m) {
    m.sums.normalize();
    comm.allreduce_sum(m.sums.limbs().data(), m.sums.limbs().size()); // integers: exact in any order
    m.sums.normalize();
    comm.allreduce(m.min.data(), m.min.size(), ReduceOp::Min);
    comm.allreduce(m.max.data(), m.max.size(), ReduceOp::Max);
    std::vector<double> sums(m.sums.size());
    for (size_t i = 0; i < sums.size(); i++) sums[i] = m.sums.value(i);
    return sums;
}

/// The mean row and the mean per-dimension variance of N rows from their moment_sums().
void moments_from_sums(const std::vector<double>& sums, int64_t N, std::vector<double>& mean, double& variance) {
    const size_t d = sums.size() / 2;
    mean.assign(d, 0.0);
    variance = 0;
    for (size_t j = 0; j < d; j++) {
        mean[j] = sums[j] / double(N);
        variance += std::max(0.0, sums[d + j] / double(N) - mean[j] * mean[j]);
    }
    variance /= double(d);
}

} // namespace

TrainingRows subsample(Communicator& comm, const VectorSource& data, const GlobalRows& rows, int64_t K,
                       const GmmParams& p, bool verbose) {
    TrainingRows t;
    t.rows = &data;
    t.global = rows;
    const int64_t N = rows.total;
    if (p.max_points_per_centroid > 0 && N > K * int64_t(p.max_points_per_centroid)) {
        const int64_t m = K * int64_t(p.max_points_per_centroid);
        if (verbose) {
            std::printf("GMM: sampling %lld / %lld training vectors (max_points_per_centroid = %d)\n",
                        (long long)m, (long long)N, p.max_points_per_centroid);
        }
        check_all_ranks(comm, [&] {
            std::vector<int64_t> picked = sample_rows(N, m, p.seed, rows.range.begin, rows.range.end);
            for (int64_t& i : picked) i -= rows.range.begin;
            t.sample = std::make_unique<MemoryVectorSource>(copy_rows(data, picked, t.storage));
        });
        t.rows = t.sample.get();
        t.global = locate_rows(comm, t.rows->ntotal());
    } else if (verbose && N < K * int64_t(p.min_points_per_centroid)) {
        std::printf("GMM warning: %lld training vectors for %lld components: at least %lld are recommended\n",
                    (long long)N, (long long)K, (long long)K * p.min_points_per_centroid);
    }
    return t;
}

DataMoments data_moments(Communicator& comm, const BlockAlignedRows& rows, int64_t d, int64_t n_train) {
    LocalMoments local;
    check_all_ranks(comm, [&] { local = local_moments(rows, d); });
    const std::vector<double> sums = global_moment_sums(comm, local);
    DataMoments m;
    moments_from_sums(sums, n_train, m.mean, m.variance);
    m.min = std::move(local.min);
    m.max = std::move(local.max);
    check_all_ranks(comm, [&] {
        // Squared distances and variances are float32 in the E-step, the model and
        // the FAISS quantizer: data whose spread overflows or underflows them cannot
        // be modelled faithfully, so say so instead of producing Inf or 0 variances.
        if (m.variance * double(d) > 1e36 || (m.variance > 0 && m.variance < 1e-30)) {
            throw std::invalid_argument("GMM training: the data's variance per dimension is " +
                                        std::to_string(m.variance) +
                                        ", outside the range float32 arithmetic can model (1e-30 .. 1e36 / d): "
                                        "rescale the data");
        }
    });
    return m;
}

RowBounds row_bounds(const DataMoments& m, const std::vector<float>& center, const GmmModel& model) {
    const std::vector<double>& min = m.min;
    const std::vector<double>& max = m.max;
    RowBounds rb;
    for (size_t j = 0; j < center.size(); j++) {
        rb.x_bound = std::max({rb.x_bound, max[j] - double(center[j]), double(center[j]) - min[j]});
    }
    const int64_t d = model.d, K = model.K;
    const float* means = model.means.data();
    double mean_bound = 0; // spherical: max ‖μ_k‖; diagonal and full: max |μ_kj|
    if (model.covariance_type == CovarianceType::Spherical) {
        // kChains components at a time, each ‖μ_k‖² summed over j in order (the bits of one at a
        // time): independent chains of additions, not one chain of K·d (~0.09 ms at K = 1024,
        // d = 128 on the dev VM, once per EM iteration).
        constexpr int64_t kChains = 4;
        int64_t k = 0;
        for (; k + kChains <= K; k += kChains) {
            double sq[kChains] = {};
            for (int64_t j = 0; j < d; j++) {
                for (int64_t c = 0; c < kChains; c++) {
                    const double m = means[(k + c) * d + j];
                    sq[c] += m * m;
                }
            }
            for (double s : sq) mean_bound = std::max(mean_bound, std::sqrt(s));
        }
        for (; k < K; k++) {
            double sq = 0;
            for (int64_t j = 0; j < d; j++) sq += double(means[k * d + j]) * double(means[k * d + j]);
            mean_bound = std::max(mean_bound, std::sqrt(sq));
        }
    } else {
        for (int64_t t = 0; t < K * d; t++) mean_bound = std::max(mean_bound, std::fabs(double(means[t])));
    }
    const double x = model.covariance_type == CovarianceType::Spherical ? std::sqrt(double(d)) * rb.x_bound
                                                                        : rb.x_bound;
    rb.sq_bound = (x + mean_bound) * (x + mean_bound);
    return rb;
}

GmmModel initial_model(Communicator& comm, const TrainingRows& train, int64_t K, const GmmParams& p,
                       const std::vector<float>& center, double variance_floor, double scale_variance,
                       const GmmModel* given) {
    const bool root = comm.rank() == 0;
    const int64_t d = int64_t(center.size()), n_train = train.global.total, n_local = train.rows->ntotal();
    GmmModel model;
    if (p.init == InitMethod::Given) {
        if (root) {
            std::vector<float> neg(d);
            for (int64_t j = 0; j < d; j++) neg[j] = -center[j];
            model = given->translated(neg.data());
        }
    } else {
        // Initialization works on at most K * 256 rows (the FAISS k-means default),
        // gathered on rank 0 in global order.
        const int64_t n_init = std::min<int64_t>(n_train, K * 256);
        std::vector<float> mine;
        check_all_ranks(comm, [&] {
            std::vector<int64_t> picked;
            if (n_init == n_train) {
                picked.resize(n_local);
                for (int64_t i = 0; i < n_local; i++) picked[i] = i;
            } else {
                picked = sample_rows(n_train, n_init, p.seed + 1, train.global.range.begin, train.global.range.end);
                for (int64_t& i : picked) i -= train.global.range.begin;
            }
            mine = read_rows_as_float(*train.rows, picked);
        });
        std::vector<float> xi = gather_to_root(comm, std::move(mine), 0);
        check_all_ranks(comm, [&] {
            if (!root) return;
            for (int64_t i = 0; i < n_init; i++) {
                for (int64_t j = 0; j < d; j++) xi[i * d + j] -= center[j];
            }
            std::vector<float> means = p.init == InitMethod::FaissKMeans
                    ? faiss_kmeans_means(n_init, d, xi.data(), K, p.init_niter, p.seed, false)
                    : kmeans_plus_plus_means(n_init, d, xi.data(), K, p.seed);
            model = model_from_hard_assignment(n_init, d, xi.data(), K, means, p.covariance_type, variance_floor,
                                               scale_variance);
        });
    }
    broadcast_model(comm, model, 0);
    return model;
}

namespace {

/// Component k's covariance from its second moment about the E-step's mean,
///   Σ = S/N_k − shift·shiftᵀ + reg_covar·I   (shift = new mean − old mean),
/// with the variance floor applied to its eigenvalues (GmmModel::set_covariance).
void full_covariance_m_step(const SufficientStats& stats, const double* sq, int64_t k,
                            const std::vector<double>& shift, double reg_covar, double variance_floor,
                            GmmModel& model, MStepResult& r) {
    const int64_t d = model.d;
    const double nk = stats.nk[k];
    std::vector<double> cov(size_t(d * d));
    for (int64_t a = 0; a < d; a++) {
        for (int64_t b = a; b < d; b++) {
            double v = sq[SufficientStats::sq_index(a, b, d)] / nk - shift[a] * shift[b];
            if (a == b) v += reg_covar;
            cov[a * d + b] = cov[b * d + a] = v;
        }
    }
    try {
        r.nfloored += model.set_covariance(k, cov.data(), variance_floor);
    } catch (const std::invalid_argument& ex) {
        throw std::invalid_argument(std::string("M-step: ") + ex.what() + " (mass N_k = " + std::to_string(nk) +
                                    " rows, reg_covar = " + std::to_string(reg_covar) +
                                    ", variance floor = " + std::to_string(variance_floor) + ")");
    }
}

} // namespace

MStepResult m_step_begin(const SufficientStats& stats, const GmmParams& p) {
    MStepResult r;
    r.min_mass = std::max(1e-3, p.min_component_weight * stats.n);
    double sq_counts = 0;
    for (const double nk : stats.nk) sq_counts += nk * nk;
    r.imbalance_factor = sq_counts * double(stats.K) / (stats.n * stats.n);
    return r;
}

void m_step_components(const SufficientStats& stats, const double* sum_sq, int64_t k0, int64_t k1,
                       const GmmParams& p, double variance_floor, GmmModel& model, MStepResult& r) {
    const int64_t d = model.d, nvar = model.nvar();
    const int64_t nsq = SufficientStats::nsq_of(model.covariance_type, d);
    const CovarianceType cov = model.covariance_type;
    const double total = stats.n;
    std::vector<double> shift(d);
    for (int64_t k = k0; k < k1; k++) {
        const double nk = stats.nk[k];
        if (nk < r.min_mass) {
            // Keeps its mean and variances; re-seeded by reseed_empty() if a component can be split.
            model.log_weights[k] = float(std::log(std::max(nk, 1e-30) / total));
            r.empty.push_back(k);
            continue;
        }
        double shift_sq = 0;
        for (int64_t j = 0; j < d; j++) {
            const double mu_new = stats.sum_x[k * d + j] / nk;
            shift[j] = mu_new - double(model.means[k * d + j]);
            shift_sq += shift[j] * shift[j];
            model.means[k * d + j] = float(mu_new);
        }
        const double* sq = sum_sq + (k - k0) * nsq;
        if (cov == CovarianceType::Full) {
            full_covariance_m_step(stats, sq, k, shift, p.reg_covar, variance_floor, model, r);
            model.log_weights[k] = float(std::log(nk / total));
            continue;
        }
        for (int64_t j = 0; j < nvar; j++) {
            // Second moment about the new mean = about the old one − N_k·shift².
            double v = cov == CovarianceType::Spherical ? (sq[0] / nk - shift_sq) / double(d)
                                                        : sq[j] / nk - shift[j] * shift[j];
            v += p.reg_covar;
            if (v < variance_floor) {
                v = variance_floor;
                r.nfloored++;
            }
            model.variances[k * nvar + j] = float(v);
        }
        model.log_weights[k] = float(std::log(nk / total));
    }
}

MStepResult m_step(const SufficientStats& stats, const GmmParams& p, double variance_floor, GmmModel& model) {
    MStepResult r = m_step_begin(stats, p);
    m_step_components(stats, stats.sum_sq.data(), 0, model.K, p, variance_floor, model, r);
    return r;
}

int reseed_empty(const MStepResult& m, const SufficientStats& stats, std::mt19937_64& rng, GmmModel& model) {
    const int64_t K = model.K, d = model.d, nvar = model.nvar();
    int nsplit = 0;
    for (int64_t k : m.empty) {
        int64_t big = -1;
        double big_w = -INFINITY;
        for (int64_t j = 0; j < K; j++) {
            if (stats.nk[j] >= m.min_mass && model.log_weights[j] > big_w) {
                big_w = model.log_weights[j];
                big = j;
            }
        }
        if (big < 0) break; // nothing left to split
        // Move the two halves apart by 1/10 of a standard deviation per
        // dimension, in random directions, so the next E-step separates them.
        std::uniform_int_distribution<int> coin(0, 1);
        for (int64_t j = 0; j < d; j++) {
            const double delta = 0.1 * std::sqrt(double(model.variance(big, j))) * (coin(rng) ? 1 : -1);
            const double mu = model.means[big * d + j];
            model.means[k * d + j] = float(mu + delta);
            model.means[big * d + j] = float(mu - delta);
        }
        for (int64_t j = 0; j < nvar; j++) model.variances[k * nvar + j] = model.variances[big * nvar + j];
        model.log_weights[big] = model.log_weights[k] = float(double(model.log_weights[big]) - std::log(2.0));
        nsplit++;
    }
    if (!m.empty.empty()) {
        // Splits keep the total weight; an empty component that found nothing to
        // split keeps its tiny weight: renormalize so the weights sum to 1 exactly.
        double wsum = 0;
        for (int64_t k = 0; k < K; k++) wsum += std::exp(double(model.log_weights[k]));
        // cppcheck-suppress invalidFunctionArg ; K >= 1 (checked in fit()) and every weight is > 0, so wsum > 0
        const float log_wsum = float(std::log(wsum));
        for (int64_t k = 0; k < K; k++) model.log_weights[k] -= log_wsum;
    }
    return nsplit;
}

} // namespace faiss_gmm::em
