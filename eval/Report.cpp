#include "Report.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unistd.h>

#include "faiss_gmm/AtomicFile.h"

namespace faiss_gmm {
namespace eval {

namespace {

std::string num(double v, int prec = 6) {
    if (std::isnan(v) || std::isinf(v)) {
        return "";
    }
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.*g", prec, v);
    return buf;
}

std::string jnum(double v) {
    std::string s = num(v, 10);
    return s.empty() ? "null" : s;
}

std::string jstr(const std::string& s) {
    std::string o = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') {
            o += '\\';
            o += c;
        } else if (c == '\n') {
            o += "\\n";
        } else {
            o += c;
        }
    }
    return o + "\"";
}

std::string fixed(double v, int prec) {
    if (std::isnan(v) || std::isinf(v)) {
        return "n/a";
    }
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.*f", prec, v);
    return buf;
}

} // namespace

void write_text(const std::string& path, const std::string& text) {
    // Replaced atomically: a failed write leaves the previous report, and says why.
    write_file_atomically(path, text.data(), text.size());
}

void write_csv(const std::vector<EvalReport>& reports, const std::string& path) {
    std::ostringstream o;
    o << "dataset,metric,nb,nq,d,k,method,description,nlist,train_s,add_s,invlists_bytes,imbalance,"
         "nprobe,recall,recall_dist,coarse,lists,entries,distinct,faiss_ndis,search_s,qps,search_threads\n";
    for (const EvalReport& r : reports) {
        for (const MethodResult& m : r.methods) {
            for (const SweepPoint& p : m.points) {
                o << r.dataset << ',' << r.metric << ',' << r.nb << ',' << r.nq << ',' << r.d << ',' << r.k << ','
                  << m.method << ",\"" << m.description << "\"," << m.nlist << ',' << num(m.train_s) << ','
                  << num(m.add_s) << ',' << m.invlists_bytes << ',' << num(m.imbalance) << ',' << p.nprobe << ','
                  << num(p.recall) << ',' << num(p.recall_dist) << ',' << num(p.coarse) << ',' << num(p.lists)
                  << ',' << num(p.entries, 9) << ',' << num(p.distinct, 9) << ',' << num(p.faiss_ndis, 9) << ','
                  << num(p.search_s) << ',' << num(p.qps) << ',' << r.params.search_threads << '\n';
            }
        }
    }
    write_text(path, o.str());
}

