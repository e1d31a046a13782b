// Internal helper: a FILE* writer that turns every short write into an
// exception naming the file, and writes to "<path>.tmp" then renames, so an
// interrupted conversion never leaves a plausible-looking truncated file.
#pragma once

#include <cstdio>
#include <stdexcept>
#include <string>

namespace faiss_gmm {
namespace datasets {

class FileWriter {
  public:
    explicit FileWriter(const std::string& path) : path_(path), tmp_(path + ".tmp") {
        f_ = std::fopen(tmp_.c_str(), "wb");
        if (!f_) {
            throw std::runtime_error("cannot open " + tmp_ + " for writing");
        }
    }
    ~FileWriter() {
        if (f_) { // not closed: an exception is unwinding, drop the partial file
            std::fclose(f_);
            std::remove(tmp_.c_str());
        }
    }
    FileWriter(const FileWriter&) = delete;
    FileWriter& operator=(const FileWriter&) = delete;

    void write(const void* p, size_t bytes) {
        if (bytes && std::fwrite(p, 1, bytes, f_) != bytes) {
            throw std::runtime_error("short write to " + tmp_ + " (disk full?)");
        }
    }
    void close() {
        int rc = std::fclose(f_);
        f_ = nullptr;
        if (rc != 0 || std::rename(tmp_.c_str(), path_.c_str()) != 0) {
            std::remove(tmp_.c_str());
            throw std::runtime_error("cannot finish writing " + path_);
        }
    }

  private:
    std::string path_, tmp_;
    std::FILE* f_ = nullptr;
};

} // namespace datasets
} // namespace faiss_gmm
