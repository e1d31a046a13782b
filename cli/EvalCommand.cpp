// faiss-gmm eval: recall@k against distance computations, GMM-IVF vs k-means
// IVF, on one or more datasets. Writes CSV, JSON, a markdown report and a PNG.
// The old name faiss-gmm-eval runs the same code.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "cli/Commands.h"
#include "datasets/Dataset.h"
#include "eval/Evaluation.h"
#include "eval/Report.h"

namespace faiss_gmm {
namespace cli {
namespace {

std::string usage(const Invocation& inv) {
    return "usage: " + inv.prog() + R"( [options]
Builds k-means IVF (FAISS) and GMM-IVF indexes (and spill variants) on a dataset and measures recall@k
against the distance computations per query over an nprobe sweep.
dataset (one of):
  --dataset NAME[,NAME...]   built in: siftsmall bigann10k glove25-angular glove25-l2 fashion-mnist
  --base FILE --query FILE [--gt FILE] [--metric l2|angular] [--name NAME]
                             any format faiss-gmm-dataset reads; no --gt: exact ground truth is computed
  --data-root DIR            where the built-in sets live (default: <project>/../shared/datasets)
  --max-base N --max-queries N   use the first rows only (ground truth recomputed for a base prefix)
index and methods:
  --index DESC               FAISS description of the baseline (default "IVF{nlist},Flat"; PQ/SQ variants work)
  --nlist N|auto             replaces {nlist}; auto = power of two nearest sqrt(N) (default auto)
  --methods LIST             kmeans,gmm,gmmdiag,gmmfull (default kmeans,gmm); spill / probing variants
                             <kmeans|gmm|gmmdiag|gmmfull>_<IVF options>, e.g. kmeans_spill1.2,
                             gmm_spill1.5 (GMM-SOAR), gmm_post_spill1.5, gmm_soar_spill1.2, gmm_resp (grammar: faiss_gmm/ivf_token.h)
  --nprobe LIST              default 1,2,4,...,nlist
  --k K                      recall@K (default 10)
  --stop-recall R            stop a sweep once recall >= R (default: never)
  --seed S  --kmeans-niter N  --gmm-niter N  --gmm-init-niter N  --gmm-tol T
  --max-points-per-centroid N   training sample of k-means and GMM: nlist * N rows (default 256); 0 = every row
  --no-share-quantizers      retrain the coarse quantizer for every method (default: each kind once per run,
                             reused by its spill / probing variants; same seed, same result)
  --quantizer-cache DIR      save each trained coarse quantizer in DIR and reuse it in later runs on the same
                             base with the same training settings (checked: base CRC-32C, nlist, every
                             setting; anything else trains again), e.g. a held-out run and the official one
  --gmm-device cpu|cuda|auto  E-step backend of the GMM methods (default cpu) ; --gmm-fast  fast GPU math (TF32)
  --gmm-verbose              EM progress
measurement:
  --threads T                threads of the timed searches (default 1; 0 = all). Training uses all.
  --repeats R                timed runs per point, fastest kept (default 1)
  --timing-rounds R          re-time every point after all sweeps, R rounds over all methods in turn, fastest
                             kept (a shared machine's load then slows every method alike); keeps the indexes
  --timing-queries N         queries per timed search in those rounds (default 500)
output:
  --out DIR                  (default eval/results) ; --tag NAME (default: dataset names)
  --no-plot                  skip the PNG ; --python PATH (default /usr/bin/python3)
  --quiet
)" + inv.alias_note();
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, sep)) {
        if (!item.empty()) {
            out.push_back(item);
        }
    }
    return out;
}

/// `rel` from the source tree the tool was built from, else from the working directory.
std::string source_tree_path(const std::string& rel) {
#ifdef FAISS_GMM_SOURCE_DIR
    return std::string(FAISS_GMM_SOURCE_DIR) + "/" + rel;
#else
    return rel;
#endif
}

std::string default_data_root() { return source_tree_path("../shared/datasets"); }

std::string default_out_dir() { return source_tree_path("eval/results"); }

int64_t auto_nlist(int64_t n) {
    int64_t best = 1;
    double target = std::sqrt(double(n));
    for (int64_t p = 1; p <= n; p *= 2) {
        if (std::fabs(std::log2(double(p) / target)) < std::fabs(std::log2(double(best) / target))) {
            best = p;
        }
    }
    return best;
}

std::string substitute(std::string s, const std::string& key, const std::string& value) {
    for (size_t pos; (pos = s.find(key)) != std::string::npos;) {
        s.replace(pos, key.size(), value);
    }
    return s;
}

} // namespace