void write_json(const std::vector<EvalReport>& reports, const std::string& path) {
    std::ostringstream o;
    o << "[\n";
    for (size_t ri = 0; ri < reports.size(); ri++) {
        const EvalReport& r = reports[ri];
        const EvalParams& p = r.params;
        o << "  {\"dataset\": " << jstr(r.dataset) << ", \"metric\": " << jstr(r.metric) << ", \"nb\": " << r.nb
          << ", \"nq\": " << r.nq << ", \"d\": " << r.d << ", \"k\": " << r.k
          << ", \"groundtruth_computed\": " << (r.groundtruth_computed ? "true" : "false")
          << ", \"groundtruth_s\": " << jnum(r.groundtruth_s) << ", \"train_threads\": " << r.train_threads << ",\n"
          << "   \"params\": {\"index_description\": " << jstr(p.index_description) << ", \"seed\": " << p.seed
          << ", \"kmeans_niter\": " << p.kmeans_niter << ", \"max_points_per_centroid\": " << p.max_points_per_centroid
          << ", \"gmm_niter\": " << p.gmm.niter << ", \"gmm_init_niter\": " << p.gmm.init_niter
          << ", \"gmm_tol\": " << jnum(p.gmm.tol) << ", \"search_threads\": " << p.search_threads
          << ", \"search_repeats\": " << p.search_repeats << ", \"timing_rounds\": " << p.timing_rounds
          << ", \"timing_queries\": " << p.timing_queries << "},\n   \"methods\": [\n";
        for (size_t mi = 0; mi < r.methods.size(); mi++) {
            const MethodResult& m = r.methods[mi];
            o << "    {\"method\": " << jstr(m.method) << ", \"description\": " << jstr(m.description)
              << ", \"nlist\": " << m.nlist << ", \"ntotal\": " << m.ntotal << ", \"train_s\": " << jnum(m.train_s)
              << ", \"quantizer_from\": " << jstr(m.quantizer_from) << ", \"add_s\": " << jnum(m.add_s) << ", \"invlists_bytes\": " << m.invlists_bytes
              << ", \"imbalance\": " << jnum(m.imbalance) << ",\n     \"points\": [\n";
            for (size_t pi = 0; pi < m.points.size(); pi++) {
                const SweepPoint& s = m.points[pi];
                o << "      {\"nprobe\": " << s.nprobe << ", \"recall\": " << jnum(s.recall)
                  << ", \"recall_dist\": " << jnum(s.recall_dist) << ", \"coarse\": " << jnum(s.coarse)
                  << ", \"lists\": " << jnum(s.lists) << ", \"entries\": " << jnum(s.entries)
                  << ", \"distinct\": " << jnum(s.distinct) << ", \"faiss_ndis\": " << jnum(s.faiss_ndis)
                  << ", \"search_s\": " << jnum(s.search_s) << ", \"qps\": " << jnum(s.qps) << "}"
                  << (pi + 1 < m.points.size() ? ",\n" : "\n");
            }
            o << "     ]}" << (mi + 1 < r.methods.size() ? ",\n" : "\n");
        }
        o << "   ],\n   \"comparisons\": [\n";
        for (size_t ci = 0; ci < r.comparisons.size(); ci++) {
            const Comparison& c = r.comparisons[ci];
            o << "    {\"baseline\": " << jstr(c.baseline) << ", \"method\": " << jstr(c.method)
              << ", \"mean_recall_gain\": " << jnum(c.mean_gain) << ",\n     \"targets\": [";
            for (size_t ti = 0; ti < c.targets.size(); ti++) {
                const TargetRatio& t = c.targets[ti];
                o << (ti ? ", " : "") << "{\"recall\": " << jnum(t.target)
                  << ", \"base_entries\": " << jnum(t.base_entries) << ", \"method_entries\": " << jnum(t.method_entries)
                  << ", \"ratio_entries\": " << jnum(t.ratio_entries) << ", \"base_distinct\": " << jnum(t.base_distinct)
                  << ", \"method_distinct\": " << jnum(t.method_distinct)
                  << ", \"ratio_distinct\": " << jnum(t.ratio_distinct)
                  << ", \"bound\": " << (t.bound ? "true" : "false") << "}";
            }
            o << "],\n     \"gains\": [";
            for (size_t gi = 0; gi < c.gains.size(); gi++) {
                const CostMatchedGain& g = c.gains[gi];
                o << (gi ? ", " : "") << "{\"base_nprobe\": " << g.base_nprobe << ", \"cost\": " << jnum(g.cost)
                  << ", \"base_recall\": " << jnum(g.base_recall) << ", \"method_recall\": " << jnum(g.method_recall)
                  << ", \"gain\": " << jnum(g.gain) << "}";
            }
            o << "]}" << (ci + 1 < r.comparisons.size() ? ",\n" : "\n");
        }
        o << "   ]}" << (ri + 1 < reports.size() ? ",\n" : "\n");
    }
    o << "]\n";
    write_text(path, o.str());
}

