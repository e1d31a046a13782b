// faiss-gmm, the command-line tool (issue 18): the top level (commands, --help,
// unknown command), and for each subcommand its arguments, its outputs and bad
// input (missing file, truncated or corrupt file, unknown option, bad values),
// with the messages checked; the old tool names run the same code and say the
// new name. Every run is under `timeout`, so a hang fails instead of blocking CI.
#include <gtest/gtest.h>

#include <faiss/IndexFlat.h>
#include <faiss/index_io.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "datasets/Dataset.h"
#include "datasets/IdxFile.h"
#include "datasets/VecsFile.h"
#include "faiss_gmm/GmmQuantizer.h"
#include "faiss_gmm/GmmTrainer.h"
#include "faiss_gmm/gmm_io.h"
#include "process_helpers.h"
#include "test_helpers.h"

using namespace faiss_gmm;
using faiss_gmm::testing::clustered_data;
using faiss_gmm::testing::run_shell;
using faiss_gmm::testing::RunResult;
using faiss_gmm::testing::TempDir;

namespace {

const std::string kCli = FAISS_GMM_CLI;

RunResult cli(const std::string& args) {
    return run_shell("timeout -k 5 300 " + kCli + " " + args);
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

/// The status and a part of the message: a failure says what went wrong.
void expect_failure(const RunResult& r, int status, const std::string& message) {
    EXPECT_EQ(r.status, status) << r.output;
    EXPECT_TRUE(contains(r.output, message)) << "expected '" << message << "' in:\n" << r.output;
}

/// n x d clustered rows in an .fvecs file.
std::string vectors_file(const TempDir& dir, const std::string& name, int64_t n, int64_t d, int64_t K) {
    const std::vector<float> x = clustered_data(n, d, K, 0.5f, 7);
    const std::string path = dir.file(name);
    datasets::write_fvecs(path, n, d, x.data());
    return path;
}

std::string read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
}

/// The value of a "key: value" line of `faiss-gmm info`, or "" when absent.
std::string info_value(const std::string& output, const std::string& key) {
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind(key + ": ", 0) == 0) return line.substr(key.size() + 2);
    }
    return "";
}

} // namespace

TEST(Cli, TopLevelCommandsHelpAndUnknownCommand) {
    const RunResult help = cli("--help");
    EXPECT_EQ(help.status, 0) << help.output;
    EXPECT_TRUE(contains(help.output, "usage: faiss-gmm <command> [options]")) << help.output;
    for (const char* c : {"train", "eval", "dataset", "info"}) {
        EXPECT_TRUE(contains(help.output, std::string("\n  ") + c + " ")) << c << " not listed:\n" << help.output;
    }
    const RunResult none = cli("");
    expect_failure(none, 2, "which command?");
    EXPECT_TRUE(contains(none.output, "usage: faiss-gmm")) << none.output;
    // An unknown command: status 2, the message names it and lists the commands.
    expect_failure(cli("trian"), 2, "unknown command 'trian' (commands: train, eval, dataset, info");
    expect_failure(cli("help trian"), 2, "unknown command 'trian'");
    // `help CMD` is `CMD --help`.
    const RunResult help_train = cli("help train"), train_help = cli("train --help");
    EXPECT_EQ(help_train.status, 0) << help_train.output;
    EXPECT_EQ(help_train.output, train_help.output);
    const RunResult version = cli("--version");
    EXPECT_EQ(version.status, 0);
    EXPECT_TRUE(contains(version.output, "faiss-gmm ")) << version.output;
}

TEST(Cli, EveryCommandHasHelpAndTheOldNamesSayTheNewOne) {
    for (const char* c : {"train", "eval", "dataset", "info"}) {
        const RunResult r = cli(std::string(c) + " --help");
        EXPECT_EQ(r.status, 0) << c << ":\n" << r.output;
        EXPECT_TRUE(contains(r.output, std::string("faiss-gmm ") + c)) << r.output;
        EXPECT_FALSE(contains(r.output, "is now")) << "the new name needs no alias note:\n" << r.output;
    }
    const std::pair<std::string, std::string> aliases[] = {{FAISS_GMM_EVAL_TOOL, "eval"},
                                                           {FAISS_GMM_DATASET_TOOL, "dataset"}};
    for (const auto& [tool, command] : aliases) {
        const RunResult r = run_shell(tool + " --help");
        EXPECT_EQ(r.status, 0) << r.output;
        EXPECT_TRUE(contains(r.output, "is now `faiss-gmm " + command + "`")) << r.output;
    }
}

