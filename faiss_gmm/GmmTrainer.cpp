#include "GmmTrainer.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>

#include "BlockAlignedRows.h"
#include "ReproducibleSum.h"
#include "kmeans_init.h"

namespace faiss_gmm {

namespace {

/// Rows per accumulate() call. chunk_size bounds the scratch memory of sources
/// that copy rows out (files with per-row headers, conversions); a source that
/// hands out views into memory (its read() leaves the scratch buffer untouched)
/// costs nothing per row, so there the backend's preference wins.
int64_t rows_per_call(const VectorSource& src, int64_t chunk_size, const EStep& estep) {
    chunk_size = std::max<int64_t>(chunk_size, 1); // validate() ensures it; this keeps the division below visibly safe
    const int64_t wanted = estep.preferred_rows_per_call();
    if (wanted <= chunk_size || src.ntotal() == 0) return chunk_size;
    try {
        std::vector<uint8_t> probe;
        src.read(0, 1, probe);
        return probe.empty() ? wanted : chunk_size;
    } catch (const std::exception&) {
        return chunk_size; // the E-step's own reads report the error, on every rank
    }
}

/// Offers the training rows to the E-step backend for every EM iteration (a GPU
/// backend keeps them in device memory when they fit) and withdraws them when
/// fit() ends, normally or by an exception.
class RetainedRows {
  public:
    RetainedRows(EStep& estep, const VectorBlock& rows) : estep_(estep) { estep_.retain_rows(rows); }
    ~RetainedRows() { estep_.release_rows(); }
    RetainedRows(const RetainedRows&) = delete;
    RetainedRows& operator=(const RetainedRows&) = delete;

