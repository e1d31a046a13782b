// Internal helper: a writer that turns every failed write into an exception
// naming the file and the reason, over faiss_gmm::AtomicFile: the bytes go to a
// temporary file in the same folder, synced and renamed over the target by
// close(), so an interrupted conversion never leaves a plausible-looking
// truncated file, nor destroys the previous one.
#pragma once

#include <string>

#include "faiss_gmm/AtomicFile.h"

namespace faiss_gmm {
namespace datasets {

class FileWriter {
  public:
    explicit FileWriter(const std::string& path) : file_(path) {}

    void write(const void* p, size_t bytes) { file_.write(p, bytes); }
    /// Syncs and renames over the target; without it the temporary file is removed.
    void close() { file_.commit(); }

  private:
    AtomicFile file_;
};

} // namespace datasets
} // namespace faiss_gmm
