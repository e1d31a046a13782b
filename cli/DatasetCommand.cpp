// faiss-gmm dataset: inspect, convert, subset, generate ANN datasets and compute
// exact ground truth. Used by scripts/fetch_datasets.sh after downloading. The
// old name faiss-gmm-dataset runs the same code.
//
//   faiss-gmm dataset info FILE
//   faiss-gmm dataset convert IN OUT [--rows I0:N] [--allow-prefix]
//   faiss-gmm dataset ann-benchmarks FILE.hdf5 OUTDIR NAME
//   faiss-gmm dataset groundtruth BASE QUERIES OUT.ivecs [--k 100] [--metric l2|ip|angular]
//                                 [--distances OUT.fvecs] [--block ROWS]
//   faiss-gmm dataset generate OUT [--n N] [--d D] [--components K] [--spread S]
//                                 [--anisotropy A] [--scale-ratio R] [--skew W] [--noise F]
//                                 [--uniform] [--seed S]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/Commands.h"
#include "datasets/BinFile.h"
#include "datasets/Dataset.h"
#include "datasets/FileWriter.h"
#include "datasets/GroundTruth.h"
#include "datasets/Hdf5File.h"
#include "datasets/Synthetic.h"
#include "datasets/VecsFile.h"

namespace faiss_gmm {
namespace cli {
namespace {

using namespace faiss_gmm::datasets;

std::string usage(const Invocation& inv) {
    const std::string p = "  " + inv.prog();
    return "usage:\n" +
           p + " info FILE\n"
           "      rows, dimension and type of a vector file, shape of an id file, datasets of an HDF5 file\n" +
           p + " convert IN OUT [--rows I0:N] [--allow-prefix]\n"
           "      vectors: .fvecs .bvecs .fbin .u8bin IDX(.gz) file.hdf5[:name] -> .fvecs .bvecs .fbin .u8bin\n"
           "      ids:     .ivecs .ibin .bin(big-ann gt) file.hdf5:neighbors  -> .ivecs .ibin\n"
           "      --allow-prefix: accept a .fbin/.u8bin shorter than its header (partial download)\n" +
           p + " ann-benchmarks FILE.hdf5 OUTDIR NAME\n"
           "      writes NAME_base.fvecs NAME_query.fvecs NAME_groundtruth.ivecs NAME_metric.txt\n" +
           p + " groundtruth BASE QUERIES OUT.ivecs [--k 100] [--metric l2|ip|angular]\n"
           "      [--distances OUT.fvecs] [--block ROWS]\n" +
           p + " generate OUT [--n 10000] [--d 32] [--components 16] [--spread 4]\n"
           "      [--anisotropy 1] [--scale-ratio 1] [--skew 0] [--noise 0] [--uniform] [--seed 1234]\n"
           "(an index or model file: faiss-gmm info FILE)\n" +
           inv.alias_note();
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Splits positional arguments from --key value options of one subcommand: its
// options with a value and its flags; anything else is a UsageError.
struct Args {
    std::vector<std::string> pos;
    std::map<std::string, std::string> opt;
    Args(int argc, char** argv, const std::vector<std::string>& options, const std::vector<std::string>& flags) {
        auto listed = [](const std::vector<std::string>& list, const std::string& a) {
            return std::find(list.begin(), list.end(), a) != list.end();
        };
        for (int i = 2; i < argc; i++) {
            std::string a = argv[i];
            if (listed(flags, a)) {
                opt[a] = "1";
            } else if (listed(options, a)) {
                if (i + 1 == argc) throw UsageError("option " + a + " needs a value");
                opt[a] = argv[++i];
            } else if (a.rfind("--", 0) == 0) {
                throw UsageError("unknown option '" + a + "' for " + argv[1]);
            } else {
                pos.push_back(a);
            }
        }
    }
    std::string get(const std::string& k, const std::string& def) const {
        auto it = opt.find(k);
        return it == opt.end() ? def : it->second;
    }
    int64_t get_int(const std::string& k, int64_t def) const { return has(k) ? to_int64(k, get(k, "")) : def; }
    double get_double(const std::string& k, double def) const { return has(k) ? to_double(k, get(k, "")) : def; }
    bool has(const std::string& k) const { return opt.count(k) > 0; }
};

bool is_id_file(const std::string& p) {
    return ends_with(p, ".ivecs") || ends_with(p, ".ibin") || ends_with(p, ".bin") ||
           p.find(":neighbors") != std::string::npos;
}

std::unique_ptr<VectorSource> open_in(const std::string& path, bool allow_prefix) {
    if (allow_prefix && (ends_with(path, ".fbin") || ends_with(path, ".u8bin"))) {
        auto src = std::make_unique<BinFileSource>(path, true);
        if (src->ntotal() < src->header_n()) {
            std::fprintf(stderr, "%s: partial file, %ld of %ld rows present\n", path.c_str(),
                         long(src->ntotal()), long(src->header_n()));
        }
        return src;
    }
    return open_vectors(path);
}

// Streams rows [i0, i0 + n) of src to OUT chunk by chunk (bounded memory).
void stream_vectors(const VectorSource& src, int64_t i0, int64_t n, const std::string& out) {
    bool vecs = ends_with(out, ".fvecs") || ends_with(out, ".bvecs");
    bool bin = ends_with(out, ".fbin") || ends_with(out, ".u8bin");
    if (!vecs && !bin) {
        throw std::invalid_argument(out + ": unknown output vector type (expected .fvecs, .bvecs, .fbin, .u8bin)");
    }
    bool out_bytes = ends_with(out, ".bvecs") || ends_with(out, ".u8bin");
    const int64_t d = src.d();
    FileWriter w(out);
    if (bin) {
        int32_t h[2] = {int32_t(n), int32_t(d)};
        w.write(h, 8);
    }
    std::vector<float> f;
    std::vector<uint8_t> b;
    int32_t d32 = int32_t(d);
    const int64_t chunk = 1 << 14;
    for (int64_t r = 0; r < n; r += chunk) {
        int64_t nr = std::min(chunk, n - r);
        f.resize(size_t(nr) * d);
        read_as_float(src, i0 + r, nr, f.data());
        if (out_bytes) {
            b.resize(f.size());
            for (size_t i = 0; i < f.size(); i++) {
                if (!(f[i] >= 0 && f[i] <= 255 && f[i] == float(int(f[i])))) {
                    throw std::invalid_argument(out + ": value " + std::to_string(f[i]) + " is not a uint8");
                }
                b[i] = uint8_t(f[i]);
            }
        }
        for (int64_t i = 0; i < nr; i++) {
            if (vecs) {
                w.write(&d32, 4);
            }
            if (out_bytes) {
                w.write(b.data() + i * d, d);
            } else {
                w.write(f.data() + i * d, d * 4);
            }
        }
        if (n > 10 * chunk) {
            std::fprintf(stderr, "\r%s: %ld / %ld rows", out.c_str(), long(r + nr), long(n));
        }
    }
    if (n > 10 * chunk) {
        std::fprintf(stderr, "\n");
    }
    w.close();
}

int cmd_info(const Args& a) {
    if (a.pos.size() != 1) {
        throw UsageError("info takes one file");
    }
    const std::string& p = a.pos[0];
    if (ends_with(p, ".hdf5") || ends_with(p, ".h5")) {
        for (const char* name : {"train", "test", "neighbors", "distances"}) {
            int64_t n, d;
            try {
                hdf5_shape(p, name, &n, &d);
                std::printf("%s: %ld x %ld\n", name, long(n), long(d));
            } catch (const std::exception&) {
                std::printf("%s: absent\n", name);
            }
        }
        std::printf("distance: %s\n", read_hdf5_attribute(p, "distance").c_str());
        return 0;
    }
    if (is_id_file(p)) {
        IntMatrix ids = read_ids(p);
        std::printf("%s: %ld x %ld ids\n", p.c_str(), long(ids.n), long(ids.d));
        return 0;
    }
    std::unique_ptr<VectorSource> src = open_vectors(p);
    std::printf("%s: %ld x %ld %s\n", p.c_str(), long(src->ntotal()), long(src->d()), to_string(src->type()));
    return 0;
}

int cmd_convert(const Args& a) {
    if (a.pos.size() != 2) {
        throw UsageError("convert takes IN and OUT");
    }
    const std::string &in = a.pos[0], &out = a.pos[1];
    int64_t i0 = 0, n = -1;
    if (a.has("--rows")) {
        std::string r = a.get("--rows", "");
        size_t c = r.find(':');
        if (c == std::string::npos) {
            throw UsageError("--rows takes I0:N, got '" + r + "'");
        }
        i0 = to_int64("--rows (I0)", r.substr(0, c));
        n = to_int64("--rows (N)", r.substr(c + 1));
    }
    if (is_id_file(in)) {
        IntMatrix ids = read_ids(in, i0, n);
        write_ids(out, ids);
        std::printf("%s: %ld x %ld ids\n", out.c_str(), long(ids.n), long(ids.d));
        return 0;
    }
    std::unique_ptr<VectorSource> src = open_in(in, a.has("--allow-prefix"));
    n = resolve_row_range(in, src->ntotal(), i0, n);
    stream_vectors(*src, i0, n, out);
    std::printf("%s: %ld x %ld\n", out.c_str(), long(n), long(src->d()));
    return 0;
}

int cmd_ann_benchmarks(const Args& a) {
    if (a.pos.size() != 3) {
        throw UsageError("ann-benchmarks takes FILE.hdf5 OUTDIR NAME");
    }
    AnnBenchmarksData data = read_ann_benchmarks(a.pos[0]);
    std::string prefix = a.pos[1] + "/" + a.pos[2];
    write_vectors(prefix + "_base.fvecs", data.train);
    write_vectors(prefix + "_query.fvecs", data.test);
    write_ids(prefix + "_groundtruth.ivecs", data.neighbors);
    {
        FileWriter w(prefix + "_metric.txt");
        std::string m = data.distance + "\n";
        w.write(m.data(), m.size());
        w.close();
    }
    std::printf("%s: base %ld x %ld, queries %ld, ground truth k = %ld, distance %s\n", prefix.c_str(),
                long(data.train.n), long(data.train.d), long(data.test.n), long(data.neighbors.d),
                data.distance.c_str());
    return 0;
}

int cmd_groundtruth(const Args& a) {
    if (a.pos.size() != 3) {
        throw UsageError("groundtruth takes BASE QUERIES OUT.ivecs");
    }
    std::unique_ptr<VectorSource> base = open_vectors(a.pos[0]);
    FloatMatrix q = read_vectors(a.pos[1]);
    if (q.d != base->d()) {
        throw std::invalid_argument("queries have d = " + std::to_string(q.d) + ", base has d = " +
                                    std::to_string(base->d()));
    }
    GroundTruthParams gp;
    gp.verbose = true;
    gp.base_block = a.get_int("--block", gp.base_block);
    int k = int(a.get_int("--k", 100));
    Metric metric = parse_metric(a.get("--metric", "l2"));
    GroundTruth gt = compute_ground_truth(*base, q.n, q.data.data(), k, metric, gp);
    write_ids(a.pos[2], gt.ids);
    if (a.has("--distances")) {
        write_vectors(a.get("--distances", ""), gt.distances);
    }
    std::printf("%s: %ld queries x k = %d (%s)\n", a.pos[2].c_str(), long(q.n), k, to_string(metric));
    return 0;
}

int cmd_generate(const Args& a) {
    if (a.pos.size() != 1) {
        throw UsageError("generate takes OUT");
    }
    MixtureParams p;
    p.n = a.get_int("--n", p.n);
    p.d = a.get_int("--d", p.d);
    p.ncomponents = a.get_int("--components", p.ncomponents);
    p.spread = a.get_double("--spread", p.spread);
    p.anisotropy = a.get_double("--anisotropy", p.anisotropy);
    p.scale_ratio = a.get_double("--scale-ratio", p.scale_ratio);
    p.weight_skew = a.get_double("--skew", p.weight_skew);
    p.noise_fraction = a.get_double("--noise", p.noise_fraction);
    p.seed = uint64_t(a.get_int("--seed", int64_t(p.seed)));
    FloatMatrix x = a.has("--uniform") ? generate_uniform(p.n, p.d, p.seed) : generate_mixture(p).x;
    write_vectors(a.pos[0], x);
    std::printf("%s: %ld x %ld\n", a.pos[0].c_str(), long(x.n), long(x.d));
    return 0;
}

/// A subcommand: what it does, its options with a value, its flags.
struct Subcommand {
    int (*run)(const Args&);
    std::vector<std::string> options;
    std::vector<std::string> flags;
};

} // namespace

int dataset_command(int argc, char** argv, const Invocation& inv) {
    const std::string prog = inv.prog();
    if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
        if (argc < 2) std::fprintf(stderr, "%s: error: which subcommand? (info, convert, ann-benchmarks, groundtruth, generate)\n", prog.c_str());
        std::fputs(usage(inv).c_str(), argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const std::map<std::string, Subcommand> subcommands = {
            {"info", {cmd_info, {}, {}}},
            {"convert", {cmd_convert, {"--rows"}, {"--allow-prefix"}}},
            {"ann-benchmarks", {cmd_ann_benchmarks, {}, {}}},
            {"groundtruth", {cmd_groundtruth, {"--k", "--metric", "--distances", "--block"}, {}}},
            {"generate",
             {cmd_generate,
              {"--n", "--d", "--components", "--spread", "--anisotropy", "--scale-ratio", "--skew", "--noise", "--seed"},
              {"--uniform"}}},
    };
    const std::string cmd = argv[1];
    auto it = subcommands.find(cmd);
    if (it == subcommands.end()) {
        std::fprintf(stderr, "%s: error: unknown subcommand '%s' (info, convert, ann-benchmarks, groundtruth, generate)\n",
                     prog.c_str(), cmd.c_str());
        return 2;
    }
    try {
        return it->second.run(Args(argc, argv, it->second.options, it->second.flags));
    } catch (const UsageError& e) {
        std::fprintf(stderr, "%s %s: error: %s (--help lists the options)\n", prog.c_str(), cmd.c_str(), e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s %s: error: %s\n", prog.c_str(), cmd.c_str(), e.what());
        return 1;
    }
}

} // namespace cli
} // namespace faiss_gmm
