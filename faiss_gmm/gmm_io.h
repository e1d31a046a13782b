// Saving and loading GMM-trained indexes. A file is
//   [FAISS's own bytes]  faiss::read_index reads them (it ignores what follows),
//                        with a flat quantizer holding the means
//   [GMM trailer]        the model, its params and the quantizer's probing settings
//                        (when the coarse quantizer is a trained GmmQuantizer)
//   [spill trailer]      IndexIVFSpill's settings, threshold and distinct-vector count
//                        (an IndexIVFSpill is written as its inner index: every copy)
//   [checksum footer]    24 bytes: "FGCK", footer version 1, the FAISS part's size,
//                        CRC-32C of every byte before the CRC, "KCGF"
// GmmTrailer is the two trailers as one struct, read and written as a unit.
// Readers verify the checksum BEFORE parsing anything (so FAISS's reader never
// sees damaged bytes through this API) and refuse a damaged file with a message.
// History: GMM trailer version 2 added rank_by_posterior and
// probe_variance_weight, version 3 probe_variance_power (probe rankings removed
// in issue 14: written as off, refused when on), version 4 (spill trailer
// version 2) the checksum footer. Files of GMM trailer versions 1-3 / spill
// version 1 (no footer) still read, unverified: GmmFileInfo says so, and the
// readers without an info argument print a note on stderr.
// What the checksum cannot cover: a file without a footer (a plain FAISS index,
// the older format, or a file of today's format cut before its footer) is
// parsed by FAISS as before (a cut inside the trailers is still refused, by the
// trailer's version); one cut exactly after its FAISS part is a valid plain
// FAISS index and reads as one (GmmFileInfo: no trailer, unverified).
// Writing a file goes through AtomicFile: the previous file survives a failure.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <faiss/Index.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/io.h>

#include "GmmModel.h"
#include "GmmParams.h"
#include "IndexIVFSpill.h"

namespace faiss_gmm {

/// Everything a file holds besides FAISS's bytes.
struct GmmTrailer {
    // The GMM trailer: present when the coarse quantizer is a trained GmmQuantizer.
    bool has_gmm = false;
    GmmModel model;
    GmmParams params;
    // The probe rankings removed in issue 14 (trailer versions 2-3 carry them):
    // written as off; a file with one on is refused when its quantizer is made.
    bool rank_by_posterior = false;
    double probe_variance_weight = 0.0;
    double probe_variance_power = 0.0;

    // The spill trailer: present for an IndexIVFSpill.
    bool has_spill = false;
    SpillParams spill;                ///< IndexIVFSpill::spill
    double spill_threshold = 0.0;     ///< IndexIVFSpill::threshold
    bool spill_threshold_set = false; ///< IndexIVFSpill::threshold_set
    int64_t spill_ntotal = 0;         ///< IndexIVFSpill::ntotal (distinct vectors)

    /// What `index` holds: its (or its IVF's) GmmQuantizer, if trained, and its spill settings.
    static GmmTrailer of(const faiss::Index* index);
};

/// What reading a file found about its integrity.
struct GmmFileInfo {
    bool verified = false;      ///< the checksum footer was there and matched
    uint32_t gmm_version = 0;   ///< GMM trailer version (0: none)
    uint32_t spill_version = 0; ///< spill trailer version (0: none)
    uint64_t faiss_size = 0;    ///< bytes of the FAISS part
    std::string note;           ///< why the file could not be verified (older format), else empty
};

/// The whole file: FAISS part, trailers, checksum footer. The file is replaced
/// atomically (AtomicFile): on failure the previous file is intact and the error
/// names the file and the reason.
void write_gmm_index(const faiss::Index* index, const std::string& fname);
void write_gmm_index(const faiss::Index* index, faiss::IOWriter* writer);
std::vector<uint8_t> serialize_gmm_index(const faiss::Index* index);

/// Reads a file written by write_gmm_index (or any FAISS index: without a trailer
/// it is returned as FAISS reads it). Throws std::runtime_error naming the file and
/// the problem for damaged, truncated or inconsistent files. `info` (optional)
/// receives what was verified; without it, an unverified older file gets a note on stderr.
faiss::Index* read_gmm_index(const std::string& fname, GmmFileInfo* info = nullptr);
faiss::Index* deserialize_gmm_index(const uint8_t* data, size_t size, GmmFileInfo* info = nullptr);

// ---- building blocks, for FAISS bytes written or read by another copy of FAISS
// ---- (python3-faiss, through faiss_gmm's Python package)

/// An IOWriter that passes everything on to `out` and keeps its CRC-32C and size.
class ChecksumIOWriter : public faiss::IOWriter {
  public:
    explicit ChecksumIOWriter(faiss::IOWriter* out) : out_(out) {}
    size_t operator()(const void* ptr, size_t size, size_t nitems) override;
    uint32_t crc() const { return crc_; }
    uint64_t size() const { return size_; }

  private:
    faiss::IOWriter* out_;
    uint32_t crc_ = 0;
    uint64_t size_ = 0;
};

/// After a FAISS part went through `w` (all of w's bytes so far): the trailers of `t`
/// and the checksum footer.
void write_gmm_trailer(const GmmTrailer& t, ChecksumIOWriter* w);

/// What check_gmm_file found; for a file without a footer (older format, or plain
/// FAISS) info.verified is false and `trailer` is filled by read_gmm_trailer_after_faiss.
struct GmmFileCheck {
    GmmFileInfo info;
    GmmTrailer trailer;
    bool has_footer = false;
    uint64_t size = 0; ///< of the whole file
};

/// Step 1 of reading, before anything parses the file: with a checksum footer,
/// verifies the checksum and parses the trailers (FAISS's part is not parsed).
/// Throws std::runtime_error starting with `what` for a damaged file.
GmmFileCheck check_gmm_file(const uint8_t* data, size_t size, const std::string& what);
/// The same on an open file (read from its start; left at its start).
GmmFileCheck check_gmm_file(std::FILE* f, const std::string& what);

/// Step 3, after FAISS read its part from `r` and `r` sits at byte `position` of a
/// file of check->size bytes: with a footer, checks that FAISS's part ended where the
/// footer says; without one, reads the older trailers (if any) from `r` into
/// check->trailer and sets check->info (note: unverified).
void read_gmm_trailer_after_faiss(faiss::IOReader* r, uint64_t position, GmmFileCheck* check, const std::string& what);

/// Installs a GmmQuantizer holding t's model and probing settings in `ivf`, after
/// checking that the flat quantizer FAISS read holds the same means.
void install_gmm_trailer(faiss::IndexIVF* ivf, const GmmTrailer& t);

/// Applies the whole trailer to the index FAISS read (owned from here on): the
/// GmmQuantizer, and an IndexIVFSpill around it for a spill trailer; a GmmQuantizer
/// saved on its own comes back as one. Returns the index to use.
faiss::Index* apply_gmm_trailer(faiss::Index* index, const GmmTrailer& t);

/// A bare GMM trailer, magic first (any version; what follows it is not read).
GmmTrailer read_gmm_trailer(faiss::IOReader* r);

namespace detail {
/// The writer of the older formats (GMM trailer version 1, 2 or 3, spill trailer
/// version 1, no checksum footer; version 4: the footer, before full covariances),
/// kept so that tests can make such files.
std::vector<uint8_t> serialize_gmm_index_old_format(const faiss::Index* index, uint32_t gmm_trailer_version);
} // namespace detail

} // namespace faiss_gmm
