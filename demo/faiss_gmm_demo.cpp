// faiss-gmm-demo: the project's "main job". On Fashion-MNIST (Debian's
// dataset-fashion-mnist: 60K training images as the base, the test images as
// queries, exact ground truth computed here) or on debsift1m (1M SIFT
// descriptors, when built), it trains three IVF indexes with the same nlist and
// measures recall@10 against the distance computations per query over an nprobe
// sweep:
//   k-means IVF (FAISS's own IVF<nlist>,Flat), the baseline;
//   GMM-IVF (IVF<nlist>_GMM,Flat), the coarse quantizer trained by EM;
//   the recommended recipe of the 1M study (README, "Search quality"): GMM
//   lists (primary by posterior) with GMM-SOAR spill to 1.5 entries per vector,
//   which buys fewer distance computations for more list memory (the output
//   says how much).
// It prints the table, the cost ratios at fixed recall, the memory, writes a
// CSV/JSON and a PNG plot (eval/plot_results.py) and prints their paths. Every
// figure is measured by the eval library; nothing is hard-coded.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "cli/CommandLine.h"
#include "datasets/Dataset.h"
#include "eval/Evaluation.h"
#include "eval/Report.h"

using namespace faiss_gmm;

namespace {

// The recommended recipe, named in this one place: GMM lists, each vector in its
// list of highest posterior and half of them also in the list SOAR's amended
// distance inside the GMM's log-density prefers (GMM-SOAR, λ = 0.5), 1.5 entries
// per vector (gmm_index_factory's IVF-token options). The method name ("gmm_" +
// options) and the description (IVF<nlist>_GMM_<options>,Flat) are derived from it.
const char* const kRecipeOptions = "gsoar0.5_ppost_spill1.5";

const char* const kUsage = R"(usage: faiss-gmm-demo [options]
  k-means IVF (FAISS) vs GMM-IVF vs the recommended recipe (GMM-SOAR spill 1.5), recall@10 against
  distance computations per query. Progress lines on stdout with the elapsed time.
dataset:
  (default)                  Fashion-MNIST from Debian's dataset-fashion-mnist (60K base, 10K queries)
  --data DIR                 where its idx.gz files are (default /usr/share/datasets/fashion-mnist)
  --dataset debsift1m DIR    debsift1m (1M SIFT, built by ../shared/datasets/debsift1m/make_dataset.sh DIR)
  --subset N                 the first N base vectors only (exact ground truth recomputed): for CI
  --queries N                the first N queries (default 2000)
index and sweep:
  --nlist N                  lists (default 256 on Fashion-MNIST, 1024 on debsift1m)
  --max-nprobe N             the sweep's last nprobe (default 16 on Fashion-MNIST, 96 on debsift1m); a sweep
                             also ends at the first nprobe with recall@10 >= 0.97
  --threads T                OpenMP threads (default: all)
output:
  --out DIR                  CSV, JSON and PNG go here (default: build/demo/results)
  --python PATH              the interpreter with matplotlib (default /usr/bin/python3)
)";

struct Options {
    std::string dataset = "fashion-mnist";
    std::string dir = datasets::kFashionMnistDir;
    int64_t subset = 0;
    int64_t queries = 2000;
    int64_t nlist = 0;      ///< 0: the dataset's default
    int64_t max_nprobe = 0; ///< 0: the dataset's default
    int threads = 0;
    std::string out = FAISS_GMM_DEMO_OUT_DIR;
    std::string python = "/usr/bin/python3";
};

int64_t positive_int(const std::string& option, const std::string& value) {
    return cli::to_int64_at_least(option, value, 1);
}

Options parse_options(int argc, char** argv, bool* help) {
    Options o;
    *help = false;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "-h" || a == "--help") {
            *help = true;
            return o;
        }
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw cli::UsageError(a + " needs a value");
            return argv[++i];
        };
        if (a == "--dataset") {
            o.dataset = value();
            if (o.dataset == "debsift1m") {
                o.dir = value();
            } else if (o.dataset != "fashion-mnist") {
                throw cli::UsageError("--dataset takes fashion-mnist or 'debsift1m DIR', got '" + o.dataset + "'");
            }
        } else if (a == "--data") {
            o.dir = value();
        } else if (a == "--subset") {
            o.subset = positive_int(a, value());
        } else if (a == "--queries") {
            o.queries = positive_int(a, value());
        } else if (a == "--nlist") {
            o.nlist = positive_int(a, value());
        } else if (a == "--max-nprobe") {
            o.max_nprobe = positive_int(a, value());
        } else if (a == "--threads") {
            o.threads = int(positive_int(a, value()));
        } else if (a == "--out") {
            o.out = value();
        } else if (a == "--python") {
            o.python = value();
        } else {
            throw cli::UsageError("unknown argument '" + a + "' (--help lists the options)");
        }
    }
    const bool sift = o.dataset == "debsift1m";
    if (o.nlist == 0) o.nlist = sift ? 1024 : 256;
    if (o.max_nprobe == 0) o.max_nprobe = sift ? 96 : 16;
    return o;
}