TEST(Cli, TrainWritesTheModelOfAnInProcessTrainer) {
    TempDir dir;
    const int64_t n = 3000, d = 16, K = 8;
    const std::string data = vectors_file(dir, "x.fvecs", n, d, K);
    const std::string out = dir.file("model.gmm");
    const RunResult r = cli("train " + data + " --k 8 --niter 6 --tol 0 --seed 5 --threads 1 --out " + out);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "EM iter   6/6")) << "a progress line per iteration:\n" << r.output;
    EXPECT_TRUE(contains(r.output, "ETA <= ")) << r.output;
    EXPECT_TRUE(contains(r.output, "faiss-gmm train: wrote " + out)) << r.output;

    // The reference: the same file, parameters and seed in this process. The
    // trainer's sums are reproducible (bit-identical for any threads), so the
    // models are equal to the bit.
    GmmParams p;
    p.niter = 6;
    p.tol = 0;
    p.seed = 5;
    GmmTrainer trainer(p);
    const GmmModel expected = trainer.fit(*datasets::open_vectors(data), K);
    std::unique_ptr<faiss::Index> index(read_gmm_index(out));
    // Without --index the file holds the model as a GmmQuantizer index.
    const auto* q = dynamic_cast<const GmmQuantizer*>(index.get());
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q->model.K, K);
    EXPECT_EQ(q->model.d, d);
    EXPECT_EQ(q->model.means, expected.means);
    EXPECT_EQ(q->model.variances, expected.variances);
    EXPECT_EQ(q->model.log_weights, expected.log_weights);
}

TEST(Cli, TrainReadsFormatsThatAreNotMemoryMapped) {
    // An IDX (MNIST-style, gzipped) file of uint8 rows: read into memory in one process.
    TempDir dir;
    const int64_t n = 1200, d = 12;
    const std::vector<float> x = clustered_data(n, d, 4, 6.0f, 3);
    std::vector<uint8_t> bytes(x.size());
    for (size_t i = 0; i < x.size(); i++) bytes[i] = uint8_t(std::min(255.0f, std::max(0.0f, 128.0f + 8.0f * x[i])));
    const std::string idx = dir.file("x-ubyte.gz");
    datasets::write_idx_gz(idx, {n, 3, 4}, bytes);
    const std::string out = dir.file("m.gmm");
    const RunResult r = cli("train " + idx + " --k 4 --niter 4 --quiet --out " + out);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_TRUE(contains(r.output, idx + ": 1200 x 12 uint8")) << r.output;
    GmmParams p;
    p.niter = 4;
    GmmTrainer trainer(p);
    const GmmModel expected = trainer.fit(*datasets::open_vectors(idx), 4);
    std::unique_ptr<faiss::Index> index(read_gmm_index(out));
    const auto* q = dynamic_cast<const GmmQuantizer*>(index.get());
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q->model.means, expected.means);
}

TEST(Cli, TrainBuildsAnIndexAndQuietSilencesTheIterations) {
    TempDir dir;
    const std::string data = vectors_file(dir, "x.fvecs", 2000, 8, 4);
    const std::string out = dir.file("ivf.faiss");
    const RunResult r = cli("train --data " + data + " --index IVF4_GMMdiag,Flat --add --quiet --out " + out);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_FALSE(contains(r.output, "EM iter   1/")) << "no per-iteration line:\n" << r.output;
    EXPECT_TRUE(contains(r.output, "EM iterations")) << "the summary line stays:\n" << r.output;
    EXPECT_TRUE(contains(r.output, "added 2000 rows")) << r.output;
    std::unique_ptr<faiss::Index> index(read_gmm_index(out));
    EXPECT_EQ(index->ntotal, 2000);
    const GmmQuantizer* q = find_gmm_quantizer(index.get());
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q->model.covariance_type, CovarianceType::Diagonal);
}

TEST(Cli, TrainBadInput) {
    TempDir dir;
    const std::string data = vectors_file(dir, "x.fvecs", 500, 8, 4);
    // Bad usage: status 2, the message names the option and the value.
    expect_failure(cli("train " + data + " --k 4 --frobnicate"), 2, "unknown argument '--frobnicate'");
    expect_failure(cli("train " + data + " --k four"), 2, "--k expects an integer, got 'four'");
    expect_failure(cli("train " + data + " --k 4 --tol x"), 2, "--tol expects a number, got 'x'");
    expect_failure(cli("train " + data + " --k 4 --covariance tied"), 2,
                   "--covariance expects spherical | diagonal | full, got 'tied'");
    expect_failure(cli("train " + data + " --k 4 --device gpu"), 2, "--device expects cpu | cuda | auto, got 'gpu'");
    expect_failure(cli("train " + data), 2, "--k K is required");
    expect_failure(cli("train --k 4"), 2, "the vector file is required");
    expect_failure(cli("train " + data + " --k"), 2, "--k needs a value");
    // Bad data: status 1, the message names the problem.
    expect_failure(cli("train " + dir.file("missing.fvecs") + " --k 4"), 1, dir.file("missing.fvecs"));
    expect_failure(cli("train " + data + " --k 501"), 1, "K = 501 components but only N = 500");
    expect_failure(cli("train " + dir.file("x.txt") + " --k 4"), 1, "x.txt");
    // A file cut in the middle of a row.
    const std::string cut = dir.file("cut.fvecs");
    const std::string bytes = read_bytes(data);
    write_bytes(cut, bytes.substr(0, bytes.size() - 10));
    const RunResult truncated = cli("train " + cut + " --k 4");
    EXPECT_EQ(truncated.status, 1) << truncated.output;
    EXPECT_TRUE(contains(truncated.output, "cut.fvecs")) << truncated.output;
}

