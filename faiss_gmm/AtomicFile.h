// Atomic file replacement (issue 13.2): every file the project writes goes
// through this, so that a failed write (a full disk, a size limit, a crash)
// leaves the previous file as it was. The bytes go to a temporary file in the
// target's folder; commit() flushes and fsyncs it, renames it over the target
// (atomic on POSIX file systems) and fsyncs the folder. Anything short of a
// successful commit() removes the temporary file. No FAISS dependency (core).
//
// A target that exists and is not a regular file (a device such as /dev/stdout
// or /dev/full, a FIFO) is written in place, with the same error reporting.
// Limits: a symbolic link at the target is replaced by a regular file (the
// link is not followed); a process killed by a signal can leave its temporary
// file behind (named ".<name>.tmp-<pid>-<n>", next to the target).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace faiss_gmm {

class AtomicFile {
  public:
    /// Creates the temporary file next to `path`. Throws std::runtime_error naming
    /// the folder and the system's reason when it cannot.
    explicit AtomicFile(std::string path);
    /// Without a successful commit(): closes and removes the temporary file.
    ~AtomicFile();
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;

    /// Appends bytes (buffered). Throws std::runtime_error naming the target, the
    /// temporary file and the system's reason (e.g. "File too large", "No space
    /// left on device"); the target is untouched.
    void write(const void* data, size_t size);

    /// Flushes, fsyncs, closes, renames over the target, fsyncs the folder. On a
    /// failure before the rename, the temporary file is removed and the target
    /// is untouched; the error names the step that failed.
    void commit();

    /// Gives up: removes the temporary file (also what the destructor does).
    void abort() noexcept;

    const std::string& path() const { return path_; }
    /// The temporary file: another library may write it by name (gzopen,
    /// H5Fcreate) before commit(), which then syncs and renames it.
    const std::string& temp_path() const { return tmp_; }
    uint64_t bytes_written() const { return written_; }
    bool committed() const { return committed_; }

  private:
    void flush_buffer();
    [[noreturn]] void fail(const std::string& what, int err);

    std::string path_, tmp_;
    int fd_ = -1;
    bool committed_ = false;
    bool direct_ = false; ///< the target is not a regular file: written in place
    uint64_t written_ = 0;
    std::vector<char> buf_;
    size_t buffered_ = 0;
};

/// Writes `size` bytes to `path` through an AtomicFile.
void write_file_atomically(const std::string& path, const void* data, size_t size);

/// The same for content produced by a callback given the AtomicFile.
void write_file_atomically(const std::string& path, const std::function<void(AtomicFile&)>& produce);

} // namespace faiss_gmm