int eval_command(int argc, char** argv, const Invocation& inv) {
    const std::string prog = inv.prog();
    std::map<std::string, std::string> opt;
    const std::vector<std::string> flags = {"--no-plot", "--quiet", "--gmm-verbose", "--gmm-fast", "--no-share-quantizers",
                                            "--help", "-h"};
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        bool is_flag = false;
        for (const auto& f : flags) {
            is_flag |= a == f;
        }
        if (is_flag) {
            opt[a] = "1";
        } else if (a.rfind("--", 0) == 0 && i + 1 < argc) {
            opt[a] = argv[++i];
        } else {
            std::fprintf(stderr, "%s: error: %s '%s' (--help lists the options)\n", prog.c_str(),
                         a.rfind("--", 0) == 0 ? "missing value for" : "unexpected argument", a.c_str());
            return 2;
        }
    }
    auto get = [&](const std::string& k, const std::string& def) {
        auto it = opt.find(k);
        return it == opt.end() ? def : it->second;
    };
    if (opt.count("--help") || opt.count("-h")) {
        std::fputs(usage(inv).c_str(), stdout);
        return 0;
    }
    const std::vector<std::string> known = {
            "--dataset", "--base", "--query", "--gt", "--metric", "--name", "--data-root", "--max-base",
            "--max-queries", "--index", "--nlist", "--methods", "--nprobe", "--k", "--stop-recall", "--seed",
            "--kmeans-niter", "--gmm-niter", "--gmm-init-niter", "--gmm-tol", "--max-points-per-centroid",
            "--gmm-device", "--quantizer-cache", "--threads", "--repeats", "--timing-rounds", "--timing-queries", "--out", "--tag", "--python"};
    for (const auto& kv : opt) {
        bool ok = false;
        for (const auto& k : known) {
            ok |= kv.first == k;
        }
        for (const auto& f : flags) {
            ok |= kv.first == f;
        }
        if (!ok) {
            std::fprintf(stderr, "%s: error: unknown option '%s' (--help lists the options)\n", prog.c_str(),
                         kv.first.c_str());
            return 2;
        }
    }
    try {
        std::vector<datasets::DatasetSpec> specs;
        if (opt.count("--dataset")) {
            for (const std::string& n : split(get("--dataset", ""), ',')) {
                specs.push_back(datasets::named_dataset(n, get("--data-root", default_data_root())));
            }
        } else if (opt.count("--base") && opt.count("--query")) {
            datasets::DatasetSpec s;
            s.base = get("--base", "");
            s.queries = get("--query", "");
            s.groundtruth = get("--gt", "");
            s.metric = datasets::parse_metric(get("--metric", "l2"));
            s.name = get("--name", s.base);
            specs.push_back(s);
        } else {
            throw UsageError("give --dataset NAME or --base FILE and --query FILE");
        }
        eval::EvalParams p;
        p.verbose = !opt.count("--quiet");
        p.methods = split(get("--methods", "kmeans,gmm"), ',');
        p.k = int(to_int64("--k", get("--k", "10")));
        p.seed = to_int64("--seed", get("--seed", std::to_string(p.seed)));
        p.kmeans_niter = int(to_int64("--kmeans-niter", get("--kmeans-niter", std::to_string(p.kmeans_niter))));
        p.gmm.niter = int(to_int64("--gmm-niter", get("--gmm-niter", std::to_string(p.gmm.niter))));
        p.gmm.init_niter = int(to_int64("--gmm-init-niter", get("--gmm-init-niter", std::to_string(p.gmm.init_niter))));
        p.gmm.tol = to_double("--gmm-tol", get("--gmm-tol", std::to_string(p.gmm.tol)));
        p.gmm.verbose = opt.count("--gmm-verbose") > 0;
        p.gmm.device = to_choice("--gmm-device", get("--gmm-device", "cpu"), {Device::Cpu, Device::Cuda, Device::Auto});
        p.gmm.fast_math = opt.count("--gmm-fast") > 0;
        p.max_points_per_centroid = int(to_int64("--max-points-per-centroid", get("--max-points-per-centroid", std::to_string(p.max_points_per_centroid))));
        p.share_quantizers = !opt.count("--no-share-quantizers");
        p.quantizer_cache = get("--quantizer-cache", "");
        if (!p.quantizer_cache.empty() && !p.share_quantizers) {
            throw UsageError("--quantizer-cache reuses shared quantizers: it cannot go with --no-share-quantizers");
        }
        p.search_threads = int(to_int64("--threads", get("--threads", "1")));
        p.search_repeats = int(to_int64("--repeats", get("--repeats", "1")));
        p.timing_rounds = int(to_int64("--timing-rounds", get("--timing-rounds", "0")));
        p.timing_queries = to_int64("--timing-queries", get("--timing-queries", "500"));
        if (opt.count("--stop-recall")) {
            p.stop_recall = to_double("--stop-recall", get("--stop-recall", ""));
        }
        for (const std::string& s : split(get("--nprobe", ""), ',')) {
            p.nprobes.push_back(to_int64_at_least("--nprobe", s, 1));
        }
        // Refuse unknown methods before any data is loaded.
        const std::vector<std::string> known_methods = eval::registered_methods();
        for (const std::string& m : p.methods) {
            if (!eval::is_method(m)) {
                std::string all;
                for (const std::string& k : known_methods) {
                    all += " " + k;
                }
                throw UsageError("unknown method '" + m + "' (known:" + all + ")");
            }
        }
        const std::string index_template = get("--index", "IVF{nlist},Flat");
        const std::string nlist_opt = get("--nlist", "auto");

        std::string out_dir = get("--out", default_out_dir());
        mkdir(out_dir.c_str(), 0777); // may exist; a write error below says if it is unusable
        std::vector<std::string> names;
        std::vector<eval::EvalReport> reports;
        for (datasets::DatasetSpec& s : specs) {
            s.max_base = to_int64("--max-base", get("--max-base", "0"));
            s.max_queries = to_int64("--max-queries", get("--max-queries", "0"));
            if (p.verbose) {
                std::fprintf(stderr, "[%s] loading %s\n", s.name.c_str(), s.base.c_str());
            }
            datasets::Dataset data = datasets::load_dataset(s, p.verbose);
            if (p.verbose) {
                std::fprintf(stderr, "[%s] %ld base x %ld, %ld queries, metric %s, ground truth %s%s\n",
                             data.name.c_str(), long(data.base.n), long(data.d()), long(data.queries.n),
                             datasets::to_string(data.metric), data.groundtruth_computed ? "computed" : "from file",
                             data.groundtruth_computed
                                     ? (" in " + std::to_string(data.groundtruth_time_s) + " s").c_str()
                                     : "");
            }
            int64_t nlist = nlist_opt == "auto" ? auto_nlist(data.base.n) : to_int64_at_least("--nlist", nlist_opt, 1);
            p.index_description = substitute(index_template, "{nlist}", std::to_string(nlist));
            if (p.verbose) {
                std::fprintf(stderr, "[%s] index %s (nlist %ld%s), methods %s, search threads %d, train threads %d\n",
                             data.name.c_str(), p.index_description.c_str(), long(eval::nlist_of(p.index_description)),
                             nlist_opt == "auto" ? ", auto" : "", get("--methods", "kmeans,gmm").c_str(),
                             p.search_threads, omp_get_max_threads());
            }
            reports.push_back(eval::evaluate(data, p));
            names.push_back(data.name);
        }
        std::string tag = get("--tag", "");
        if (tag.empty()) {
            for (size_t i = 0; i < names.size(); i++) {
                tag += (i ? "+" : "") + names[i];
            }
            for (char& c : tag) {
                if (c == '/' || c == ' ') {
                    c = '_';
                }
            }
        }
        std::string base = out_dir + "/" + tag;
        eval::write_csv(reports, base + ".csv");
        eval::write_json(reports, base + ".json");
        std::string md = "## Recall@" + std::to_string(p.k) + " vs distance computations: GMM-IVF vs k-means IVF\n\n" +
                         eval::markdown_summary(reports) + "\n";
        for (const eval::EvalReport& r : reports) {
            md += eval::markdown_details(r) + "\n";
        }
        eval::write_text(base + ".md", md);
        std::printf("%s", md.c_str());
        std::printf("wrote %s.{csv,json,md}", base.c_str());
        if (!opt.count("--no-plot") &&
            eval::plot_csv(base + ".csv", base + ".png", "recall@" + std::to_string(p.k) + " vs distance computations",
                           get("--python", "/usr/bin/python3"))) {
            std::printf(" and %s.png", base.c_str());
        }
        std::printf("\n");
        return 0;
    } catch (const UsageError& e) {
        std::fprintf(stderr, "%s: error: %s (--help lists the options)\n", prog.c_str(), e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: error: %s\n", prog.c_str(), e.what());
        return 1;
    }
}

} // namespace cli
} // namespace faiss_gmm
