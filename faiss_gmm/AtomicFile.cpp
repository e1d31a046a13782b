#include "AtomicFile.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace faiss_gmm {

namespace {

std::string reason(int err) {
    return std::error_code(err, std::generic_category()).message();
}

/// The folder of a path ("." when it has none) and the name inside it.
void split_path(const std::string& path, std::string* dir, std::string* name) {
    const size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) {
        *dir = ".";
        *name = path;
    } else {
        *dir = slash == 0 ? "/" : path.substr(0, slash);
        *name = path.substr(slash + 1);
    }
}

constexpr size_t kBufferBytes = size_t(1) << 20;

} // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
    std::string dir, name;
    split_path(path_, &dir, &name);
    if (name.empty() || name == "." || name == "..") {
        throw std::runtime_error("cannot write \"" + path_ + "\": not a file name");
    }
    struct stat target;
    const bool exists = ::stat(path_.c_str(), &target) == 0;
    if (exists && S_ISDIR(target.st_mode)) {
        throw std::runtime_error("cannot write " + path_ + ": it is a directory");
    }
    if (exists && !S_ISREG(target.st_mode)) {
        // A device, pipe or socket (/dev/stdout, a FIFO): written in place, as
        // renaming a file over it would replace the device node itself.
        fd_ = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd_ < 0) throw std::runtime_error("cannot write " + path_ + ": cannot open it: " + reason(errno));
        direct_ = true;
        buf_.resize(kBufferBytes);
        return;
    }
    static std::atomic<uint64_t> counter{0};
    for (int attempt = 0;; attempt++) {
        tmp_ = (dir == "/" ? "" : dir) + "/." + name + ".tmp-" + std::to_string(::getpid()) + "-" +
               std::to_string(counter++);
        // 0666 minus the umask, as for a file created directly.
        fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd_ >= 0) break;
        const int err = errno;
        if (err != EEXIST || attempt >= 100) {
            throw std::runtime_error("cannot write " + path_ + ": creating a temporary file in " + dir + " failed: " +
                                     reason(err));
        }
    }
    // Replacing a file keeps its permissions (best effort: a failure leaves the default).
    if (exists && S_ISREG(target.st_mode)) static_cast<void>(::fchmod(fd_, target.st_mode & 07777));
    buf_.resize(kBufferBytes);
}

AtomicFile::~AtomicFile() {
    abort();
}

void AtomicFile::abort() noexcept {
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
    if (!committed_ && !direct_ && !tmp_.empty()) {
        ::unlink(tmp_.c_str());
        tmp_.clear();
    }
}

void AtomicFile::fail(const std::string& what, int err) {
    const std::string tmp = direct_ ? std::string() : tmp_;
    abort();
    throw std::runtime_error("cannot write " + path_ + ": " + what + (tmp.empty() ? "" : " (temporary file " + tmp + ")") +
                             ": " + reason(err) + (direct_ ? "" : "; " + path_ + " was left as it was"));
}

void AtomicFile::flush_buffer() {
    const char* p = buf_.data();
    size_t left = buffered_;
    while (left > 0) {
        const ssize_t w = ::write(fd_, p, left);
        if (w < 0) {
            const int err = errno;
            if (err == EINTR) continue;
            fail("writing failed after " + std::to_string(written_ - left) + " bytes", err);
        }
        p += w;
        left -= size_t(w);
    }
    buffered_ = 0;
}

void AtomicFile::write(const void* data, size_t size) {
    if (fd_ < 0 || committed_) throw std::logic_error("AtomicFile::write: " + path_ + " is closed");
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
        const size_t n = std::min(size, buf_.size() - buffered_);
        std::memcpy(buf_.data() + buffered_, p, n);
        buffered_ += n;
        written_ += n;
        p += n;
        size -= n;
        if (buffered_ == buf_.size()) flush_buffer();
    }
}

void AtomicFile::commit() {
    if (fd_ < 0 || committed_) throw std::logic_error("AtomicFile::commit: " + path_ + " is closed");
    flush_buffer();
    if (::fsync(fd_) != 0) {
        const int err = errno;
        if (!(direct_ && (err == EINVAL || err == EROFS))) fail("syncing the data to disk failed", err);
    }
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) {
        const int err = errno;
        fail("closing failed", err);
    }
    if (direct_) {
        committed_ = true;
        return;
    }
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
        const int err = errno;
        fail("renaming the temporary file over it failed", err);
    }
    committed_ = true;
    // The rename itself must reach the disk: sync the folder. File systems that
    // cannot sync a folder say EINVAL; nothing more can be done there.
    std::string dir, name;
    split_path(path_, &dir, &name);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        const int rc = ::fsync(dfd);
        const int err = errno;
        ::close(dfd);
        if (rc != 0 && err != EINVAL && err != EROFS) {
            throw std::runtime_error("wrote " + path_ + ", but syncing its folder " + dir + " failed: " + reason(err) +
                                     " (the new file may not survive a crash)");
        }
    }
}

void write_file_atomically(const std::string& path, const void* data, size_t size) {
    AtomicFile f(path);
    f.write(data, size);
    f.commit();
}

void write_file_atomically(const std::string& path, const std::function<void(AtomicFile&)>& produce) {
    AtomicFile f(path);
    produce(f);
    f.commit();
}

} // namespace faiss_gmm
