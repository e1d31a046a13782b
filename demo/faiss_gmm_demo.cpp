// faiss-gmm-demo: the project's "main job". Trains a GMM-IVF and a k-means IVF
// (FAISS) index on Fashion-MNIST (Debian's dataset-fashion-mnist: 60K training
// images as the base, the 10K test images as queries, exact ground truth
// computed here) and prints recall@10 and distance computations per query for
// both over an nprobe sweep. Everything is measured by the eval library.
//
//   faiss-gmm-demo [--nlist 256] [--max-nprobe 16] [--queries 10000] [--gmm diag|spherical]
//                  [--data DIR] [--threads T] [--out DIR]
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>

#include "datasets/Dataset.h"
#include "eval/Evaluation.h"
#include "eval/Report.h"

using namespace faiss_gmm;

int main(int argc, char** argv) {
    std::map<std::string, std::string> opt;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "-h" || a == "--help") {
            std::printf("usage: faiss-gmm-demo [--nlist 256] [--max-nprobe 16] [--queries 10000] "
                        "[--gmm spherical|diag] [--data DIR] [--threads T] [--out DIR]\n");
            return 0;
        }
        if (a.rfind("--", 0) != 0 || i + 1 >= argc) {
            std::fprintf(stderr, "faiss-gmm-demo: bad argument '%s' (see --help)\n", a.c_str());
            return 2;
        }
        opt[a] = argv[++i];
    }
    auto get = [&](const char* k, const std::string& def) {
        auto it = opt.find(k);
        return it == opt.end() ? def : it->second;
    };
    try {
        // Choices that keep the whole run within a few minutes on a 2-core machine:
        // nlist 256 ≈ sqrt(60K), so about 234 vectors per list; every training row
        // is used (256 × 256 > 60K, FAISS's subsampling rule); the sweep stops at
        // nprobe 16 (1/16 of the lists), where both are near recall 0.99: each
        // further doubling costs as much search time as everything before it.
        const int64_t nlist = std::stoll(get("--nlist", "256"));
        const int64_t max_nprobe = std::stoll(get("--max-nprobe", "16"));
        const int64_t nq = std::stoll(get("--queries", "10000"));
        const std::string gmm_kind = get("--gmm", "spherical");
        const std::string dir = get("--data", datasets::kFashionMnistDir);
        if (gmm_kind != "spherical" && gmm_kind != "diag") {
            throw std::invalid_argument("--gmm takes spherical or diag");
        }

        datasets::DatasetSpec spec = datasets::named_dataset("fashion-mnist", "");
        spec.base = dir + "/train-images-idx3-ubyte.gz";
        spec.queries = dir + "/t10k-images-idx3-ubyte.gz";
        spec.max_queries = nq;
        spec.gt_k = 10;

        eval::EvalParams p;
        p.index_description = "IVF" + std::to_string(nlist) + ",Flat";
        p.methods = {"kmeans", gmm_kind == "diag" ? "gmmdiag" : "gmm"};
        for (int64_t np = 1; np <= std::min(max_nprobe, nlist); np *= 2) {
            p.nprobes.push_back(np);
        }
        // The demo reports recall and distance computations; QPS is secondary here,
        // so searches use every core to keep the run short.
        p.search_threads = int(std::stoll(get("--threads", "0")));

        std::printf("faiss-gmm demo: Fashion-MNIST from %s\n", dir.c_str());
        std::printf("  base: 60000 training images, queries: first %ld test images, d = 784 (uint8 pixels as float)\n",
                    long(nq));
        std::printf("  index: %s (k-means, FAISS) vs %s (GMM, %s covariances)\n", p.index_description.c_str(),
                    eval::with_ivf_suffix(p.index_description, gmm_kind == "diag" ? "_GMMdiag" : "_GMM").c_str(),
                    gmm_kind.c_str());
        std::printf("  training: all 60000 base rows (nlist %ld x max_points_per_centroid %d >= 60000); "
                    "k-means %d iterations; GMM: %d k-means init iterations + up to %d EM iterations (tol %g); seed %ld\n",
                    long(nlist), p.max_points_per_centroid, p.kmeans_niter, p.gmm.init_niter, p.gmm.niter, p.gmm.tol,
                    long(p.seed));
        std::printf("  threads: %d; nprobe sweep 1..%ld\n\n", omp_get_max_threads(), long(p.nprobes.back()));
        std::fflush(stdout);

        datasets::Dataset data = datasets::load_dataset(spec, true);
        std::printf("exact ground truth (k = 10, blocked FAISS flat search + float64 re-ranking): %.1f s\n\n",
                    data.groundtruth_time_s);
        std::fflush(stdout);

        eval::EvalReport r = eval::evaluate(data, p);
        const eval::MethodResult& km = r.methods[0];
        const eval::MethodResult& gm = r.methods[1];
        std::printf("\ntraining time: k-means %.1f s, GMM %.1f s; list imbalance: k-means %.3f, GMM %.3f\n\n",
                    km.train_s, gm.train_s, km.imbalance, gm.imbalance);
        std::printf("distance computations per query = vectors scanned in the probed lists (+ %ld to the "
                    "centroids, the same for both)\n\n",
                    long(nlist));
        std::printf("| nprobe | k-means recall@10 | k-means dist. comp. | GMM recall@10 | GMM dist. comp. |\n");
        std::printf("|---|---|---|---|---|\n");
        for (size_t i = 0; i < km.points.size() && i < gm.points.size(); i++) {
            std::printf("| %ld | %.4f | %.0f | %.4f | %.0f |\n", long(km.points[i].nprobe), km.points[i].recall,
                        km.points[i].distinct, gm.points[i].recall, gm.points[i].distinct);
        }
        std::printf("\n");
        for (const eval::Comparison& c : r.comparisons) {
            for (const eval::TargetRatio& t : c.targets) {
                if (std::isnan(t.ratio_distinct)) {
                    std::printf("recall@10 = %.2f: not reached by both within the sweep\n", t.target);
                } else {
                    std::printf("recall@10 = %.2f: GMM needs %.2fx the distance computations of k-means%s\n", t.target,
                                t.ratio_distinct, t.bound ? " (bound: reached at nprobe 1)" : "");
                }
            }
            std::printf("mean recall@10 gain of GMM at equal distance computations: %+.4f\n", c.mean_gain);
        }
        if (opt.count("--out")) {
            std::string base = get("--out", "") + "/fashion-mnist-demo";
            eval::write_csv({r}, base + ".csv");
            eval::write_json({r}, base + ".json");
            std::printf("wrote %s.{csv,json}\n", base.c_str());
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "faiss-gmm-demo: error: %s\n", e.what());
        return 1;
    }
}