std::string markdown_summary(const std::vector<EvalReport>& reports) {
    std::ostringstream o;
    o << "| dataset | N × d | index | method | train s (k-means / method) | imbalance | "
         "cost ratio @R=0.8 | @0.9 | @0.95 | mean recall gain at equal cost |\n"
         "|---|---|---|---|---|---|---|---|---|---|\n";
    for (const EvalReport& r : reports) {
        const MethodResult* base = nullptr;
        for (const MethodResult& m : r.methods) {
            if (m.method == r.params.baseline) {
                base = &m;
            }
        }
        for (const Comparison& c : r.comparisons) {
            const MethodResult* m = nullptr;
            for (const MethodResult& x : r.methods) {
                if (x.method == c.method) {
                    m = &x;
                }
            }
            o << "| " << r.dataset << " | " << r.nb << " × " << r.d << " | " << (base ? base->description : "")
              << " | " << c.method << " | " << fixed(base ? base->train_s : NAN, 2) << " / "
              << fixed(m ? m->train_s : NAN, 2) << " | " << fixed(base ? base->imbalance : NAN, 2) << " / "
              << fixed(m ? m->imbalance : NAN, 2);
            for (const TargetRatio& t : c.targets) {
                o << " | ";
                if (std::isnan(t.ratio_entries) && std::isnan(t.ratio_distinct)) {
                    o << "not reached";
                    continue;
                }
                // Equal for single assignment: print one number then.
                std::string e = fixed(t.ratio_entries, 2), dd = fixed(t.ratio_distinct, 2);
                o << (t.bound ? "~" : "") << e;
                if (dd != e) {
                    o << " (" << dd << " distinct)";
                }
            }
            o << " | " << (std::isnan(c.mean_gain) ? "n/a" : (c.mean_gain >= 0 ? "+" : "") + fixed(c.mean_gain, 4))
              << " |\n";
        }
    }
    o << "\nCost ratio = distance computations per query that the method needs to reach recall@10 = R, divided "
         "by k-means IVF's (interpolated in log cost between nprobe points; < 1: the method needs fewer). "
         "\"~\": a curve already reached R at nprobe = 1, so the ratio is a bound. Entries scanned and distinct "
         "distance computations are equal without spill; both are shown when they differ.\n";
    return o.str();
}

std::string markdown_details(const EvalReport& r) {
    std::ostringstream o;
    o << "### " << r.dataset << " (" << r.nb << " × " << r.d << ", " << r.metric << ", " << r.nq << " queries, k = "
      << r.k << ")\n\n";
    o << "| method | nprobe | recall@" << r.k << " | recall@" << r.k << " (dist.) | entries/q | distinct/q | "
         "coarse/q | QPS |\n|---|---|---|---|---|---|---|---|\n";
    for (const MethodResult& m : r.methods) {
        for (const SweepPoint& p : m.points) {
            o << "| " << m.method << " | " << p.nprobe << " | " << fixed(p.recall, 4) << " | "
              << fixed(p.recall_dist, 4) << " | " << fixed(p.entries, 1) << " | " << fixed(p.distinct, 1) << " | "
              << fixed(p.coarse, 0) << " | " << fixed(p.qps, 0) << " |\n";
        }
    }
    o << "\n";
    for (const MethodResult& m : r.methods) {
        o << "- " << m.method << ": `" << m.description << "`, train " << fixed(m.train_s, 2) << " s"
          << (m.quantizer_from.empty() ? "" : " (coarse quantizer trained by " + m.quantizer_from + ")") << ", add "
          << fixed(m.add_s, 2) << " s, lists " << m.invlists_bytes << " bytes, imbalance " << fixed(m.imbalance, 3)
          << "\n";
    }
    return o.str();
}

std::string default_plot_script() {
#ifdef FAISS_GMM_EVAL_SOURCE_DIR
    return std::string(FAISS_GMM_EVAL_SOURCE_DIR) + "/plot_results.py";
#else
    return "plot_results.py";
#endif
}

bool plot_csv(const std::string& csv, const std::string& png, const std::string& title, const std::string& python,
              const std::string& plot_script) {
    if (access(python.c_str(), X_OK) != 0) {
        std::fprintf(stderr, "plot: %s not found, no PNG written\n", python.c_str());
        return false;
    }
    auto quote = [](const std::string& s) {
        std::string o = "'";
        for (char c : s) {
            o += (c == '\'') ? std::string("'\\''") : std::string(1, c);
        }
        return o + "'";
    };
    std::string cmd = quote(python) + " " + quote(plot_script) + " " + quote(csv) + " " + quote(png) + " " + quote(title);
    int rc = std::system(cmd.c_str());
    if (rc != 0) {
        std::fprintf(stderr, "plot: '%s' failed (rc %d), no PNG written\n", cmd.c_str(), rc);
        return false;
    }
    return true;
}

} // namespace eval
} // namespace faiss_gmm
