// Shared by the suites that run the project's programs (the CLI, the demo, the
// MPI trainer): run a shell command and keep its status and output, and a
// scratch directory removed with its files.
#pragma once

#include <stdlib.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace faiss_gmm::testing {

struct RunResult {
    int status = -1;          ///< exit status of the command (124: timed out; 128 + signal when killed)
    std::string output;       ///< stdout and stderr
    double seconds = 0;
};

/// Runs `command` with sh, stderr folded into stdout.
inline RunResult run_shell(const std::string& command) {
    RunResult r;
    const auto t0 = std::chrono::steady_clock::now();
    FILE* pipe = popen((command + " 2>&1").c_str(), "r");
    if (!pipe) throw std::runtime_error("popen failed for: " + command);
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof(buf), pipe)) > 0) r.output.append(buf, got);
    const int status = pclose(pipe);
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

/// A scratch directory, removed with its files.
struct TempDir {
    TempDir() {
        char tmpl[] = "/tmp/faiss_gmm_test_XXXXXX";
        if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
        path = tmpl;
    }
    ~TempDir() { run_shell("rm -rf '" + path + "'"); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(const std::string& name) const { return path + "/" + name; }
    std::string path;
};

} // namespace faiss_gmm::testing