/// Progress lines on stdout: the time since the demo started, then what happens.
class Progress {
  public:
    void step(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
        std::printf("[%7.1f s] ", seconds());
        va_list args;
        va_start(args, fmt);
        std::vprintf(fmt, args);
        va_end(args);
        std::printf("\n");
        std::fflush(stdout);
    }
    double seconds() const {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    }

  private:
    std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

datasets::DatasetSpec dataset_spec(const Options& o) {
    datasets::DatasetSpec spec;
    if (o.dataset == "debsift1m") {
        spec.name = "debsift1m";
        spec.base = o.dir + "/base.bvecs";
        spec.queries = o.dir + "/query.bvecs";
        spec.groundtruth = o.dir + "/groundtruth.ivecs"; // recomputed for a --subset
    } else {
        spec.name = "fashion-mnist";
        spec.base = o.dir + "/train-images-idx3-ubyte.gz";
        spec.queries = o.dir + "/t10k-images-idx3-ubyte.gz";
    }
    spec.max_base = o.subset;
    spec.max_queries = o.queries;
    spec.gt_k = 10;
    return spec;
}

/// 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (two points per doubling, for the interpolation
/// at fixed recall), up to max_nprobe and nlist.
std::vector<int64_t> nprobe_sweep(int64_t max_nprobe, int64_t nlist) {
    std::vector<int64_t> out;
    for (int64_t p = 1; p <= std::min(max_nprobe, nlist); p *= 2) {
        out.push_back(p);
        if (p >= 2 && p + p / 2 <= std::min(max_nprobe, nlist)) out.push_back(p + p / 2);
    }
    return out;
}

double mib(size_t bytes) {
    return double(bytes) / (1024.0 * 1024.0);
}

const eval::MethodResult& method_named(const eval::EvalReport& r, const std::string& name) {
    for (const eval::MethodResult& m : r.methods) {
        if (m.method == name) return m;
    }
    throw std::logic_error("the report has no method " + name);
}

void print_results(const eval::EvalReport& r) {
    const eval::MethodResult& km = method_named(r, r.params.baseline);
    std::printf("\n## recall@%d against distance computations per query (%s, %lld base x %lld, %lld queries)\n\n", r.k,
                r.dataset.c_str(), (long long)r.nb, (long long)r.d, (long long)r.nq);
    std::printf("distinct = vectors whose distance is computed (each once); entries = list entries scanned "
                "(a spilled vector can be met twice); both + %lld coarse distances to the centroids\n\n",
                (long long)km.nlist);
    std::printf("| method | index | nprobe | recall@%d | distinct dist./query | list entries/query |\n", r.k);
    std::printf("|---|---|---|---|---|---|\n");
    for (const eval::MethodResult& m : r.methods) {
        for (const eval::SweepPoint& pt : m.points) {
            std::printf("| %s | %s | %lld | %.4f | %.0f | %.0f |\n", m.method.c_str(), m.description.c_str(),
                        (long long)pt.nprobe, pt.recall, pt.distinct, pt.entries);
        }
    }

    std::printf("\n## memory and training\n\n");
    std::printf("| method | list entries per vector | list memory | vs k-means | train s | list imbalance |\n");
    std::printf("|---|---|---|---|---|---|\n");
    for (const eval::MethodResult& m : r.methods) {
        std::printf("| %s | %.2f | %.1f MiB | %.2fx | %.1f%s | %.3f |\n", m.method.c_str(), double(m.ntotal) / double(r.nb),
                    mib(m.invlists_bytes), double(m.invlists_bytes) / double(km.invlists_bytes), m.train_s,
                    m.quantizer_from.empty() ? "" : (" (+ the coarse quantizer of " + m.quantizer_from + ")").c_str(), m.imbalance);
    }

    std::printf("\n## cost at fixed recall@%d: k-means' distinct distance computations / the method's "
                "(list entries in brackets); > 1: the method needs fewer\n\n",
                r.k);
    std::printf("| method | memory vs k-means |");
    for (double t : r.params.recall_targets) std::printf(" @%.2f |", t);
    std::printf("\n|---|---|");
    for (size_t i = 0; i < r.params.recall_targets.size(); i++) std::printf("---|");
    std::printf("\n");
    for (const eval::Comparison& c : r.comparisons) {
        std::printf("| %s | %.2fx |", c.method.c_str(),
                    double(method_named(r, c.method).invlists_bytes) / double(km.invlists_bytes));
        for (const eval::TargetRatio& t : c.targets) {
            if (std::isnan(t.ratio_distinct) || std::isnan(t.ratio_entries)) {
                std::printf(" not reached |");
            } else {
                std::printf(" %s%.2f (%.2f) |", t.bound ? "~" : "", 1.0 / t.ratio_distinct, 1.0 / t.ratio_entries);
            }
        }
        std::printf("\n");
    }
    std::printf("\n\"not reached\": a curve does not reach that recall within the sweep; \"~\": one reached it at "
                "its first nprobe, so the ratio is a bound.\n");
}

} // namespace

