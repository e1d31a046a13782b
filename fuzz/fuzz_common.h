// Shared by the libFuzzer targets: the readers under test take file paths, so
// each input is written to a private temporary file first.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace faiss_gmm::fuzz {

/// A directory private to this process (TMPDIR or /tmp), made once.
inline const std::string& scratch_dir() {
    static const std::string dir = [] {
        const char* base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/tmp") + "/faiss-gmm-fuzz-XXXXXX";
        if (!mkdtemp(tmpl.data())) std::abort();
        return tmpl;
    }();
    return dir;
}

/// Writes data to scratch_dir()/name and returns the path.
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
    std::string path = scratch_dir() + "/" + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();
    if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
    std::fclose(f);
    return path;
}

/// Runs fn; a C++ exception is the expected answer to bad bytes. Anything
/// else (a crash, a sanitizer report, a leak, a timeout) is a finding.
template <class Fn>
void expect_clean(Fn&& fn) {
    try {
        fn();
    } catch (const std::exception&) {
    }
}

} // namespace faiss_gmm::fuzz
