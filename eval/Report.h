// Writers for evaluation results: CSV (one row per method and sweep point),
// JSON (everything, including the comparisons), markdown tables for the README,
// and the PNG plot (recall@k vs distance computations, log x, one curve per
// method), drawn by plot_results.py with Debian's python3-matplotlib.
#pragma once

#include <string>
#include <vector>

#include "Evaluation.h"

namespace faiss_gmm {
namespace eval {

void write_csv(const std::vector<EvalReport>& reports, const std::string& path);
void write_json(const std::vector<EvalReport>& reports, const std::string& path);

/// One line per dataset and compared method: sizes, training times, cost ratios
/// at the recall targets (entries and distinct), mean recall gain at matched cost.
std::string markdown_summary(const std::vector<EvalReport>& reports);
/// Every sweep point of one report.
std::string markdown_details(const EvalReport& report);

void write_text(const std::string& path, const std::string& text);

/// plot_results.py beside the sources of this library (compile-time path).
std::string default_plot_script();

/// Runs `python plot_script csv png title`; returns false (with a message on
/// stderr) when python or matplotlib is missing or the script fails.
bool plot_csv(const std::string& csv, const std::string& png, const std::string& title,
              const std::string& python = "/usr/bin/python3",
              const std::string& plot_script = default_plot_script());

} // namespace eval
} // namespace faiss_gmm