  private:
    EStep& estep_;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

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

/// Per-row bounds of the E-step's statistics in the centered frame, which place
/// StatsAccumulator's grids: |x_j − c_j| <= x_bound for every training row, and
/// one row's second-moment term below sq_bound.
struct RowBounds {
    double x_bound = 0;
    double sq_bound = 0;
};

RowBounds row_bounds(const std::vector<double>& min, const std::vector<double>& max, const std::vector<float>& center,
                     const GmmModel& model) {
    RowBounds rb;
    for (size_t j = 0; j < center.size(); j++) {
        rb.x_bound = std::max({rb.x_bound, max[j] - double(center[j]), double(center[j]) - min[j]});
    }
    const int64_t d = model.d;
    double mean_bound = 0; // spherical: max ‖μ_k‖; diagonal: max |μ_kj|
    for (int64_t k = 0; k < model.K; k++) {
        double sq = 0;
        for (int64_t j = 0; j < d; j++) {
            const double m = model.means[k * d + j];
            sq += m * m;
            if (model.covariance_type == CovarianceType::Diagonal) mean_bound = std::max(mean_bound, std::fabs(m));
        }
        if (model.covariance_type == CovarianceType::Spherical) mean_bound = std::max(mean_bound, std::sqrt(sq));
    }
    const double x = model.covariance_type == CovarianceType::Spherical ? std::sqrt(double(d)) * rb.x_bound
                                                                        : rb.x_bound;
    rb.sq_bound = (x + mean_bound) * (x + mean_bound);
    return rb;
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

/// A 64-bit FNV-1a hash of the model's values, in three parts that a double holds exactly.
std::vector<int64_t> fingerprint(const GmmModel& m) {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](const std::vector<float>& v) {
        const auto* bytes = reinterpret_cast<const uint8_t*>(v.data());
        for (size_t i = 0; i < v.size() * sizeof(float); i++) h = (h ^ bytes[i]) * 1099511628211ull;
    };
    mix(m.log_weights);
    mix(m.means);
    mix(m.variances);
    return {int64_t(h & 0xffffff), int64_t((h >> 24) & 0xffffff), int64_t(h >> 48)};
}

} // namespace

GmmTrainer::GmmTrainer(const GmmParams& params) : params_(params) {
    params_.validate();
}

GmmModel GmmTrainer::fit(int64_t n, int64_t d, const float* x, int64_t K, const GmmModel* initial) {
    MemoryVectorSource src(n, d, x);
    return fit(src, K, initial);
}

GmmModel GmmTrainer::fit(const VectorSource& data, int64_t K, const GmmModel* initial) {
    const auto t_start = std::chrono::steady_clock::now();
    const GmmParams& p = params_;
    SingleProcessCommunicator single_process;
    Communicator& comm = *(comm_ ? comm_ : &single_process);
    const bool root = comm.rank() == 0;
    const bool verbose = p.verbose && root;
    const int64_t d = data.d();
    const CovarianceType cov = p.covariance_type;

    // ---- the rows of all ranks; checks, before any work ----
    check_same_on_all_ranks(comm, {d, int64_t(data.type())}, "GMM training: the ranks' rows differ in shape:",
                            [](const std::vector<int64_t>& v) {
                                return "d = " + std::to_string(v[0]) + ", " + to_string(DataType(v[1]));
                            });
    const GlobalRows rows = locate_rows(comm, data.ntotal());
    const int64_t N = rows.total;
    check_all_ranks(comm, [&] {
        if (K < 1) throw std::invalid_argument("GMM training: K = " + std::to_string(K) + " components, need K >= 1");
        if (N < K) {
            throw std::invalid_argument("GMM training: K = " + std::to_string(K) + " components but only N = " +
                                        std::to_string(N) + " training vectors (need N >= K)");
        }
        if (p.init == InitMethod::Given && root) {
            if (!initial) throw std::invalid_argument("GMM training: init = Given but no initial model was passed");
            initial->validate();
            if (initial->K != K || initial->d != d || initial->covariance_type != cov) {
                throw std::invalid_argument("GMM training: the initial model has K = " + std::to_string(initial->K) +
                                            ", d = " + std::to_string(initial->d) + ", " +
                                            to_string(initial->covariance_type) + "; expected K = " +
                                            std::to_string(K) + ", d = " + std::to_string(d) + ", " + to_string(cov));
            }
        }
    });

    iteration_stats.clear();
    n_iter = 0;
    converged = false;
    total_splits = total_floored = 0;

    // ---- subsampling, as faiss::Clustering does: every rank keeps the sampled
    // rows of its range, so together they hold the rows one process would pick ----
    std::vector<uint8_t> sample_storage;
    std::unique_ptr<MemoryVectorSource> sample_source;
    const VectorSource* train = &data;
    GlobalRows train_rows = rows;
    if (p.max_points_per_centroid > 0 && N > K * int64_t(p.max_points_per_centroid)) {
        const int64_t m = K * int64_t(p.max_points_per_centroid);
        if (verbose) {
            std::printf("GMM: sampling %lld / %lld training vectors (max_points_per_centroid = %d)\n",
                        (long long)m, (long long)N, p.max_points_per_centroid);
        }
        check_all_ranks(comm, [&] {
            std::vector<int64_t> picked = sample_rows(N, m, p.seed, rows.range.begin, rows.range.end);
            for (int64_t& i : picked) i -= rows.range.begin;
            sample_source = std::make_unique<MemoryVectorSource>(copy_rows(data, picked, sample_storage));
        });
        train = sample_source.get();
        train_rows = locate_rows(comm, train->ntotal());
    } else if (verbose && N < K * int64_t(p.min_points_per_centroid)) {
        std::printf("GMM warning: %lld training vectors for %lld components: at least %lld are recommended\n",
                    (long long)N, (long long)K, (long long)K * p.min_points_per_centroid);
    }
    n_train = train_rows.total;
    const int64_t n_local = train->ntotal();

    check_all_ranks(comm, [&] {
        if (!estep_) estep_ = make_estep(p, K, d);
    });

    // ---- the rows each rank sums: whole blocks of kReproducibleBlockRows, so
    // that every sum below is the same bits for any ranks, threads and chunks ----
    std::optional<BlockAlignedRows> blocks;
    std::vector<uint8_t> scratch;
    const int64_t chunk_wanted = rows_per_call(*train, p.chunk_size, *estep_);
    check_all_ranks(comm, [&] {
        // The rows sent to an earlier rank are checked here, so that a bad value is
        // reported by the rank that holds it (the others are checked with the moments).
        const int64_t head = BlockAlignedRows::head_rows(train_rows);
        if (head > 0) check_finite(train->read(0, head, scratch), train_rows.range.begin);
    });
    check_all_ranks(comm, [&] { blocks.emplace(comm, *train, train_rows, chunk_wanted); });

    // ---- data moments: center, variance floor, NaN/Inf check ----
    comm.set_step("data moments");
    LocalMoments local;
    check_all_ranks(comm, [&] { local = local_moments(*blocks, d); });
    const std::vector<double> sums = global_moment_sums(comm, local);
    std::vector<double> mean_d;
    moments_from_sums(sums, n_train, mean_d, data_variance);
    check_all_ranks(comm, [&] {
        // Squared distances and variances are float32 in the E-step, the model and
        // the FAISS quantizer: data whose spread overflows or underflows them cannot
        // be modelled faithfully, so say so instead of producing Inf or 0 variances.
        if (data_variance * double(d) > 1e36 || (data_variance > 0 && data_variance < 1e-30)) {
            throw std::invalid_argument("GMM training: the data's variance per dimension is " +
                                        std::to_string(data_variance) +
                                        ", outside the range float32 arithmetic can model (1e-30 .. 1e36 / d): "
                                        "rescale the data");
        }
    });
    std::vector<float> center(mean_d.begin(), mean_d.end());
    // A zero-variance data set (all rows identical) still needs a positive floor.
    const double scale_variance = data_variance > 0 ? data_variance : 1.0;
    variance_floor = std::max(p.min_variance_ratio * scale_variance, 1e-30);

    // ---- a checkpoint to resume from, read on rank 0 and sent to every rank ----
    const uint64_t fingerprint_of_run = run_fingerprint(p, K, d, n_train, mean_d, data_variance);
    std::optional<TrainingCheckpoint> resumed;
    if (checkpoint.resume) {
        std::vector<uint8_t> bytes;
        check_all_ranks(comm, [&] {
            if (checkpoint.path.empty()) throw std::invalid_argument("GMM training: resume asked without a checkpoint path");
            if (root) bytes = read_whole_file(checkpoint.path);
        });
        bytes = broadcast_from(comm, std::move(bytes), 0);
        check_all_ranks(comm, [&] {
            resumed = parse_checkpoint(bytes, checkpoint.path);
            if (resumed->run_fingerprint != fingerprint_of_run || resumed->model.K != K || resumed->model.d != d ||
                resumed->model.covariance_type != cov) {
                throw std::invalid_argument("GMM training: " + checkpoint.path +
                                            " is a checkpoint of another run (its data moments, K, d or params "
                                            "differ from this one's): it cannot be resumed here");
            }
        });
    }

    // ---- initial model, in the centered frame: computed on rank 0, broadcast ----
    comm.set_step("initialization");
    GmmModel model;
    if (resumed) {
        model = resumed->model;
    } else if (p.init == InitMethod::Given) {
        if (root) {
            std::vector<float> neg(d);
            for (int64_t j = 0; j < d; j++) neg[j] = -center[j];
            model = initial->translated(neg.data());
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
                picked = sample_rows(n_train, n_init, p.seed + 1, train_rows.range.begin, train_rows.range.end);
                for (int64_t& i : picked) i -= train_rows.range.begin;
            }
            mine = read_rows_as_float(*train, picked);
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
            model = model_from_hard_assignment(n_init, d, xi.data(), K, means, cov, variance_floor, scale_variance);
        });
    }
    broadcast_model(comm, model, 0);