TEST(Cli, InfoDescribesModelsIndexesAndPlainFaissFiles) {
    TempDir dir;
    const std::string data = vectors_file(dir, "x.fvecs", 2000, 8, 4);
    const std::string spill = dir.file("spill.faiss");
    ASSERT_EQ(cli("train " + data + " --index IVF4_GMM_soar_spill1.5,Flat --quiet --out " + spill).status, 0);
    const RunResult r = cli("info " + spill);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(info_value(r.output, "checksum"), "verified (CRC-32C footer)") << r.output;
    EXPECT_EQ(info_value(r.output, "index type"), "faiss_gmm::IndexIVFSpill > faiss::IndexIVFFlat") << r.output;
    EXPECT_EQ(info_value(r.output, "d"), "8");
    EXPECT_EQ(info_value(r.output, "nlist"), "4");
    EXPECT_EQ(info_value(r.output, "coarse quantizer"), "faiss_gmm::GmmQuantizer");
    EXPECT_EQ(info_value(r.output, "gmm"), "K 4, d 8, spherical covariance");
    EXPECT_TRUE(contains(info_value(r.output, "spill"), "rule soar, max copies 2, budget 1.5")) << r.output;
    EXPECT_NE(info_value(r.output, "gmm trailer version"), "0 (none)");
    EXPECT_NE(info_value(r.output, "spill trailer version"), "0 (none)");

    // A model alone (train without --index).
    const std::string model = dir.file("model.gmm");
    ASSERT_EQ(cli("train " + data + " --k 4 --covariance diagonal --quiet --out " + model).status, 0);
    const RunResult m = cli("info " + model);
    ASSERT_EQ(m.status, 0) << m.output;
    EXPECT_EQ(info_value(m.output, "index type"), "faiss_gmm::GmmQuantizer");
    EXPECT_EQ(info_value(m.output, "ntotal"), "4");
    EXPECT_EQ(info_value(m.output, "gmm"), "K 4, d 8, diagonal covariance");
    EXPECT_EQ(info_value(m.output, "spill"), "none");

    // FAISS's own file: no trailer, no checksum, said so.
    const std::string flat = dir.file("flat.faiss");
    faiss::IndexFlatL2 index(8);
    faiss::write_index(&index, flat.c_str());
    const RunResult f = cli("info " + flat);
    ASSERT_EQ(f.status, 0) << f.output;
    EXPECT_TRUE(contains(info_value(f.output, "checksum"), "not verified")) << f.output;
    EXPECT_EQ(info_value(f.output, "index type"), "faiss::IndexFlatL2");
    EXPECT_TRUE(contains(info_value(f.output, "gmm"), "none")) << f.output;
}

TEST(Cli, InfoBadInput) {
    TempDir dir;
    const std::string data = vectors_file(dir, "x.fvecs", 1000, 8, 4);
    const std::string model = dir.file("model.gmm");
    ASSERT_EQ(cli("train " + data + " --k 4 --quiet --out " + model).status, 0);
    const std::string bytes = read_bytes(model);

    expect_failure(cli("info"), 2, "which FILE?");
    expect_failure(cli("info --all " + model), 2, "unknown option '--all'");
    expect_failure(cli("info " + model + " " + model), 2, "one FILE only");
    expect_failure(cli("info " + dir.file("missing.gmm")), 1, "cannot open " + dir.file("missing.gmm"));
    // One byte changed in the middle: the checksum refuses the file.
    std::string corrupt = bytes;
    corrupt[corrupt.size() / 2] ^= 0x40;
    write_bytes(dir.file("corrupt.gmm"), corrupt);
    expect_failure(cli("info " + dir.file("corrupt.gmm")), 1, "checksum");
    // Cut inside the trailers: refused, never a crash.
    write_bytes(dir.file("cut.gmm"), bytes.substr(0, bytes.size() - 40));
    const RunResult cut = cli("info " + dir.file("cut.gmm"));
    EXPECT_EQ(cut.status, 1) << cut.output;
    EXPECT_TRUE(contains(cut.output, "faiss-gmm info: error: ")) << cut.output;
    // Not an index at all.
    expect_failure(cli("info " + data), 1, "faiss-gmm info: error: ");
}

