// faiss-gmm-dataset: inspect, convert, subset, generate ANN datasets and compute
// exact ground truth. Used by scripts/fetch_datasets.sh after downloading.
//
//   faiss-gmm-dataset info FILE
//   faiss-gmm-dataset convert IN OUT [--rows I0:N] [--allow-prefix]
//   faiss-gmm-dataset ann-benchmarks FILE.hdf5 OUTDIR NAME
//   faiss-gmm-dataset groundtruth BASE QUERIES OUT.ivecs [--k 100] [--metric l2|ip|angular]
//                                 [--distances OUT.fvecs] [--block ROWS]
//   faiss-gmm-dataset generate OUT [--n N] [--d D] [--components K] [--spread S]
//                                 [--anisotropy A] [--scale-ratio R] [--skew W] [--noise F]
//                                 [--uniform] [--seed S]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "datasets/BinFile.h"
#include "datasets/Dataset.h"
#include "datasets/FileWriter.h"
#include "datasets/GroundTruth.h"
#include "datasets/Hdf5File.h"
#include "datasets/Synthetic.h"
#include "datasets/VecsFile.h"

using namespace faiss_gmm;
using namespace faiss_gmm::datasets;

namespace {

const char* kUsage =
        "usage:\n"
        "  faiss-gmm-dataset info FILE\n"
        "  faiss-gmm-dataset convert IN OUT [--rows I0:N] [--allow-prefix]\n"
        "      vectors: .fvecs .bvecs .fbin .u8bin IDX(.gz) file.hdf5[:name] -> .fvecs .bvecs .fbin .u8bin\n"
        "      ids:     .ivecs .ibin .bin(big-ann gt) file.hdf5:neighbors  -> .ivecs .ibin\n"
        "      --allow-prefix: accept a .fbin/.u8bin shorter than its header (partial download)\n"
        "  faiss-gmm-dataset ann-benchmarks FILE.hdf5 OUTDIR NAME\n"
        "      writes NAME_base.fvecs NAME_query.fvecs NAME_groundtruth.ivecs NAME_metric.txt\n"
        "  faiss-gmm-dataset groundtruth BASE QUERIES OUT.ivecs [--k 100] [--metric l2|ip|angular]\n"
        "      [--distances OUT.fvecs] [--block ROWS]\n"
        "  faiss-gmm-dataset generate OUT [--n 10000] [--d 32] [--components 16] [--spread 4]\n"
        "      [--anisotropy 1] [--scale-ratio 1] [--skew 0] [--noise 0] [--uniform] [--seed 1234]\n";

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Splits positional arguments from --key value options (flags take no value).
struct Args {
    std::vector<std::string> pos;
    std::map<std::string, std::string> opt;
    Args(int argc, char** argv, const std::vector<std::string>& flags) {
        for (int i = 2; i < argc; i++) {
            std::string a = argv[i];
            if (a.rfind("--", 0) == 0) {
                bool is_flag = false;
                for (const auto& f : flags) {
                    is_flag |= (a == f);
                }
                if (is_flag) {
                    opt[a] = "1";
                } else if (i + 1 < argc) {
                    opt[a] = argv[++i];
                } else {
                    throw std::invalid_argument("option " + a + " needs a value");
                }
            } else {
                pos.push_back(a);
            }
        }
    }
    std::string get(const std::string& k, const std::string& def) const {
        auto it = opt.find(k);
        return it == opt.end() ? def : it->second;
    }
    bool has(const std::string& k) const { return opt.count(k) > 0; }
};

int64_t to_int(const std::string& s) {
    size_t pos;
    long long v = std::stoll(s, &pos);
    if (pos != s.size()) {
        throw std::invalid_argument("not an integer: " + s);
    }
    return v;
}

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
        throw std::invalid_argument("info takes one file");
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
        throw std::invalid_argument("convert takes IN and OUT");
    }
    const std::string &in = a.pos[0], &out = a.pos[1];
    int64_t i0 = 0, n = -1;
    if (a.has("--rows")) {
        std::string r = a.get("--rows", "");
        size_t c = r.find(':');
        if (c == std::string::npos) {
            throw std::invalid_argument("--rows takes I0:N");
        }
        i0 = to_int(r.substr(0, c));
        n = to_int(r.substr(c + 1));
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
        throw std::invalid_argument("ann-benchmarks takes FILE.hdf5 OUTDIR NAME");
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
        throw std::invalid_argument("groundtruth takes BASE QUERIES OUT.ivecs");
    }
    std::unique_ptr<VectorSource> base = open_vectors(a.pos[0]);
    FloatMatrix q = read_vectors(a.pos[1]);
    if (q.d != base->d()) {
        throw std::invalid_argument("queries have d = " + std::to_string(q.d) + ", base has d = " +
                                    std::to_string(base->d()));
    }
    GroundTruthParams gp;
    gp.verbose = true;
    gp.base_block = to_int(a.get("--block", std::to_string(gp.base_block)));
    int k = int(to_int(a.get("--k", "100")));
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
        throw std::invalid_argument("generate takes OUT");
    }
    MixtureParams p;
    p.n = to_int(a.get("--n", std::to_string(p.n)));
    p.d = to_int(a.get("--d", std::to_string(p.d)));
    p.ncomponents = to_int(a.get("--components", std::to_string(p.ncomponents)));
    p.spread = std::stod(a.get("--spread", std::to_string(p.spread)));
    p.anisotropy = std::stod(a.get("--anisotropy", std::to_string(p.anisotropy)));
    p.scale_ratio = std::stod(a.get("--scale-ratio", std::to_string(p.scale_ratio)));
    p.weight_skew = std::stod(a.get("--skew", std::to_string(p.weight_skew)));
    p.noise_fraction = std::stod(a.get("--noise", std::to_string(p.noise_fraction)));
    p.seed = uint64_t(to_int(a.get("--seed", std::to_string(p.seed))));
    FloatMatrix x = a.has("--uniform") ? generate_uniform(p.n, p.d, p.seed) : generate_mixture(p).x;
    write_vectors(a.pos[0], x);
    std::printf("%s: %ld x %ld\n", a.pos[0].c_str(), long(x.n), long(x.d));
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
        std::fputs(kUsage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    std::string cmd = argv[1];
    try {
        Args a(argc, argv, {"--allow-prefix", "--uniform"});
        if (cmd == "info") {
            return cmd_info(a);
        } else if (cmd == "convert") {
            return cmd_convert(a);
        } else if (cmd == "ann-benchmarks") {
            return cmd_ann_benchmarks(a);
        } else if (cmd == "groundtruth") {
            return cmd_groundtruth(a);
        } else if (cmd == "generate") {
            return cmd_generate(a);
        }
        std::fprintf(stderr, "unknown command '%s'\n%s", cmd.c_str(), kUsage);
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "faiss-gmm-dataset %s: error: %s\n", cmd.c_str(), e.what());
        return 1;
    }
}
