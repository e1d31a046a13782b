// faiss-gmm-demo on a small subset of Fashion-MNIST (issue 18), as CI runs it:
// it ends with status 0, prints a progress line per step, the table with a row
// per method and nprobe (recall@10 in [0, 1], costs positive, list entries never
// fewer than the distinct distance computations), the fixed-recall ratios and the
// memory of the recommended recipe, and writes the PNG plot whose path it prints.
// No figure is checked against a number: the subset changes them.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "datasets/Dataset.h"
#include "process_helpers.h"

using faiss_gmm::testing::run_shell;
using faiss_gmm::testing::RunResult;
using faiss_gmm::testing::TempDir;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream s(text);
    for (std::string line; std::getline(s, line);) out.push_back(line);
    return out;
}

/// The cells of a markdown table row "| a | b |" -> {"a", "b"}.
std::vector<std::string> cells(const std::string& row) {
    std::vector<std::string> out;
    std::istringstream s(row.substr(1));
    for (std::string cell; std::getline(s, cell, '|');) {
        const size_t b = cell.find_first_not_of(' '), e = cell.find_last_not_of(' ');
        out.push_back(b == std::string::npos ? "" : cell.substr(b, e - b + 1));
    }
    return out;
}

bool fashion_mnist_installed() {
    return bool(std::ifstream(std::string(faiss_gmm::datasets::kFashionMnistDir) + "/train-images-idx3-ubyte.gz"));
}

} // namespace

TEST(Demo, SmallSubsetPrintsTheTableAndWritesThePlot) {
    if (!fashion_mnist_installed()) {
        GTEST_SKIP() << "Debian's dataset-fashion-mnist is not installed (scripts/faiss-gmm.sh installs it)";
    }
    TempDir dir;
    const RunResult r = run_shell("timeout -k 5 600 " + std::string(FAISS_GMM_DEMO) +
                                  " --subset 3000 --queries 60 --nlist 16 --max-nprobe 8 --out " + dir.path);
    ASSERT_EQ(r.status, 0) << r.output;
    const std::vector<std::string> out = lines_of(r.output);

    // The methods it names: k-means first (the baseline), then GMM-IVF and the recipe.
    std::vector<std::string> methods;
    for (const std::string& line : out) {
        if (line.rfind("  methods: ", 0) == 0) {
            std::istringstream s(line.substr(11));
            for (std::string m; s >> m;) methods.push_back(m);
        }
    }
    ASSERT_EQ(methods.size(), 3u) << r.output;
    EXPECT_EQ(methods[0], "kmeans");
    EXPECT_EQ(methods[1], "gmm");

    // A progress line with the elapsed time for loading and for each training and sweep.
    auto has_progress = [&](const std::string& what) {
        for (const std::string& line : out) {
            if (line.rfind("[", 0) == 0 && line.find(" s] ") != std::string::npos && line.find(what) != std::string::npos) {
                return true;
            }
        }
        return false;
    };
    EXPECT_TRUE(has_progress("loading ")) << r.output;
    for (const std::string& m : methods) {
        EXPECT_TRUE(has_progress(m + ": training ")) << m << "\n" << r.output;
        EXPECT_TRUE(has_progress(m + ": sweep done")) << m << "\n" << r.output;
    }

    // The sweep table: every method has rows; recall@10 in [0, 1]; costs positive;
    // entries >= distinct (a spilled vector met twice is computed once).
    std::map<std::string, int> rows;
    bool header = false, in_table = false;
    for (const std::string& line : out) {
        if (line.rfind("| method | index | nprobe | recall@10 |", 0) == 0) header = in_table = true;
        if (line.rfind("|", 0) != 0) in_table = false; // the table ends at its first other line
        const std::vector<std::string> c = in_table ? cells(line) : std::vector<std::string>();
        if (c.size() != 6 || c[0] == "method" || c[0].rfind("---", 0) == 0) continue;
        rows[c[0]]++;
        const double recall = std::stod(c[3]), distinct = std::stod(c[4]), entries = std::stod(c[5]);
        EXPECT_GE(recall, 0.0) << line;
        EXPECT_LE(recall, 1.0) << line;
        EXPECT_GT(distinct, 0.0) << line;
        EXPECT_GE(entries, distinct) << line;
    }
    EXPECT_TRUE(header) << r.output;
    for (const std::string& m : methods) EXPECT_GT(rows[m], 0) << m << " has no row:\n" << r.output;

    // The fixed-recall ratios (a row per method compared with k-means) and the recipe's memory.
    for (size_t i = 1; i < methods.size(); i++) {
        bool found = false;
        for (const std::string& line : out) {
            const std::vector<std::string> c = line.rfind("| ", 0) == 0 ? cells(line) : std::vector<std::string>();
            found |= c.size() == 5 && c[0] == methods[i] && c[1].back() == 'x';
        }
        EXPECT_TRUE(found) << "no fixed-recall row for " << methods[i] << ":\n" << r.output;
    }
    EXPECT_NE(r.output.find("Memory: the recommended recipe stores "), std::string::npos) << r.output;

    // The plot: the path it prints, a PNG file.
    std::string png;
    for (const std::string& line : out) {
        const size_t at = line.find("] plot: ");
        if (at != std::string::npos) png = line.substr(at + 8);
    }
    ASSERT_EQ(png, dir.file("fashion-mnist-demo.png")) << r.output;
    std::ifstream f(png, std::ios::binary);
    char magic[8] = {};
    f.read(magic, 8);
    EXPECT_EQ(std::string(magic + 1, 3), "PNG") << png << " is not a PNG";
}

TEST(Demo, BadArguments) {
    const std::string demo = FAISS_GMM_DEMO;
    RunResult r = run_shell(demo + " --subset none");
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find("--subset expects an integer, got 'none'"), std::string::npos) << r.output;
    r = run_shell(demo + " --dataset sift1b");
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find("--dataset takes fashion-mnist or 'debsift1m DIR', got 'sift1b'"), std::string::npos)
            << r.output;
    r = run_shell(demo + " --queries 0");
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find("--queries must be >= 1, got 0"), std::string::npos) << r.output;
    r = run_shell(demo + " --dataset debsift1m /nonexistent/debsift1m --subset 100");
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find("/nonexistent/debsift1m/base.bvecs"), std::string::npos) << r.output;
    r = run_shell(demo + " --help");
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("--dataset debsift1m DIR"), std::string::npos) << r.output;
}