    backend = estep_->name();
    if (verbose) {
        const std::string ranks = comm.size() > 1 ? " on " + std::to_string(comm.size()) + " ranks" : "";
        std::printf("GMM: K = %lld, d = %lld, N = %lld%s, %s covariance, init %s, backend %s, "
                    "variance floor %.4g (init %.2f s)\n",
                    (long long)K, (long long)d, (long long)n_train, ranks.c_str(), to_string(cov),
                    to_string(p.init), backend.c_str(), variance_floor, seconds_since(t_start));
    }

    // ---- EM ----
    SufficientStats stats(K, d, cov);
    StatsAccumulator exact_stats(K, d, cov);
    std::mt19937_64 split_rng{uint64_t(p.seed) + 7};
    double prev_loglik = -INFINITY;
    const int64_t nvar = model.nvar();
    const int64_t nchunks = blocks->ncalls();
    // The rows are views into memory when the backend got its preferred call
    // size: hand them over once for all iterations.
    std::optional<RetainedRows> retained;
    if (chunk_wanted != p.chunk_size && blocks->rows_from_source() > 0) {
        retained.emplace(*estep_, train->read(blocks->first_local_row(), blocks->rows_from_source(), scratch));
    }
    int first_iteration = 0;
    if (resumed) {
        first_iteration = resumed->iterations_done;
        prev_loglik = resumed->prev_loglik;
        iteration_stats = resumed->iteration_stats;
        total_splits = resumed->total_splits;
        total_floored = resumed->total_floored;
        n_iter = first_iteration;
        std::istringstream(resumed->split_rng_state) >> split_rng;
        if (verbose) {
            std::printf("GMM: resumed from %s after %d iteration(s)\n", checkpoint.path.c_str(), first_iteration);
        }
    }
    for (int it = first_iteration; it < p.niter; it++) {
        const auto t_iter = std::chrono::steady_clock::now();
        comm.set_step("E-step of iteration " + std::to_string(it + 1));
        const RowBounds bounds = row_bounds(local.min, local.max, center, model);
        exact_stats.set_row_bounds(bounds.x_bound, bounds.sq_bound);
        exact_stats.clear();
        check_all_ranks(comm, [&] {
            estep_->set_model(model, center.data());
            for (int64_t c = 0; c < nchunks; c++) {
                estep_->accumulate_reproducible(blocks->call(c, scratch), exact_stats);
                if (verbose && nchunks > 1 && seconds_since(t_iter) > 2.0) {
                    std::printf("\r  E-step %d: %5.1f%%", it, 100.0 * double(c + 1) / double(nchunks));
                    std::fflush(stdout);
                }
            }
        });
        std::vector<double> flat = exact_stats.flat();
        comm.allreduce_sum(flat.data(), flat.size()); // integer limbs: exact in any order
        exact_stats.from_flat(flat);
        exact_stats.result(stats);
        GmmIterationStats st;
        st.iteration = it;
        st.estep_time_s = seconds_since(t_iter);
        comm.allreduce(&st.estep_time_s, 1, ReduceOp::Max);
        st.loglik = stats.loglik / stats.n;
        check_all_ranks(comm, [&] {
            if (!std::isfinite(st.loglik)) {
                throw std::runtime_error("GMM training: the log-likelihood became " + std::to_string(st.loglik) +
                                         " at iteration " + std::to_string(it));
            }
        });

        // ---- M-step (double precision) ----
        const double total = stats.n;
        double sq_counts = 0;
        const double min_mass = std::max(1e-3, p.min_component_weight * total);
        std::vector<int64_t> empty;
        for (int64_t k = 0; k < K; k++) {
            const double nk = stats.nk[k];
            sq_counts += nk * nk;
            if (nk < min_mass) {
                // Keeps its mean and variances; re-seeded below if a component can be split.
                model.log_weights[k] = float(std::log(std::max(nk, 1e-30) / total));
                empty.push_back(k);
                continue;
            }
            double shift_sq = 0;
            std::vector<double> shift(d);
            for (int64_t j = 0; j < d; j++) {
                const double mu_new = stats.sum_x[k * d + j] / nk;
                shift[j] = mu_new - double(model.means[k * d + j]);
                shift_sq += shift[j] * shift[j];
                model.means[k * d + j] = float(mu_new);
            }
            for (int64_t j = 0; j < nvar; j++) {
                // Second moment about the new mean = about the old one − N_k·shift².
                double v = cov == CovarianceType::Spherical
                        ? (stats.sum_sq[k] / nk - shift_sq) / double(d)
                        : stats.sum_sq[k * d + j] / nk - shift[j] * shift[j];
                v += p.reg_covar;
                if (v < variance_floor) {
                    v = variance_floor;
                    st.nfloored++;
                }
                model.variances[k * nvar + j] = float(v);
            }
            model.log_weights[k] = float(std::log(nk / total));
        }
        st.imbalance_factor = sq_counts * double(K) / (total * total);

        // ---- re-seed empty components by splitting the heaviest, as FAISS does ----
        for (int64_t k : empty) {
            int64_t big = -1;
            double big_w = -INFINITY;
            for (int64_t j = 0; j < K; j++) {
                if (stats.nk[j] >= min_mass && model.log_weights[j] > big_w) {
                    big_w = model.log_weights[j];
                    big = j;
                }
            }
            if (big < 0) break; // nothing left to split
            // Move the two halves apart by 1/10 of a standard deviation per
            // dimension, in random directions, so the next E-step separates them.
            std::uniform_int_distribution<int> coin(0, 1);
            for (int64_t j = 0; j < d; j++) {
                const double delta = 0.1 * std::sqrt(double(model.variance(big, j))) * (coin(split_rng) ? 1 : -1);
                const double mu = model.means[big * d + j];
                model.means[k * d + j] = float(mu + delta);
                model.means[big * d + j] = float(mu - delta);
            }
            for (int64_t j = 0; j < nvar; j++) model.variances[k * nvar + j] = model.variances[big * nvar + j];
            model.log_weights[big] = model.log_weights[k] = float(double(model.log_weights[big]) - std::log(2.0));
            st.nsplit++;
        }
        if (!empty.empty()) {
            // Splits keep the total weight; an empty component that found nothing to
            // split keeps its tiny weight: renormalize so the weights sum to 1 exactly.
            double wsum = 0;
            for (int64_t k = 0; k < K; k++) wsum += std::exp(double(model.log_weights[k]));
            // cppcheck-suppress invalidFunctionArg ; K >= 1 (checked in fit()) and every weight is > 0, so wsum > 0
            const float log_wsum = float(std::log(wsum));
            for (int64_t k = 0; k < K; k++) model.log_weights[k] -= log_wsum;
        }

        st.time_s = seconds_since(t_start);
        iteration_stats.push_back(st);
        total_splits += st.nsplit;
        total_floored += st.nfloored;
        n_iter = it + 1;
        if (verbose) {
            std::printf("%sEM iter %3d/%d: loglik %.6g (%+.3g)  imbalance %.3f  splits %d  floored %d  "
                        "E-step %.3f s  total %.2f s\n",
                        nchunks > 1 ? "\r" : "", it + 1, p.niter, st.loglik,
                        std::isfinite(prev_loglik) ? st.loglik - prev_loglik : 0.0, st.imbalance_factor,
                        st.nsplit, st.nfloored, st.estep_time_s, st.time_s);
            std::fflush(stdout);
        }
        if (p.tol > 0 && std::isfinite(prev_loglik) && std::fabs(st.loglik - prev_loglik) < p.tol) {
            converged = true;
            break;
        }
        prev_loglik = st.loglik;
        if (checkpoint.every > 0 && !checkpoint.path.empty() && (it + 1) % checkpoint.every == 0) {
            comm.set_step("checkpoint after iteration " + std::to_string(it + 1));
            check_all_ranks(comm, [&] {
                if (!root) return;
                TrainingCheckpoint c;
                c.run_fingerprint = fingerprint_of_run;
                c.iterations_done = it + 1;
                c.prev_loglik = prev_loglik;
                c.total_splits = total_splits;
                c.total_floored = total_floored;
                std::ostringstream rng;
                rng << split_rng;
                c.split_rng_state = rng.str();
                c.iteration_stats = iteration_stats;
                c.model = model;
                write_file_atomically(checkpoint.path, serialize_checkpoint(c));
            });
        }
    }
    if (verbose && (total_splits > 0 || total_floored > 0)) {
        std::printf("GMM: %d component(s) re-seeded, %d variance(s) raised to the floor %.4g\n", total_splits,
                    total_floored, variance_floor);
    }
    // Every rank took the same decisions on the same sums, so the models are the
    // same bits; a difference would be a bug, and worse than a failure.
    if (comm.size() > 1) {
        check_same_on_all_ranks(comm, fingerprint(model), "GMM training: the ranks ended with different models:",
                                [](const std::vector<int64_t>& v) {
                                    return "fingerprint " + std::to_string(v[0]) + "." + std::to_string(v[1]) + "." +
                                           std::to_string(v[2]);
                                });
    }
    return model.translated(center.data());
}

} // namespace faiss_gmm
