// faiss-gmm train: trains a GMM (and from it an IVF index) on a vector file.
// In one process it reads any format faiss-gmm dataset reads; under mpirun with
// several ranks it is the distributed trainer (data-parallel EM): every rank
// memory-maps the file and reads only its own range of rows, the ranks sum their
// E-step statistics and end with the same model, and rank 0 prints the progress
// and writes the result. The old name faiss-gmm-train-mpi runs the same code.
//
//   [mpirun -np R] faiss-gmm train FILE --k K [options]   (see usage())
//
// Failures are agreed on by every rank (faiss_gmm::check_all_ranks): rank 0
// prints which ranks failed and why, and every rank exits with status 1. An
// error no rank could agree on ends the job through Communicator::abort; a rank
// that dies makes mpirun end the others.
#include <omp.h>

#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/Commands.h"
#include "datasets/Dataset.h"
#include "faiss_gmm/Communicator.h"
#include "faiss_gmm/GmmQuantizer.h"
#include "faiss_gmm/GmmTrainer.h"
#include "faiss_gmm/gmm_index_factory.h"
#include "faiss_gmm/gmm_io.h"

namespace faiss_gmm {
namespace cli {
namespace {

std::string usage(const Invocation& inv) {
    const std::string prog = inv.prog();
    return "usage: " + prog + " [FILE | --data FILE] --k K [options]       one process\n"
           "       mpirun -np R " + prog + " --data FILE --k K [options]  distributed: one rank per machine, GPU or core\n"
           "Trains a GMM on FILE and writes it (--out) as a model, or as the coarse quantizer of an IVF index (--index).\n"
           "  FILE | --data FILE   the vectors: .fvecs .bvecs .fbin .u8bin (memory-mapped), IDX(.gz), file.hdf5[:name];\n"
           "                       under mpirun with several ranks a memory-mapped one (each rank reads its own rows)\n"
           "  --k K                number of components (default with --index: its nlist)\n"
           "  --covariance C       spherical | diagonal | full (default spherical, or the --index's _GMM / _GMMdiag / _GMMfull)\n"
           "  --niter N            EM iterations at most (default 25)\n"
           "  --tol T              stop when the mean log-likelihood changes by less (default 1e-3; 0 = all niter)\n"
           "  --seed S             subsampling, initialization and re-seeding seed (default 1234)\n"
           "  --init I             faiss_kmeans | kmeans++ (default faiss_kmeans)\n"
           "  --device D           cpu | cuda | auto: the E-step backend of every rank (default cpu)\n"
           "  --max-points-per-centroid M   subsample to K*M rows, as FAISS (default 256; 0 = all rows)\n"
           "  --chunk-size ROWS    rows read per chunk: bounds each rank's memory (default 65536)\n"
           "  --threads T          OpenMP threads per rank (default: OpenMP's)\n"
           "  --index DESC         also build this IVF index from the model, e.g. \"IVF1024_GMM,PQ16\"\n"
           "  --index-train-rows M rows rank 0 gathers to train the rest of the index (PQ, SQ; default 65536)\n"
           "  --add                add every row of FILE to the index (each rank encodes its rows; merged on rank 0)\n"
           "  --out FILE           rank 0 writes the index, or without --index the model as a GMM quantizer\n"
           "                       index (faiss_gmm::read_gmm_index reads both; faiss.read_index reads the means)\n"
           "  --checkpoint FILE    rank 0 writes the EM state to FILE (atomically) every --checkpoint-every iterations\n"
           "  --checkpoint-every N iterations between checkpoints (default 5 with --checkpoint)\n"
           "  --resume             continue from --checkpoint FILE: ends with the uninterrupted run's model, bit for bit\n"
           "  --collective-timeout S  end the job when a rank has not reached a collective step within S seconds\n"
           "                       (a rank that hangs without dying), naming the step and the rank (default 0: wait)\n"
           "  --quiet              no per-iteration progress (by default one line per EM iteration, with an ETA)\n" +
           inv.alias_note();
}

struct Options {
    bool help = false;
    std::string data;
    int64_t k = 0; ///< 0: the nlist of --index
    bool covariance_given = false;
    std::string index;
    int64_t index_train_rows = 65536;
    bool add = false;
    std::string out;
    bool quiet = false;
    int threads = 0;
    double collective_timeout = 0;
    CheckpointOptions checkpoint;
    GmmParams params;
};

Options parse_options(int argc, char** argv) {
    Options o;
    GmmParams& p = o.params;
    const std::map<std::string, std::function<void(const std::string&)>> with_value = {
            {"--data", [&](const std::string& v) { o.data = v; }},
            {"--k", [&](const std::string& v) { o.k = to_int64("--k", v); }},
            {"--covariance",
             [&](const std::string& v) {
                 p.covariance_type = to_choice("--covariance", v,
                                               {CovarianceType::Spherical, CovarianceType::Diagonal, CovarianceType::Full});
                 o.covariance_given = true;
             }},
            {"--niter", [&](const std::string& v) { p.niter = int(to_int64("--niter", v)); }},
            {"--tol", [&](const std::string& v) { p.tol = to_double("--tol", v); }},
            {"--seed", [&](const std::string& v) { p.seed = to_int64("--seed", v); }},
            {"--init",
             [&](const std::string& v) {
                 p.init = to_choice("--init", v, {InitMethod::FaissKMeans, InitMethod::KMeansPlusPlus});
             }},
            {"--device",
             [&](const std::string& v) { p.device = to_choice("--device", v, {Device::Cpu, Device::Cuda, Device::Auto}); }},
            {"--max-points-per-centroid",
             [&](const std::string& v) { p.max_points_per_centroid = int(to_int64("--max-points-per-centroid", v)); }},
            {"--chunk-size", [&](const std::string& v) { p.chunk_size = to_int64("--chunk-size", v); }},
            {"--threads", [&](const std::string& v) { o.threads = int(to_int64("--threads", v)); }},
            {"--index", [&](const std::string& v) { o.index = v; }},
            {"--index-train-rows", [&](const std::string& v) { o.index_train_rows = to_int64("--index-train-rows", v); }},
            {"--out", [&](const std::string& v) { o.out = v; }},
            {"--checkpoint", [&](const std::string& v) { o.checkpoint.path = v; }},
            {"--checkpoint-every",
             [&](const std::string& v) { o.checkpoint.every = int(to_int64("--checkpoint-every", v)); }},
            {"--collective-timeout",
             [&](const std::string& v) { o.collective_timeout = to_double("--collective-timeout", v); }},
    };
    const std::map<std::string, bool*> flags = {
            {"--add", &o.add}, {"--quiet", &o.quiet}, {"--help", &o.help}, {"--resume", &o.checkpoint.resume}};
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (flags.count(a) || a == "-h") {
            *flags.at(a == "-h" ? "--help" : a) = true;
        } else if (with_value.count(a)) {
            if (i + 1 == argc) throw UsageError(a + " needs a value");
            with_value.at(a)(argv[++i]);
        } else if (a.rfind("-", 0) != 0 && o.data.empty()) {
            o.data = a; // the vector file, positional
        } else {
            throw UsageError("unknown argument '" + a + "' (--help lists the options)");
        }
    }
    if (o.help) return o;
    if (o.data.empty()) throw UsageError("the vector file is required (FILE or --data FILE)");
    if (o.k == 0 && o.index.empty()) throw UsageError("--k K is required (or --index with an IVF<nlist>)");
    if (o.add && o.index.empty()) throw UsageError("--add needs --index");
    if (o.threads < 0 || o.index_train_rows < 1) throw UsageError("--threads and --index-train-rows must be positive");
    if (o.checkpoint.every < 0) throw UsageError("--checkpoint-every must be positive");
    if ((o.checkpoint.resume || o.checkpoint.every > 0) && o.checkpoint.path.empty()) {
        throw UsageError("--resume and --checkpoint-every need --checkpoint FILE");
    }
    if (!o.checkpoint.path.empty() && o.checkpoint.every == 0) o.checkpoint.every = 5;
    if (!(o.collective_timeout >= 0)) throw UsageError("--collective-timeout must be >= 0 seconds");
    p.verbose = !o.quiet;
    p.validate();
    return o;
}

/// The index of --index, untrained, with its GMM quantizer; sets o.k and the
/// covariance type from it. Throws for what the tool cannot build.
std::unique_ptr<faiss::Index> make_index(Options& o, int64_t d) {
    std::unique_ptr<faiss::Index> index(gmm_index_factory(int(d), o.index, faiss::METRIC_L2, o.params));
    const GmmQuantizer* q = find_gmm_quantizer(index.get());
    if (!q) throw std::invalid_argument("--index '" + o.index + "' has no GMM coarse quantizer (IVF<nlist>_GMM, _GMMdiag or _GMMfull)");
    if (dynamic_cast<faiss::IndexPreTransform*>(index.get())) {
        // The model is trained on the raw rows; a transform in front would need it in the transformed space.
        throw std::invalid_argument("--index '" + o.index + "': pre-transforms (OPQ, PCA, ...) are not supported here: "
                                    "the GMM is trained on the file's raw vectors");
    }
    if (o.add && !dynamic_cast<faiss::IndexIVF*>(index.get())) {
        throw std::invalid_argument("--add needs a plain IVF index (no spill, IDMap or refine wrapper): the ranks' "
                                    "lists are merged with IndexIVF::merge_from");
    }
    if (o.k != 0 && o.k != q->nlist) {
        throw std::invalid_argument("--k " + std::to_string(o.k) + " differs from the nlist " +
                                    std::to_string(q->nlist) + " of --index '" + o.index + "'");
    }
    if (o.covariance_given && o.params.covariance_type != q->params.covariance_type) {
        throw std::invalid_argument(std::string("--covariance ") + to_string(o.params.covariance_type) +
                                    " contradicts --index '" + o.index + "' (" +
                                    to_string(q->params.covariance_type) + ")");
    }
    o.k = q->nlist;
    o.params.covariance_type = q->params.covariance_type;
    return index;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Trains what the index needs beyond its coarse quantizer (PQ, SQ codebooks) on
/// rank 0, on `sample_rows_wanted` rows sampled from all ranks' rows; the other
/// ranks' index is left as it is.
void train_rest_of_index(Communicator& comm, faiss::Index& index, const VectorSource& mine, const GlobalRows& rows,
                         int64_t sample_rows_wanted, int64_t seed) {
    const int64_t m = std::min(sample_rows_wanted, rows.total);
    std::vector<float> local;
    check_all_ranks(comm, [&] {
        std::vector<int64_t> picked = sample_rows(rows.total, m, seed, rows.range.begin, rows.range.end);
        for (int64_t& i : picked) i -= rows.range.begin;
        local = read_rows_as_float(mine, picked);
    });
    std::vector<float> sample = gather_to_root(comm, std::move(local), 0);
    check_all_ranks(comm, [&] {
        // The quantizer holds the model (ntotal == nlist): IndexIVF::train leaves it as it is.
        if (comm.rank() == 0) index.train(m, sample.data());
    });
}

/// Adds every rank's rows to the index, rank 0's trained one: each rank encodes
/// its own rows into a copy, and rank 0 merges the copies in rank order with ids
/// shifted to global row numbers, so the lists hold what one process's add()
/// of all rows would give.
void add_rows(Communicator& comm, std::unique_ptr<faiss::Index>& index, const VectorSource& mine,
              const GlobalRows& rows, int64_t chunk) {
    const bool root = comm.rank() == 0;
    std::vector<uint8_t> trained;
    check_all_ranks(comm, [&] {
        if (root && comm.size() > 1) trained = serialize_gmm_index(index.get());
    });
    trained = broadcast_from(comm, std::move(trained), 0);
    std::vector<uint8_t> shard;
    check_all_ranks(comm, [&] {
        if (!root) index.reset(deserialize_gmm_index(trained.data(), trained.size()));
        std::vector<float> x;
        for (int64_t i0 = 0; i0 < mine.ntotal(); i0 += chunk) {
            const int64_t n = std::min(chunk, mine.ntotal() - i0);
            x.resize(size_t(n) * mine.d());
            read_as_float(mine, i0, n, x.data());
            index->add(n, x.data());
        }
        if (!root) shard = serialize_gmm_index(index.get());
    });
    std::vector<int64_t> shard_bytes;
    const std::vector<uint8_t> shards = gather_to_root(comm, std::move(shard), 0, &shard_bytes);
    check_all_ranks(comm, [&] {
        if (!root) return;
        auto* ivf = dynamic_cast<faiss::IndexIVF*>(index.get());
        const uint8_t* part_bytes = shards.data() + shard_bytes[0]; // rank 0 sent nothing: it is the base
        for (int r = 1; r < comm.size(); part_bytes += shard_bytes[size_t(r)], r++) {
            std::unique_ptr<faiss::Index> part(deserialize_gmm_index(part_bytes, size_t(shard_bytes[size_t(r)])));
            const int64_t first_row = rank_row_range(rows.total, r, comm.size()).begin;
            ivf->merge_from(*dynamic_cast<faiss::IndexIVF*>(part.get()), first_row);
        }
    });
}

int run(Communicator& comm, int argc, char** argv, const Invocation& inv) {
    const auto t_start = std::chrono::steady_clock::now();
    const bool root = comm.rank() == 0;
    const std::string prog = inv.prog();
    Options o;
    check_all_ranks(comm, [&] { o = parse_options(argc, argv); });
    if (o.help) {
        if (root) std::fputs(usage(inv).c_str(), stdout);
        return 0;
    }
    if (o.threads > 0) omp_set_num_threads(o.threads);
    comm.set_collective_timeout(o.collective_timeout);

    // Several ranks: every rank maps the same file and keeps its own range of rows.
    // One process: any format (IDX and HDF5 are read into memory).
    std::unique_ptr<VectorSource> file;
    check_all_ranks(comm, [&] {
        file = comm.size() > 1 ? datasets::open_mapped_vectors(o.data) : datasets::open_vectors(o.data);
    });
    check_same_on_all_ranks(comm, {file->ntotal(), file->d(), int64_t(file->type())},
                            "the ranks do not see the same data in " + o.data + ":",
                            [](const std::vector<int64_t>& v) {
                                return std::to_string(v[0]) + " rows, d = " + std::to_string(v[1]) + ", " +
                                       to_string(DataType(v[2]));
                            });
    const RowRange range = rank_row_range(file->ntotal(), comm.rank(), comm.size());
    const RowRangeSource mine(*file, range.begin, range.size());
    const GlobalRows rows{range, file->ntotal()};

    std::unique_ptr<faiss::Index> index;
    check_all_ranks(comm, [&] {
        if (!o.index.empty()) index = make_index(o, file->d());
    });
    if (root) {
        std::printf("%s: %s: %lld x %lld %s; %d rank(s), up to %lld rows and %d thread(s) each; "
                    "K = %lld\n",
                    prog.c_str(), o.data.c_str(), (long long)file->ntotal(), (long long)file->d(), to_string(file->type()),
                    comm.size(), (long long)range.size(), omp_get_max_threads(), (long long)o.k);
        std::fflush(stdout);
    }

    GmmTrainer trainer(o.params);
    trainer.set_communicator(&comm);
    trainer.checkpoint = o.checkpoint;
    const GmmModel model = trainer.fit(mine, o.k);
    if (root) {
        const GmmIterationStats& last = trainer.iteration_stats.back();
        std::printf("%s: %d EM iterations%s on %lld rows, backend %s: mean log-likelihood %.6g, "
                    "%.2f s\n",
                    prog.c_str(), trainer.n_iter, trainer.converged ? " (converged)" : "", (long long)trainer.n_train,
                    trainer.backend.c_str(), last.loglik, seconds_since(t_start));
        std::fflush(stdout);
    }

    if (index) {
        GmmQuantizer* q = find_gmm_quantizer(index.get());
        q->set_model(model);
        q->iteration_stats = trainer.iteration_stats;
        train_rest_of_index(comm, *index, mine, rows, o.index_train_rows, o.params.seed + 2);
        if (o.add) {
            const auto t_add = std::chrono::steady_clock::now();
            add_rows(comm, index, mine, rows, o.params.chunk_size);
            if (root) {
                std::printf("%s: added %lld rows in %.2f s\n", prog.c_str(), (long long)index->ntotal,
                            seconds_since(t_add));
            }
        }
    } else if (root) {
        // The model alone, as the GmmQuantizer index that holds it.
        auto q = std::make_unique<GmmQuantizer>(model.d, model.K, o.params);
        q->set_model(model);
        q->iteration_stats = trainer.iteration_stats;
        index = std::move(q);
    }
    check_all_ranks(comm, [&] {
        if (root && !o.out.empty()) {
            write_gmm_index(index.get(), o.out);
            std::printf("%s: wrote %s (%.2f s since the start)\n", prog.c_str(), o.out.c_str(), seconds_since(t_start));
        }
    });
    return 0;
}

} // namespace

int train_command(Communicator& comm, int argc, char** argv, const Invocation& inv) {
    const std::string prog = inv.prog();
    try {
        return run(comm, argc, argv, inv);
    } catch (const UsageError& e) {
        // One process (check_all_ranks passes the exception on as it is): bad usage.
        std::fprintf(stderr, "%s: error: %s\n", prog.c_str(), e.what());
        return 2;
    } catch (const DistributedError& e) {
        // Every rank threw this, so none waits for another: end cleanly.
        if (comm.rank() == 0) std::fprintf(stderr, "%s: error:\n%s\n", prog.c_str(), e.what());
        return 1;
    } catch (const std::exception& e) {
        if (comm.size() == 1) {
            std::fprintf(stderr, "%s: error: %s\n", prog.c_str(), e.what());
            return 1;
        }
        // One rank only, maybe while others wait in a collective: end the job.
        comm.abort(1, prog + ": rank " + std::to_string(comm.rank()) + ": " + e.what());
    }
    return 1; // not reached: abort() does not return (the compiler cannot see that through the virtual call)
}

} // namespace cli
} // namespace faiss_gmm