int main(int argc, char** argv) {
    Progress progress;
    try {
        bool help = false;
        const Options o = parse_options(argc, argv, &help);
        if (help) {
            std::fputs(kUsage, stdout);
            return 0;
        }
        if (o.threads > 0) omp_set_num_threads(o.threads);
        const std::string recipe_method = std::string("gmm_") + kRecipeOptions;

        eval::EvalParams p;
        p.index_description = "IVF" + std::to_string(o.nlist) + ",Flat";
        p.methods = {"kmeans", "gmm", recipe_method};
        p.nprobes = nprobe_sweep(o.max_nprobe, o.nlist);
        // A sweep ends at the first nprobe with recall@10 >= 0.97: the cost ratios are read at
        // 0.8 / 0.9 / 0.95 between the two points around each, so the points beyond change no ratio,
        // and they cost the most (they scan the most lists: half the sweep's time on Fashion-MNIST).
        p.stop_recall = 0.97;
        p.search_threads = 0; // QPS is not reported here: searches use every core
        p.verbose = false;    // the progress lines below say what happens, with the time
        p.progress = [&](const std::string& step) { progress.step("%s", step.c_str()); };

        std::printf("faiss-gmm demo on %s (%s)\n", o.dataset.c_str(), o.dir.c_str());
        std::printf("  k-means IVF: %s (FAISS)\n", p.index_description.c_str());
        std::printf("  GMM-IVF:     %s\n", eval::with_ivf_suffix(p.index_description, "_GMM").c_str());
        std::printf("  recommended: %s (GMM lists + GMM-SOAR spill, the README's 1M recipe at this nlist)\n",
                    eval::with_ivf_suffix(p.index_description, std::string("_GMM_") + kRecipeOptions).c_str());
        std::printf("  methods: %s %s %s\n", p.methods[0].c_str(), p.methods[1].c_str(), p.methods[2].c_str());
        std::printf("  training: seed %lld, k-means %d iterations, GMM %d init + up to %d EM iterations (tol %g), "
                    "at most nlist x %d rows; %d threads; nprobe 1..%lld\n\n",
                    (long long)p.seed, p.kmeans_niter, p.gmm.init_niter, p.gmm.niter, p.gmm.tol,
                    p.max_points_per_centroid, omp_get_max_threads(), (long long)p.nprobes.back());

        const datasets::DatasetSpec spec = dataset_spec(o);
        progress.step("loading %s%s", spec.base.c_str(),
                      spec.groundtruth.empty() || o.subset ? " and computing the exact ground truth (k = 10)" : "");
        const datasets::Dataset data = datasets::load_dataset(spec, false);
        progress.step("loaded %lld base x %lld, %lld queries; ground truth %s", (long long)data.base.n,
                      (long long)data.d(), (long long)data.queries.n,
                      data.groundtruth_computed
                              ? ("computed in " + std::to_string(data.groundtruth_time_s).substr(0, 5) + " s").c_str()
                              : ("read from " + spec.groundtruth).c_str());

        eval::EvalReport r = eval::evaluate(data, p);
        print_results(r);

        const eval::MethodResult& km = method_named(r, p.baseline);
        const eval::MethodResult& recipe = method_named(r, recipe_method);
        std::printf("\nMemory: the recommended recipe stores %.2f list entries per vector: %.1f MiB of lists against "
                    "%.1f MiB for k-means IVF (%.2fx), plus the same %lld centroids.\n",
                    double(recipe.ntotal) / double(r.nb), mib(recipe.invlists_bytes), mib(km.invlists_bytes),
                    double(recipe.invlists_bytes) / double(km.invlists_bytes), (long long)km.nlist);

        mkdir(o.out.c_str(), 0777); // may exist; a write error below names the problem
        const std::string base = o.out + "/" + r.dataset + "-demo";
        eval::write_csv({r}, base + ".csv");
        eval::write_json({r}, base + ".json");
        progress.step("wrote %s.csv and %s.json", base.c_str(), base.c_str());
        const std::string title = r.dataset + ": recall@10 vs distance computations";
        if (!eval::plot_csv(base + ".csv", base + ".png", title, o.python)) {
            std::fprintf(stderr, "faiss-gmm-demo: error: the plot was not drawn (see above; Debian: python3-matplotlib)\n");
            return 1;
        }
        progress.step("plot: %s.png", base.c_str());
        return 0;
    } catch (const cli::UsageError& e) {
        std::fprintf(stderr, "faiss-gmm-demo: error: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "faiss-gmm-demo: error: %s\n", e.what());
        return 1;
    }
}
