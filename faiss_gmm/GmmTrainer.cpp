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
#include "em_steps.h"

namespace faiss_gmm {

namespace {

/// Whether src's read() hands out views into memory (leaves the scratch buffer
/// untouched): then reading rows again costs nothing.
bool source_hands_out_views(const VectorSource& src) {
    if (src.ntotal() == 0) return true;
    try {
        std::vector<uint8_t> probe;
        src.read(0, 1, probe);
        return probe.empty();
    } catch (const std::exception&) {
        return false; // the E-step's own reads report the error, on every rank
    }
}

/// Rows per accumulate() call. chunk_size bounds the scratch memory of sources
/// that copy rows out (files with per-row headers, conversions); a source that
/// hands out views into memory (its read() leaves the scratch buffer untouched)
/// costs nothing per row, so there the backend's preference wins.
int64_t rows_per_call(const VectorSource& src, int64_t chunk_size, const EStep& estep) {
    chunk_size = std::max<int64_t>(chunk_size, 1); // validate() ensures it; this keeps the division below visibly safe
    const int64_t wanted = estep.preferred_rows_per_call();
    if (wanted <= chunk_size || src.ntotal() == 0) return chunk_size;
    return source_hands_out_views(src) ? wanted : chunk_size;
}

/// The E-step's reproducible block (EStep::reproducible_block_rows), the same on every rank:
/// the ranks' calls must start on the same global blocks, or the bits would depend on the ranks.
int64_t common_block_rows(Communicator& comm, const EStep& estep, CovarianceType cov) {
    int64_t mine = 0;
    check_all_ranks(comm, [&] {
        mine = estep.reproducible_block_rows(cov);
        if (mine <= 0 || mine % kReproducibleBlockRows != 0) {
            throw std::logic_error(std::string("GmmTrainer: the E-step backend ") + estep.name() +
                                   " sums blocks of " + std::to_string(mine) + " rows, not a positive multiple of " +
                                   std::to_string(kReproducibleBlockRows));
        }
    });
    double lo = double(mine), hi = double(mine); // (exact: block sizes are far below 2^53)
    comm.allreduce(&lo, 1, ReduceOp::Min);
    comm.allreduce(&hi, 1, ReduceOp::Max);
    check_all_ranks(comm, [&] {
        if (lo != hi) {
            throw std::invalid_argument("GmmTrainer: the ranks' E-step backends sum blocks of different sizes (" +
                                        std::to_string(int64_t(lo)) + " to " + std::to_string(int64_t(hi)) +
                                        " rows), so no cut of the rows gives every rank whole blocks; use one "
                                        "backend kind (device) on every rank");
        }
    });
    return mine;
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

/// Sums acc over the ranks (integer limbs: exact in any order). A copy of every limb (4 per
/// statistic), so only when there is another rank to sum with.
void allreduce_exact(Communicator& comm, StatsAccumulator& acc) {
    if (comm.size() == 1) return;
    std::vector<double> flat = acc.flat();
    comm.allreduce_sum(flat.data(), flat.size());
    acc.from_flat(flat);
}

/// True on every rank when `flag` holds on some rank.
bool on_any_rank(Communicator& comm, bool flag) {
    double v = flag ? 1.0 : 0.0;
    comm.allreduce(&v, 1, ReduceOp::Max);
    return v > 0;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Full covariances in two walks (EStep.h): when, and how many components per group of walk 2.
struct TwoWalkPlan {
    int64_t max_pairs = 0; ///< listed responsibilities allowed per rank; 0 = always one walk
    int64_t group = 1;     ///< components whose second moments walk 2 sums at a time
};

/// The one-walk path holds 4 limbs of 8 bytes per statistic, and the M-step's double: 40 bytes
/// per statistic, K·(1 + d + d(d+1)/2) of them. The lists cost 10 bytes per non-zero
/// responsibility: two walks are taken while they at least halve that (max_pairs), or as
/// `max_listed` says (>= 0; 0 = never). Walk 2's groups are of 2 MiB of statistics when the
/// rows are views into memory (walking them again costs no reads), else of an eighth of the
/// one-walk memory (a file is read at most 8 more times per iteration).
TwoWalkPlan plan_two_walks(CovarianceType cov, int64_t K, int64_t d, int64_t max_listed, bool rows_in_memory) {
    TwoWalkPlan plan;
    if (cov != CovarianceType::Full) return plan;
    const int64_t per_component = 40 * (1 + d + SufficientStats::nsq_of(cov, d));
    plan.max_pairs = max_listed >= 0 ? max_listed : K * per_component / 10 / 2;
    const int64_t group_bytes = rows_in_memory ? (int64_t(2) << 20) : K * per_component / 8;
    plan.group = std::clamp<int64_t>(group_bytes / per_component, 1, K);
    return plan;
}

/// EStep::begin_listing .. end_listing, ended on scope exit too (an exception in walk 2).
class ListingScope {
  public:
    explicit ListingScope(EStep& estep) : estep_(estep) {}
    ~ListingScope() { end(); }
    ListingScope(const ListingScope&) = delete;
    ListingScope& operator=(const ListingScope&) = delete;
    void begin(int64_t max_pairs) {
        estep_.begin_listing(max_pairs);
        active_ = true;
    }
    void end() {
        if (active_) estep_.end_listing();
        active_ = false;
    }

  private:
    EStep& estep_;
    bool active_ = false;
};

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

/// The checkpoint at options.path, read on rank 0 and parsed on every rank;
/// refused when it is not this run's (fingerprint, shape).
TrainingCheckpoint load_checkpoint(Communicator& comm, const CheckpointOptions& options, uint64_t fingerprint_of_run,
                                   int64_t K, int64_t d, CovarianceType cov) {
    std::vector<uint8_t> bytes;
    check_all_ranks(comm, [&] {
        if (options.path.empty()) throw std::invalid_argument("GMM training: resume asked without a checkpoint path");
        if (comm.rank() == 0) bytes = read_whole_file(options.path);
    });
    bytes = broadcast_from(comm, std::move(bytes), 0);
    TrainingCheckpoint c;
    check_all_ranks(comm, [&] {
        c = parse_checkpoint(bytes, options.path);
        if (c.run_fingerprint != fingerprint_of_run || c.model.K != K || c.model.d != d ||
            c.model.covariance_type != cov) {
            throw std::invalid_argument("GMM training: " + options.path +
                                        " is a checkpoint of another run (its data moments, K, d or params "
                                        "differ from this one's): it cannot be resumed here");
        }
    });
    return c;
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

    const em::TrainingRows train = em::subsample(comm, data, rows, K, p, verbose);
    n_train = train.global.total;
    check_all_ranks(comm, [&] {
        if (!estep_) estep_ = make_estep(p, K, d);
    });

    // ---- the rows each rank sums: whole blocks of the E-step's block size, so
    // that every sum below is the same bits for any ranks, threads and chunks ----
    estep_->expect_rows(n_train); // (before set_model, as EStep.h asks)
    const int64_t block_rows = common_block_rows(comm, *estep_, cov);
    std::optional<BlockAlignedRows> blocks;
    std::vector<uint8_t> scratch;
    const int64_t chunk_wanted = rows_per_call(*train.rows, p.chunk_size, *estep_);
    check_all_ranks(comm, [&] {
        // The rows sent to an earlier rank are checked here, so that a bad value is
        // reported by the rank that holds it (the others are checked with the moments).
        const int64_t head = BlockAlignedRows::head_rows(train.global, block_rows);
        if (head > 0) check_finite(train.rows->read(0, head, scratch), train.global.range.begin);
    });
    check_all_ranks(comm, [&] { blocks.emplace(comm, *train.rows, train.global, block_rows, chunk_wanted); });

    // ---- data moments: center, variance floor, NaN/Inf check ----
    comm.set_step("data moments");
    const em::DataMoments moments = em::data_moments(comm, *blocks, d, n_train);
    data_variance = moments.variance;
    const std::vector<float> center(moments.mean.begin(), moments.mean.end());
    // A zero-variance data set (all rows identical) still needs a positive floor.
    const double scale_variance = data_variance > 0 ? data_variance : 1.0;
    variance_floor = std::max(p.min_variance_ratio * scale_variance, 1e-30);

    // ---- the initial model (centered frame), or the state of a checkpoint ----
    comm.set_step("initialization");
    const uint64_t fingerprint_of_run = run_fingerprint(p, K, d, n_train, moments.mean, data_variance);
    std::optional<TrainingCheckpoint> resumed;
    if (checkpoint.resume) resumed = load_checkpoint(comm, checkpoint, fingerprint_of_run, K, d, cov);
    GmmModel model = resumed ? resumed->model
                             : em::initial_model(comm, train, K, p, center, variance_floor, scale_variance, initial);

    backend = estep_->name();
    if (verbose) {
        const std::string ranks = comm.size() > 1 ? " on " + std::to_string(comm.size()) + " ranks" : "";
        std::printf("GMM: K = %lld, d = %lld, N = %lld%s, %s covariance, init %s, backend %s, "
                    "variance floor %.4g (init %.2f s)\n",
                    (long long)K, (long long)d, (long long)n_train, ranks.c_str(), to_string(cov),
                    to_string(p.init), backend.c_str(), variance_floor, seconds_since(t_start));
    }

    // ---- EM ----
    SufficientStats stats; // sized by result(), released after each M-step
    // The one-walk path's accumulator of every statistic, made when first needed: full
    // covariances in two walks (EStep.h) hold the first moments and one group of second moments.
    std::optional<StatsAccumulator> exact_stats;
    std::optional<StatsAccumulator> first_moments;
    // The group size must be the same on every rank (their group sums are added up).
    const bool rows_in_memory = !on_any_rank(comm, !source_hands_out_views(*train.rows));
    const TwoWalkPlan two_walk_plan = plan_two_walks(cov, K, d, max_listed_responsibilities, rows_in_memory);
    int64_t responsibilities_last_iteration = -1; // this rank's, -1 before the first E-step
    std::mt19937_64 split_rng{uint64_t(p.seed) + 7};
    double prev_loglik = -INFINITY;
    const int64_t nchunks = blocks->ncalls();
    // The rows are views into memory when the backend got its preferred call
    // size: hand them over once for all iterations.
    std::optional<RetainedRows> retained;
    if (chunk_wanted != p.chunk_size && blocks->rows_from_source() > 0) {
        retained.emplace(*estep_, train.rows->read(blocks->first_local_row(), blocks->rows_from_source(), scratch));
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
    const auto t_em = std::chrono::steady_clock::now();
    for (int it = first_iteration; it < p.niter; it++) {
        const auto t_iter = std::chrono::steady_clock::now();
        comm.set_step("E-step of iteration " + std::to_string(it + 1));
        const em::RowBounds bounds = em::row_bounds(moments, center, model);
        // Every call's rows through `step` (c, rows), with a progress line on long walks.
        auto walk = [&](const char* what, auto step) {
            check_all_ranks(comm, [&] {
                for (int64_t c = 0; c < nchunks; c++) {
                    if (!step(c, blocks->call(c, scratch))) break;
                    if (verbose && nchunks > 1 && seconds_since(t_iter) > 2.0) {
                        std::printf("\r  %s %d: %5.1f%%", what, it, 100.0 * double(c + 1) / double(nchunks));
                        std::fflush(stdout);
                    }
                }
            });
        };
        check_all_ranks(comm, [&] { estep_->set_model(model, center.data()); });
        // Two walks while the last iteration's responsibilities fit the lists, on every rank.
        bool two_walks = two_walk_plan.max_pairs > 0 && estep_->can_list_responsibilities() &&
                         responsibilities_last_iteration <= two_walk_plan.max_pairs;
        if (two_walk_plan.max_pairs > 0) two_walks = !on_any_rank(comm, !two_walks);
        ListingScope listing(*estep_);
        if (two_walks) {
            // Walk 1: N_k, Σ r x and the log-likelihood; the responsibilities listed.
            if (!first_moments) first_moments.emplace(K, d, cov, /*with_second_moments=*/false);
            first_moments->set_row_bounds(bounds.x_bound, bounds.sq_bound);
            first_moments->clear();
            listing.begin(two_walk_plan.max_pairs);
            walk("E-step (walk 1 of 2)", [&](int64_t, const VectorBlock& rows) {
                estep_->accumulate_reproducible(rows, *first_moments);
                return !estep_->listing_overflowed();
            });
            if (on_any_rank(comm, estep_->listing_overflowed())) {
                listing.end(); // the one-walk path below, from the start
                two_walks = false;
                if (verbose) {
                    std::printf("\n  iteration %d: more than %lld non-zero responsibilities on a rank: one walk\n",
                                it + 1, (long long)two_walk_plan.max_pairs);
                }
            }
        }
        StatsAccumulator* e_sums = nullptr;
        if (two_walks) {
            e_sums = &*first_moments;
        } else {
            // E-step: reproducible sums over every rank's blocks.
            if (!exact_stats) exact_stats.emplace(K, d, cov);
            exact_stats->set_row_bounds(bounds.x_bound, bounds.sq_bound);
            exact_stats->clear();
            walk("E-step", [&](int64_t, const VectorBlock& rows) {
                estep_->accumulate_reproducible(rows, *exact_stats);
                return true;
            });
            e_sums = &*exact_stats;
        }
        responsibilities_last_iteration = estep_->responsibilities_seen();
        allreduce_exact(comm, *e_sums);
        e_sums->result(stats);
        GmmIterationStats st;
        st.iteration = it;
        st.estep_time_s = seconds_since(t_iter);
        st.loglik = stats.loglik / stats.n;
        check_all_ranks(comm, [&] {
            if (!std::isfinite(st.loglik)) {
                throw std::runtime_error("GMM training: the log-likelihood became " + std::to_string(st.loglik) +
                                         " at iteration " + std::to_string(it));
            }
        });

        // M-step and re-seeding: the same on every rank, from the same sums.
        em::MStepResult m;
        if (two_walks) {
            // Walk 2, a group of components at a time: their second moments, then their M-step
            // (which needs only these, and the first moments of all).
            m = em::m_step_begin(stats, p);
            SufficientStats group_sums;
            for (int64_t k0 = 0; k0 < K; k0 += two_walk_plan.group) {
                const int64_t ng = std::min(two_walk_plan.group, K - k0);
                const auto t_walk = std::chrono::steady_clock::now();
                StatsAccumulator group(ng, d, cov);
                group.set_row_bounds(bounds.x_bound, bounds.sq_bound); // the grids of the one-walk path
                walk("E-step (walk 2 of 2)", [&](int64_t c, const VectorBlock& rows) {
                    estep_->accumulate_listed_second_moments(c, rows, k0, group);
                    return true;
                });
                st.estep_time_s += seconds_since(t_walk);
                allreduce_exact(comm, group);
                group.result(group_sums);
                em::m_step_components(stats, group_sums.sum_sq.data(), k0, k0 + ng, p, variance_floor, model, m);
            }
        } else {
            m = em::m_step(stats, p, variance_floor, model);
        }
        listing.end();
        comm.allreduce(&st.estep_time_s, 1, ReduceOp::Max);
        st.nfloored = m.nfloored;
        st.imbalance_factor = m.imbalance_factor;
        st.nsplit = em::reseed_empty(m, stats, split_rng, model);
        // Not needed until the next E-step's result(): freed while that E-step runs, so
        // the two never coexist with its working memory (K·d(d+1)/2 doubles for full
        // covariances, 16 MiB at K = 256, d = 128).
        stats = SufficientStats();

        st.time_s = seconds_since(t_start);
        iteration_stats.push_back(st);
        total_splits += st.nsplit;
        total_floored += st.nfloored;
        n_iter = it + 1;
        if (verbose) {
            // The iterations left at the mean pace so far: an upper bound, as tol may stop EM earlier.
            const double eta = seconds_since(t_em) / double(it + 1 - first_iteration) * double(p.niter - it - 1);
            std::printf("%sEM iter %3d/%d: loglik %.6g (%+.3g)  imbalance %.3f  splits %d  floored %d  "
                        "E-step %.3f s  total %.2f s  ETA <= %.0f s\n",
                        nchunks > 1 ? "\r" : "", it + 1, p.niter, st.loglik,
                        std::isfinite(prev_loglik) ? st.loglik - prev_loglik : 0.0, st.imbalance_factor,
                        st.nsplit, st.nfloored, st.estep_time_s, st.time_s, eta);
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
    model.translate(center.data());
    return model;
}

} // namespace faiss_gmm