TEST(Cli, DatasetSubcommandsAndTheirBadInput) {
    TempDir dir;
    const std::string gen = dir.file("g.fvecs");
    const RunResult g = cli("dataset generate " + gen + " --n 300 --d 5 --components 3 --seed 2");
    ASSERT_EQ(g.status, 0) << g.output;
    const RunResult info = cli("dataset info " + gen);
    EXPECT_EQ(info.status, 0) << info.output;
    EXPECT_TRUE(contains(info.output, gen + ": 300 x 5 float32")) << info.output;
    // The old name runs the same code.
    EXPECT_EQ(run_shell(std::string(FAISS_GMM_DATASET_TOOL) + " info " + gen).output, info.output);
    const RunResult conv = cli("dataset convert " + gen + " " + dir.file("g.fbin") + " --rows 10:100");
    EXPECT_EQ(conv.status, 0) << conv.output;
    EXPECT_TRUE(contains(cli("dataset info " + dir.file("g.fbin")).output, ": 100 x 5 float32"));

    expect_failure(cli("dataset"), 2, "which subcommand?");
    expect_failure(cli("dataset shuffle " + gen), 2, "unknown subcommand 'shuffle'");
    expect_failure(cli("dataset generate " + gen + " --n many"), 2, "--n expects an integer, got 'many'");
    expect_failure(cli("dataset generate " + gen + " --spread wide"), 2, "--spread expects a number, got 'wide'");
    expect_failure(cli("dataset generate " + gen + " --colour red"), 2, "unknown option '--colour' for generate");
    expect_failure(cli("dataset convert " + gen + " " + dir.file("h.fvecs") + " --rows 5"), 2, "--rows takes I0:N");
    expect_failure(cli("dataset convert " + gen), 2, "convert takes IN and OUT");
    expect_failure(cli("dataset info " + dir.file("missing.fvecs")), 1, dir.file("missing.fvecs"));
    const std::string bytes = read_bytes(gen);
    write_bytes(dir.file("cut.fvecs"), bytes.substr(0, bytes.size() - 3));
    const RunResult cut = cli("dataset info " + dir.file("cut.fvecs"));
    EXPECT_EQ(cut.status, 1) << cut.output;
    EXPECT_TRUE(contains(cut.output, "cut.fvecs")) << cut.output;
}

TEST(Cli, EvalRunsAndRefusesBadInput) {
    const std::string base = faiss_gmm::testing::shared_dataset("siftsmall/siftsmall_base.fvecs");
    const std::string query = faiss_gmm::testing::shared_dataset("siftsmall/siftsmall_query.fvecs");
    if (!std::ifstream(base)) GTEST_SKIP() << base << " is not here (../shared/datasets)";
    TempDir dir;
    const RunResult r = cli("eval --base " + base + " --query " + query + " --name sift --max-base 2000 " +
                            "--max-queries 20 --nlist 16 --nprobe 1,4,16 --methods kmeans,gmm --quiet --no-plot --out " +
                            dir.path);
    ASSERT_EQ(r.status, 0) << r.output;
    for (const char* method : {"| kmeans | 1 |", "| gmm | 1 |", "| gmm | 16 |"}) {
        EXPECT_TRUE(contains(r.output, method)) << method << " missing:\n" << r.output;
    }
    for (const char* ext : {".csv", ".json", ".md"}) {
        EXPECT_FALSE(read_bytes(dir.file(std::string("sift") + ext)).empty()) << ext;
    }
    // Bad usage: 2, naming the option; bad data: 1, naming the file.
    expect_failure(cli("eval --dataset siftsmall --frobnicate 1"), 2, "unknown option '--frobnicate'");
    expect_failure(cli("eval --dataset siftsmall --k ten"), 2, "--k expects an integer, got 'ten'");
    expect_failure(cli("eval --dataset siftsmall --nprobe 1,0"), 2, "--nprobe must be >= 1, got 0");
    expect_failure(cli("eval --dataset siftsmall --methods kmeans,gnm"), 2, "unknown method 'gnm'");
    expect_failure(cli("eval --dataset siftsmall --gmm-device gpu"), 2, "--gmm-device expects cpu | cuda | auto");
    expect_failure(cli("eval"), 2, "give --dataset NAME or --base FILE and --query FILE");
    expect_failure(cli("eval --dataset siftsmall --quantizer-cache " + dir.path + " --no-share-quantizers"), 2,
                   "--quantizer-cache reuses shared quantizers: it cannot go with --no-share-quantizers");
    expect_failure(cli("eval --base " + dir.file("none.fvecs") + " --query " + query + " --out " + dir.path), 1,
                   dir.file("none.fvecs"));
}
