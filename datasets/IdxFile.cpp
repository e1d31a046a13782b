#include "IdxFile.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <stdexcept>

#include <zlib.h>

#include "faiss_gmm/AtomicFile.h"

namespace faiss_gmm {
namespace datasets {

namespace {

struct GzCloser {
    void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzPtr = std::unique_ptr<gzFile_s, GzCloser>;

// Reads exactly `bytes` bytes or throws "truncated".
void gz_read_exact(gzFile f, const std::string& path, void* out, size_t bytes, const char* what) {
    uint8_t* p = static_cast<uint8_t*>(out);
    while (bytes > 0) {
        unsigned chunk = unsigned(std::min<size_t>(bytes, 1u << 30));
        int r = gzread(f, p, chunk);
        if (r < 0) {
            int err;
            const char* msg = gzerror(f, &err);
            throw std::runtime_error(path + ": corrupt gzip stream while reading " + what + ": " + msg);
        }
        if (r == 0) {
            throw std::runtime_error(path + ": truncated IDX file: " + what + " ends early");
        }
        p += r;
        bytes -= size_t(r);
    }
}

} // namespace

ByteMatrix read_idx_gz(const std::string& path, std::vector<int64_t>* dims_out) {
    GzPtr f(gzopen(path.c_str(), "rb"));
    if (!f) {
        throw std::runtime_error("cannot open " + path);
    }
    uint8_t magic[4];
    gz_read_exact(f.get(), path, magic, 4, "the header");
    if (magic[0] != 0 || magic[1] != 0) {
        throw std::runtime_error(path + ": not an IDX file (bad magic)");
    }
    if (magic[2] != 0x08) {
        throw std::runtime_error(path + ": IDX element type 0x" + std::to_string(magic[2]) +
                                 " not supported (only unsigned byte, 0x08)");
    }
    int ndim = magic[3];
    if (ndim < 1) {
        throw std::runtime_error(path + ": IDX file with 0 dimensions");
    }
    std::vector<int64_t> dims(ndim);
    // Bound on the item count times row size (2^40 bytes): beyond it the header is
    // taken as corrupt rather than as a size to read.
    const double kMaxBytes = double(int64_t(1) << 40);
    double total = 1;
    for (int i = 0; i < ndim; i++) {
        uint8_t b[4];
        gz_read_exact(f.get(), path, b, 4, "the header");
        dims[i] = (int64_t(b[0]) << 24) | (int64_t(b[1]) << 16) | (int64_t(b[2]) << 8) | int64_t(b[3]);
        if (dims[i] < 0 || dims[i] > INT32_MAX) {
            throw std::runtime_error(path + ": corrupt IDX header: dimension " + std::to_string(i) +
                                     " = " + std::to_string(dims[i]));
        }
        total *= double(dims[i]);
    }
    if (total > kMaxBytes) {
        throw std::runtime_error(path + ": corrupt IDX header: " + std::to_string(total) + " bytes claimed");
    }
    // The row size on its own: with 0 items `total` is 0 whatever the other
    // dimensions claim, and their product could overflow int64.
    double row = 1;
    for (int i = 1; i < ndim; i++) {
        if (dims[i] == 0) {
            throw std::runtime_error(path + ": IDX file with an empty item dimension");
        }
        row *= double(dims[i]);
    }
    if (row > kMaxBytes) {
        throw std::runtime_error(path + ": corrupt IDX header: " + std::to_string(row) + " bytes per item claimed");
    }
    int64_t d = 1;
    for (int i = 1; i < ndim; i++) {
        d *= dims[i]; // <= 2^40: no overflow
    }
    ByteMatrix m;
    m.n = dims[0];
    m.d = d;
    // Grow with the data actually decompressed, so a lying header fails with
    // "truncated" instead of first allocating what it claims.
    const size_t total_bytes = size_t(m.n) * size_t(d);
    const size_t step = size_t(1) << 24;
    for (size_t done = 0; done < total_bytes;) {
        size_t chunk = std::min(step, total_bytes - done);
        m.data.resize(done + chunk);
        gz_read_exact(f.get(), path, m.data.data() + done, chunk, "the data");
        done += chunk;
    }
    uint8_t extra;
    int r = gzread(f.get(), &extra, 1);
    if (r != 0) {
        throw std::runtime_error(path + (r > 0 ? ": inconsistent IDX file: bytes after the data the header describes"
                                               : ": corrupt gzip stream after the data"));
    }
    if (dims_out) {
        *dims_out = dims;
    }
    return m;
}

void write_idx_gz(const std::string& path, const std::vector<int64_t>& dims, const std::vector<uint8_t>& x) {
    if (dims.empty() || dims.size() > 255) {
        throw std::invalid_argument(path + ": IDX needs 1..255 dimensions");
    }
    size_t total = 1;
    for (int64_t v : dims) {
        if (v < 0 || v > INT32_MAX) {
            throw std::invalid_argument(path + ": IDX dimension out of range");
        }
        total *= size_t(v);
    }
    if (total != x.size()) {
        throw std::invalid_argument(path + ": IDX dimensions do not match the data size");
    }
    bool gz = path.size() >= 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
    // zlib writes the temporary file by name; commit() syncs and renames it.
    AtomicFile out(path);
    const std::string& tmp = out.temp_path();
    GzPtr f(gzopen(tmp.c_str(), gz ? "wb6" : "wbT"));
    if (!f) {
        throw std::runtime_error("cannot open " + tmp + " for writing");
    }
    std::vector<uint8_t> header = {0, 0, 0x08, uint8_t(dims.size())};
    for (int64_t v : dims) {
        header.push_back(uint8_t(v >> 24));
        header.push_back(uint8_t(v >> 16));
        header.push_back(uint8_t(v >> 8));
        header.push_back(uint8_t(v));
    }
    bool ok = gzwrite(f.get(), header.data(), unsigned(header.size())) == int(header.size());
    for (size_t done = 0; ok && done < x.size();) {
        unsigned chunk = unsigned(std::min<size_t>(x.size() - done, 1u << 30));
        ok = gzwrite(f.get(), x.data() + done, chunk) == int(chunk);
        done += chunk;
    }
    ok = (gzclose(f.release()) == Z_OK) && ok;
    if (!ok) throw std::runtime_error("cannot write " + path + " (disk full?); " + path + " was left as it was");
    out.commit();
}

} // namespace datasets
} // namespace faiss_gmm
